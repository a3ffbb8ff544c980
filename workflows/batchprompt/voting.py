"""Batch Permutation and Ensembling (BPE) and SEAS early stopping: pure policy, no I/O.

Round 1 asks every batch in its original order; each later round asks it in a seeded random
permutation, so every item is seen at different positions and next to different neighbours. The
rounds' answers are combined per item by majority vote or by confidence-weighted vote. With SEAS
(Self-reflection-guided EArly Stopping) an item leaves its batch once two consecutive rounds gave
the same answer, both marked confident; the batch is not refilled, so later rounds run on smaller
batches of the harder items.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["SEAS_RULES", "SeasRule", "Vote", "VotingConfig", "permute", "seas_done", "tally", "validate_rounds"]

VotingRule = Literal["majority", "weighted"]


@dataclass(frozen=True)
class Vote:
    """One round's answer for one item."""

    round: int
    """1-based round number."""
    label: str | None
    """The label value, or ``None`` when the round got no usable answer (even after re-asks)."""
    confident: bool = False
    """Whether the answer was marked confident."""

    def to_list(self) -> list[object]:
        return [self.round, self.label, self.confident]

    @classmethod
    def from_list(cls, data: Sequence[object]) -> Vote:
        rnd, label, confident = data
        return cls(int(rnd), None if label is None else str(label), bool(confident))  # type: ignore[call-overload]


@dataclass(frozen=True)
class VotingConfig:
    """How the rounds' answers are combined."""

    rule: VotingRule = "majority"
    """``majority``: one vote per round; ``weighted``: votes weighted by their confidence mark."""
    confident_weight: float = 1.0
    """Weight of a confident answer under ``weighted``."""
    unsure_weight: float = 0.2
    """Weight of a not-confident answer under ``weighted`` (the paper's alpha)."""

    def weight(self, vote: Vote) -> float:
        if self.rule == "majority":
            return 1.0
        return self.confident_weight if vote.confident else self.unsure_weight


def validate_rounds(rounds: int) -> int:
    """``rounds`` if it is a positive odd number (odd avoids ties between two labels)."""
    if rounds < 1 or rounds % 2 == 0:
        raise ValueError(f"rounds must be a positive odd number (1, 3, 5, ...), got {rounds}")
    return rounds


def permute(keys: Sequence[str], round_index: int, *, seed: int, batch_index: int = 0) -> list[str]:
    """The order a batch is asked in: round 1 as given, later rounds a seeded permutation.

    The permutation depends only on (seed, round, batch), so a resumed run and the benchmark's
    1-, 3- and 5-round configurations ask identical prompts in their shared rounds.
    """
    order = list(keys)
    if round_index > 1:
        random.Random(f"batchprompt:{seed}:{round_index}:{batch_index}").shuffle(order)
    return order


def tally(votes: Sequence[Vote], config: VotingConfig) -> str | None:
    """The winning label, or ``None`` when no vote has a label.

    Ties (possible under weighted voting, or when some rounds gave no answer) go to the label
    that was answered first, i.e. the one from the original order.
    """
    scores: dict[str, float] = {}
    first_round: dict[str, int] = {}
    for vote in votes:
        if vote.label is None:
            continue
        scores[vote.label] = scores.get(vote.label, 0.0) + config.weight(vote)
        first_round.setdefault(vote.label, vote.round)
    if not scores:
        return None
    return max(scores, key=lambda label: (round(scores[label], 9), -first_round[label]))


SeasRule = Literal["confident", "agree"]
SEAS_RULES: tuple[str, ...] = ("confident", "agree")


def seas_done(votes: Sequence[Vote], rule: SeasRule = "confident") -> bool:
    """SEAS: the last two rounds (consecutive) gave the same label, both marked confident.

    ``rule="confident"`` is the paper's Algorithm 1 (the default). ``rule="agree"`` drops the
    confidence check, as the paper's released ``adaptive_batch_run.py`` does: two consecutive
    agreeing rounds suffice. It is an option for models whose confidence marks carry no signal.
    """
    if rule not in SEAS_RULES:
        raise ValueError(f"seas rule must be one of {SEAS_RULES}, got {rule!r}")
    if len(votes) < 2:
        return False
    prev, last = votes[-2], votes[-1]
    agree = last.round == prev.round + 1 and last.label is not None and last.label == prev.label
    return agree and (rule == "agree" or (last.confident and prev.confident))
