from __future__ import annotations

import pytest

from workflows.batchprompt.voting import (
    Vote,
    VotingConfig,
    permute,
    seas_done,
    tally,
    validate_rounds,
)

KEYS = [str(i) for i in range(16)]


def test_round_one_keeps_the_original_order() -> None:
    assert permute(KEYS, 1, seed=7, batch_index=3) == KEYS


def test_later_rounds_are_seeded_permutations() -> None:
    r2 = permute(KEYS, 2, seed=0)
    assert sorted(r2) == sorted(KEYS) and r2 != KEYS
    assert permute(KEYS, 2, seed=0) == r2  # reproducible
    assert permute(KEYS, 3, seed=0) != r2  # differs per round
    assert permute(KEYS, 2, seed=1) != r2  # and per seed
    assert permute(KEYS, 2, seed=0, batch_index=1) != r2  # and per batch


def test_rounds_must_be_odd() -> None:
    assert validate_rounds(5) == 5
    for bad in (0, 2, 4, -1):
        with pytest.raises(ValueError, match="odd"):
            validate_rounds(bad)


def test_majority_vote() -> None:
    votes = [Vote(1, "no", True), Vote(2, "yes", False), Vote(3, "yes", False)]
    assert tally(votes, VotingConfig("majority")) == "yes"


def test_weighted_vote_follows_confidence() -> None:
    votes = [Vote(1, "no", True), Vote(2, "yes", False), Vote(3, "yes", False)]
    assert tally(votes, VotingConfig("weighted")) == "no"  # 1.0 against 0.2 + 0.2
    assert tally(votes, VotingConfig("weighted", unsure_weight=0.6)) == "yes"  # 1.2 against 1.0


def test_empty_votes_are_ignored_and_ties_go_to_the_earliest_answer() -> None:
    assert tally([Vote(1, None), Vote(2, None)], VotingConfig()) is None
    assert tally([Vote(1, None), Vote(2, "no"), Vote(3, "yes")], VotingConfig()) == "no"
    assert tally([Vote(1, "yes", True), Vote(2, "no", True)], VotingConfig("weighted")) == "yes"


def test_seas_needs_two_consecutive_confident_agreeing_rounds() -> None:
    assert seas_done([Vote(1, "yes", True), Vote(2, "yes", True)])
    assert seas_done([Vote(1, "no", False), Vote(2, "yes", True), Vote(3, "yes", True)])
    assert not seas_done([Vote(1, "yes", True)])
    assert not seas_done([Vote(1, "yes", True), Vote(2, "yes", False)])
    assert not seas_done([Vote(1, "yes", True), Vote(2, "no", True)])
    assert not seas_done([Vote(1, None, True), Vote(2, None, True)])
    assert not seas_done([Vote(1, "yes", True), Vote(3, "yes", True)])  # not consecutive


def test_vote_round_trips_through_json_lists() -> None:
    vote = Vote(3, "no", True)
    assert Vote.from_list(vote.to_list()) == vote


def test_seas_agree_rule_ignores_confidence() -> None:
    unsure = [Vote(1, "a", False), Vote(2, "a", False)]
    assert not seas_done(unsure) and seas_done(unsure, "agree")
    assert not seas_done([Vote(1, "a", False), Vote(2, "b", False)], "agree")
    assert not seas_done([Vote(1, "a", True), Vote(3, "a", True)], "agree")  # not consecutive
    with pytest.raises(ValueError):
        seas_done(unsure, "sometimes")  # type: ignore[arg-type]
