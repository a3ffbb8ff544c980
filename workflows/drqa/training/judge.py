"""The labelling task GRPO trains on: read a question and a chain, choose A, B or C (pure).

DRQA trains the model to judge reasoning (is it correct, and if so is it concise?) with a
categorical reward for the right label; the solving behaviour it is evaluated on is plain
single-question decoding.
"""

from __future__ import annotations

import re

from orchestrator.types import Message
from workflows.drqa.training.labels import LETTER_OF, Chain, Label

__all__ = ["judge_messages", "label_reward", "parse_letter"]

_JUDGE_SYSTEM = "You grade worked solutions to math problems."


def judge_messages(chain: Chain) -> tuple[Message, ...]:
    """The grading prompt for one chain (the gold answer is not shown)."""
    return (
        Message("system", _JUDGE_SYSTEM),
        Message(
            "user",
            f"Problem:\n{chain.question.strip()}\n\nProposed solution:\n{chain.text.strip()}\n\n"
            "Grade the solution with one letter:\n"
            "A) the final answer is wrong\n"
            "B) the final answer is right, but the reasoning is longer than the problem needs\n"
            "C) the final answer is right and the reasoning is concise\n"
            "Reply with the letter only.",
        ),
    )


_LETTER_RE = re.compile(r"(?<![A-Za-z])([ABC])(?![a-z])")


def parse_letter(text: str) -> str | None:
    """The first standalone A, B or C in a reply ('C', '(B)', 'Answer: A'), or None."""
    m = _LETTER_RE.search(text.strip())
    return m.group(1) if m else None


def label_reward(completion: str, gold_label: str, *, format_reward: float = 0.0) -> float:
    """1 for the gold letter; ``format_reward`` for another valid letter; 0 otherwise."""
    letter = parse_letter(completion)
    gold_letter = LETTER_OF[Label(gold_label)]
    if letter == gold_letter:
        return 1.0
    return format_reward if letter is not None else 0.0
