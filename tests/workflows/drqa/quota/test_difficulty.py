"""Difficulty from probe length, agreement with the quick answer and stated confidence."""

from __future__ import annotations

import pytest

from workflows.drqa.quota.batch import ProbeItem
from workflows.drqa.quota.difficulty import DifficultyConfig, estimate_difficulty


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


def test_size_ranks_order_questions_by_words_and_quantities() -> None:
    from workflows.drqa.quota.difficulty import question_size, size_ranks

    short = "What is 2 plus 3?"
    longer = "Ann has 12 apples and buys 3 bags of 4 more. She gives 5 away. How many are left?"
    same = "What is 7 plus 9?"
    assert question_size(longer) > question_size(short)
    assert question_size("a 1,200 b") == 3 + 5.0  # three words, one quantity
    assert size_ranks([longer, short, same]) == [1.0, 0.25, 0.25]  # a tie shares the mean rank
    assert size_ranks([short]) == [0.5]
    assert size_ranks([]) == []


def test_size_rank_mixes_in_by_weight_prior() -> None:
    item = ProbeItem(1, "7", "short work", 10, 0.9)
    probe_only = estimate_difficulty(item, "7")
    assert estimate_difficulty(item, "7", size_rank=None) == probe_only
    hard = estimate_difficulty(item, "7", size_rank=1.0)
    easy = estimate_difficulty(item, "7", size_rank=0.0)
    assert easy.value < probe_only.value < hard.value
    assert hard.value == pytest.approx(0.5 * probe_only.value + 0.5)
    assert hard.resolved == probe_only.resolved and hard.agrees == probe_only.agrees
    off = estimate_difficulty(item, "7", DifficultyConfig(weight_prior=0.0), size_rank=1.0)
    assert off.value == probe_only.value
    with pytest.raises(ValueError):
        DifficultyConfig(weight_prior=1.5)
