"""Prompts of the DRQA solve, continuation and retry calls (pure)."""

from __future__ import annotations

from budget.quota.enforcement import reasoning_budget_statement
from orchestrator.types import Message

__all__ = ["FORCE_ANSWER_CUE", "continuation_messages", "force_answer_messages", "solve_messages"]

SOLVER_SYSTEM = "You solve math problems step by step and state the final answer clearly."


def solve_messages(
    question: str, answer_instruction: str, *, quota_tokens: int | None, answer_reserve_tokens: int
) -> tuple[Message, ...]:
    """A single-question solve; with a quota, the prompt states the reasoning budget.

    ``quota_tokens=None`` is the unlimited baseline: no stated budget.
    """
    # The budget is phrased as the order of work, "first reason ..., then the answer line": a
    # small model told its budget otherwise answers at once (see reasoning_budget_statement).
    if quota_tokens is None:
        instruction = f"Reason step by step. {answer_instruction}"
    else:
        statement = reasoning_budget_statement(quota_tokens, answer_reserve_tokens)
        then = answer_instruction[:1].lower() + answer_instruction[1:]
        instruction = f"{statement} Then {then}" if statement.startswith("First") else f"{statement} {answer_instruction}"
    parts = [question.strip(), "", instruction]
    return (Message("system", SOLVER_SYSTEM), Message("user", "\n".join(parts)))


def continuation_messages(
    question: str,
    answer_instruction: str,
    partial: str,
    *,
    extra_tokens: int,
    answer_reserve_tokens: int,
) -> tuple[Message, ...]:
    """Resume a solution that was cut off at its quota, with ``extra_tokens`` more.

    The cut-off text goes back as the assistant's turn, so the model continues rather than
    starting over (re-reading it costs input tokens only).
    """
    reasoning = max(extra_tokens - answer_reserve_tokens, 0)
    # No word count here: a number right before the answer instruction gets copied as the
    # answer by small models; max_tokens bounds the continuation anyway.
    follow_up = (
        f"Your solution was cut off. Continue briefly from where it stopped and finish. {answer_instruction}"
        if reasoning > 0
        else f"Your solution was cut off. Give the final answer now. {answer_instruction}"
    )
    return (
        Message("system", SOLVER_SYSTEM),
        Message("user", f"{question.strip()}\n\nReason step by step. {answer_instruction}"),
        Message("assistant", partial),
        Message("user", follow_up),
    )


FORCE_ANSWER_CUE = "Your reasoning budget for this question is used up. Stop the working here."
"""Start of the follow-up that asks a cut-off (or answerless) solution for its final answer."""


def force_answer_messages(
    solve_prompt: tuple[Message, ...], partial: str, answer_instruction: str
) -> tuple[Message, ...]:
    """Ask for the final answer now, after ``partial`` used up its quota.

    The solve prompt (pass it without a budget sentence) and the cut-off working go back (they
    cost input tokens only), then a short cue asks for the answer line alone, so a chain cut
    mid-reasoning still ends in a parsable answer.
    """
    return (
        *solve_prompt,
        Message("assistant", partial),
        Message("user", f"{FORCE_ANSWER_CUE} Reply with your best final answer only, no working. "
                        f"{answer_instruction}"),
    )
