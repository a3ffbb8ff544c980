"""The issue-22 analyses' arithmetic: label-score AUC, funding chains under a token target, and the
synthetic-signal curve (no model: the numbers are small enough to check by hand)."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import pytest

from bench.batchprompt.label_auc import summarise
from bench.drqa.signal_bound import CAPPED, funded_right, load_runs, size_bound, synthetic_curve


def test_label_auc_ranks_the_first_label_up_counting_ties_half():
    def auc(scores: list[float], gold: list[bool]) -> float | None:
        return summarise(scores, gold)["auc"]

    assert auc([3.0, 2.0, 1.0, 0.0], [True, True, False, False]) == 1.0
    assert auc([0.0, 1.0, 2.0, 3.0], [True, True, False, False]) == 0.0
    # One first-label item above one other, one tie: (1 + 0.5) / (1 * 2).
    assert auc([1.0, 0.5, 1.0], [True, False, False]) == pytest.approx(0.75)
    assert auc([1.0, 2.0], [True, True]) is None  # one label only: no ranking to judge


def test_summarise_calibrates_at_the_mean_not_at_zero():
    # Every score favours the first label (a biased model), yet the order is perfect.
    scores, gold = [5.0, 4.0, 2.0, 1.0], [True, True, False, False]
    out = summarise(scores, gold)
    assert out["auc"] == 1.0
    assert out["accuracy_mean_calibrated"] == 1.0
    assert out["accuracy_uncalibrated"] == 0.5
    assert out["first_label_share_uncalibrated"] == 1.0


def test_funding_stops_at_the_first_chain_over_the_target():
    tokens, right = [100, 300, 50, 200], [True, False, True, True]
    assert funded_right([0, 2, 3, 1], tokens, right, budget=350) == 3  # 100 + 50 + 200
    # In this order the 300-token chain does not fit after the first; funding stops there.
    assert funded_right([0, 1, 2, 3], tokens, right, budget=350) == 1


def test_size_bound_orders_by_difficulty_and_cuts_at_each_cap():
    tokens, right, difficulty = [100, 400, 100, 100], [True, True, True, False], [0.1, 0.2, 0.9, 0.3]
    # Target 0.75 * 700 = 525. Cap 512: chains 0 (100) and 1 (400) fit, 2 right answers.
    # Cap 300: chain 1 is cut (counted wrong) at 300; 0, 1, 3 fit (500), then chain 2 does not.
    assert size_bound(tokens, right, difficulty, 0.75, [300, 512]) == {"300": 1, "512": 2}


def test_synthetic_curve_rises_from_chance_to_no_loss():
    runs = [{"tokens": [100] * 40, "right": [i % 4 == 0 for i in range(40)]}]
    curve = synthetic_curve(runs, share=0.75, draws=50, seed=0)
    assert curve[0]["auc"] == 0.5 and curve[-1]["auc"] > 0.97
    changes = [c["mean_change"] for c in curve]
    assert changes[0] < -1.5  # funding 30 of 40 at random drops about a quarter of the 10 right
    assert changes[-1] == 0.0  # a near-perfect signal funds every right chain first
    assert all(a <= b + 0.3 for a, b in itertools.pairwise(changes))


def test_load_runs_reads_the_capped_row_and_skips_files_without_one(tmp_path: Path):
    item = {"id": "q1", "solve_tokens": 120, "correct": True, "difficulty": 0.4}
    rows = [{"method": "unlimited", "variant": CAPPED, "items": [item]},
            {"method": "drqa", "variant": "", "items": [item], "difficulty_auc": 0.8}]
    with gzip.open(tmp_path / "a.json.gz", "wt") as fh:
        json.dump({"allocation": rows}, fh)
    with gzip.open(tmp_path / "b.json.gz", "wt") as fh:
        json.dump({"allocation": rows[1:]}, fh)
    runs = load_runs(str(tmp_path / "*.json.gz"))
    assert len(runs) == 1
    assert runs[0]["tokens"] == [120] and runs[0]["right"] == [True] and runs[0]["difficulty"] == [0.4]
