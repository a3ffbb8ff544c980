"""Prompts of the DRQA solve, continuation and retry calls (pure)."""

from __future__ import annotations

from orchestrator.types import Message
from workflows.drqa.quota.enforcement import reasoning_budget_statement
from workflows.drqa.quota.plan import SOLVE_STYLES

__all__ = [
    "BRIEF_EXAMPLES",
    "FORCE_ANSWER_CUE",
    "answer_line",
    "continuation_messages",
    "force_answer_messages",
    "solve_messages",
]

SOLVER_SYSTEM = "You solve math problems step by step and state the final answer clearly."

BRIEF_SYSTEM = (
    "You solve math problems step by step, briefly: one short sentence per step with its "
    "calculation. Do not restate the question or list a plan."
)
"""System prompt of the 'brief' solve style."""

BRIEF_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        ("A shop sells pencils in packs of 4 for $3 a pack. Tom needs 22 pencils and can only buy "
         "whole packs. How much does he spend?"),
        "Tom needs 22 / 4 = 5.5 packs, so he buys 6 whole packs.\nThe 6 packs cost 6 * 3 = $18.",
    ),
    (
        "Mia reads 15 pages on Monday and twice as many on Tuesday. Her book has 120 pages. How many pages are left?",
        ("On Tuesday Mia reads 2 * 15 = 30 pages.\nSo far she has read 15 + 30 = 45 pages.\n"
         "That leaves 120 - 45 = 75 pages."),
    ),
)
"""Worked examples shown before the question in the 'brief' style (written for this project;
each ends with the dataset's answer line, added by :func:`solve_messages`)."""


def solve_messages(
    question: str,
    answer_instruction: str,
    *,
    quota_tokens: int | None,
    answer_reserve_tokens: int,
    style: str = "plain",
    example_answers: tuple[str, ...] = ("18", "75"),
) -> tuple[Message, ...]:
    """A single-question solve; with a quota, the prompt states the reasoning budget.

    ``quota_tokens=None`` is the unlimited baseline: no stated budget. ``style='brief'`` shows
    :data:`BRIEF_EXAMPLES` first, each closed by the answer line for ``example_answers`` in the
    dataset's format (see :func:`answer_line`).
    """
    if style not in SOLVE_STYLES:
        raise ValueError(f"unknown solve style {style!r}; expected one of {SOLVE_STYLES}")
    # The budget is phrased as the order of work, "first reason ..., then the answer line": a
    # small model told its budget otherwise answers at once (see reasoning_budget_statement).
    if quota_tokens is None:
        instruction = f"Reason step by step. {answer_instruction}"
    else:
        statement = reasoning_budget_statement(quota_tokens, answer_reserve_tokens)
        then = answer_instruction[:1].lower() + answer_instruction[1:]
        first = statement.startswith("First")
        instruction = f"{statement} Then {then}" if first else f"{statement} {answer_instruction}"
    parts = [question.strip(), "", instruction]
    if style == "plain":
        return (Message("system", SOLVER_SYSTEM), Message("user", "\n".join(parts)))
    shots: list[Message] = []
    for (q, working), ans in zip(BRIEF_EXAMPLES, example_answers, strict=True):
        shots += [Message("user", f"{q}\n\n{answer_instruction}"),
                  Message("assistant", f"{working}\n{answer_line(answer_instruction, ans)}")]
    return (Message("system", BRIEF_SYSTEM), *shots, Message("user", "\n".join(parts)))


def answer_line(answer_instruction: str, answer: str) -> str:
    """The final line ``answer_instruction`` asks for, filled with ``answer``: '#### 18' for
    GSM8K's "... '#### <number>'", '\\boxed{18}' for MATH's boxed instruction."""
    if "boxed" in answer_instruction:
        return f"The final answer is $\\boxed{{{answer}}}$."
    return f"#### {answer}"


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
