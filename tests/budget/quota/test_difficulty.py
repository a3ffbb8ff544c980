"""Difficulty from probe length, agreement with the quick answer and stated confidence."""

from __future__ import annotations

from budget.quota.batch import ProbeItem
from budget.quota.difficulty import DifficultyConfig, estimate_difficulty


def _item(tokens: int, answer: str | None = "5", conf: float | None = 0.9, missing: bool = False) -> ProbeItem:
    return ProbeItem(1, answer, "x " * tokens, tokens, conf, missing)


def test_each_signal_raises_difficulty() -> None:
    base = estimate_difficulty(_item(10), "5")
    assert estimate_difficulty(_item(100), "5").value > base.value  # longer working
    assert estimate_difficulty(_item(10), "6").value > base.value  # disagreement
    assert estimate_difficulty(_item(10, conf=0.2), "5").value > base.value  # doubt


def test_resolved_needs_agreement_and_confidence() -> None:
    cfg = DifficultyConfig(resolve_confidence=0.8)
    assert estimate_difficulty(_item(5, conf=0.9), "5.0", cfg).resolved
    assert not estimate_difficulty(_item(5, conf=0.5), "5", cfg).resolved
    assert not estimate_difficulty(_item(5, conf=0.95), "6", cfg).resolved
    assert not estimate_difficulty(_item(5, conf=0.95), None, cfg).resolved


def test_missing_or_unanswered_is_hardest_and_values_are_bounded() -> None:
    assert estimate_difficulty(_item(0, missing=True, answer=None)).value == 1.0
    assert estimate_difficulty(_item(3, answer=None)).value == 1.0
    easy = estimate_difficulty(_item(0, conf=1.0), "5", DifficultyConfig(min_difficulty=0.05))
    assert easy.value == 0.05
