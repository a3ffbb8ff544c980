"""Chains of thought and their labels: incorrect, correct-but-verbose, correct-and-concise (pure).

Rule (DRQA's data recipe as far as the public sources describe it; the exact rule and letter
mapping of the paper are not published, so this one is ours):
- a chain whose final answer is wrong is ``incorrect``;
- a correct chain written in batch mode is ``correct-concise`` (the paper's rule);
- a correct single-question chain is ``correct-verbose`` when it is longer than
  ``verbose_ratio`` times the shortest correct chain for the same question, else ``concise``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Literal

__all__ = ["LABEL_OF", "LETTER_OF", "Chain", "Label", "LabelConfig", "label_chains"]


class Label(StrEnum):
    INCORRECT = "incorrect"
    VERBOSE = "correct-verbose"
    CONCISE = "correct-concise"


LETTER_OF: dict[Label, str] = {Label.INCORRECT: "A", Label.VERBOSE: "B", Label.CONCISE: "C"}
LABEL_OF: dict[str, Label] = {v: k for k, v in LETTER_OF.items()}


@dataclass(frozen=True)
class Chain:
    """One generated chain of thought for one question."""

    item_id: str
    """Question id."""
    question: str
    """Question text."""
    gold: str
    """Gold final answer."""
    mode: Literal["single", "batch"]
    """Written alone (single) or as one of several questions in one reply (batch)."""
    text: str
    """The working and the final answer, as the model wrote them for this question."""
    answer: str | None
    """The extracted final answer."""
    num_tokens: int
    """Length of ``text`` in tokens."""
    batch_size: int = 1
    """Questions in the prompt that produced it."""
    label: str | None = None
    """Label value (a :class:`Label` value) once labelled."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Chain:
        """A chain from its JSON form; a field missing or of the wrong kind is a ValueError."""
        if not isinstance(d, dict):
            raise ValueError(f"a JSON object, not {type(d).__name__}")
        chain = cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        problems = [f"{k} must be text" for k in ("item_id", "question", "gold", "text")
                    if not isinstance(getattr(chain, k), str)]
        if chain.mode not in ("single", "batch"):
            problems.append(f"mode must be single or batch, not {chain.mode!r}")
        if chain.answer is not None and not isinstance(chain.answer, str):
            problems.append("answer must be text or null")
        for k in ("num_tokens", "batch_size"):
            value = getattr(chain, k)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                problems.append(f"{k} must be a whole number >= 0")
        if chain.label is not None and chain.label not in {lab.value for lab in Label}:
            problems.append(f"label must be one of {[lab.value for lab in Label]} or null")
        if problems:
            raise ValueError("; ".join(problems))
        return chain


@dataclass(frozen=True)
class LabelConfig:
    """Labelling thresholds."""

    verbose_ratio: float = 1.3
    """A correct single chain longer than this times the shortest correct chain is verbose."""


def label_chains(
    chains: Sequence[Chain], is_correct: Callable[[str | None, str], bool], config: LabelConfig | None = None
) -> list[Chain]:
    """The chains with ``label`` set, in input order."""
    cfg = config or LabelConfig()
    shortest: dict[str, int] = {}
    correct = [is_correct(c.answer, c.gold) for c in chains]
    for c, ok in zip(chains, correct, strict=True):
        if ok:
            shortest[c.item_id] = min(shortest.get(c.item_id, c.num_tokens), c.num_tokens)
    out = []
    for c, ok in zip(chains, correct, strict=True):
        if not ok:
            label = Label.INCORRECT
        elif c.mode == "batch" or c.num_tokens <= cfg.verbose_ratio * shortest[c.item_id]:
            label = Label.CONCISE
        else:
            label = Label.VERBOSE
        out.append(Chain(**{**c.to_dict(), "label": label.value}))
    return out
