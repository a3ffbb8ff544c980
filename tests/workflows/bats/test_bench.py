"""The BATS benchmark driver: aggregation, sharding and a dry run through the Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.bats.run import (
    SUMMARY_KEYS,
    BenchConfig,
    RunRecord,
    run_benchmark,
    shard_cells,
    summarize,
    write_results,
)
from orchestrator.errors import BadInputError
from tests import extras

DATASET = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "hotpotqa" / "validate.jsonl"


def record(method: str, budget: int, em: float, **kw: object) -> RunRecord:
    base: dict[str, object] = {
        "method": method, "budget": budget, "qid": "q", "status": "succeeded", "answer": "a", "gold": "a",
        "em": em, "f1": em, "tool_units": {"search": 2.0, "browse": 1.0}, "input_tokens": 100,
        "cached_input_tokens": 40, "output_tokens": 10, "num_llm_calls": 3, "cost_usd": 0.004,
        "violations": 0, "unused_units": 1.0, "limit_units": 4.0,
    }
    base.update(kw)
    return RunRecord(**base)  # type: ignore[arg-type]


def test_summarize_means_per_question_and_counts_violations() -> None:
    records = [
        record("bats", 2, 1.0, num_verifier_calls=2, num_invalid_json=1),
        record("bats", 2, 0.0, violations=1, status="failed", answer=""),
        record("react", 2, 1.0),
    ]
    summary, cells, violations = summarize(records)
    assert [(r["method"], r["budget"]) for r in summary] == [("react", 2), ("bats", 2)]
    assert all(tuple(r) == SUMMARY_KEYS for r in summary)
    bats = summary[1]
    assert bats["accuracy"] == 0.5 and bats["tool_units"] == 3.0 and bats["tokens"] == 110
    assert bats["unified_cost_usd"] == pytest.approx(0.004)
    assert violations == 1
    cell = cells[1]
    assert cell["invalid_verifier_json_rate"] == 0.5 and cell["unused_budget_fraction"] == 0.25
    assert cell["num_failed"] == 1 and cell["num_answered"] == 1 and cells[0]["invalid_verifier_json_rate"] is None


def test_bats_cells_say_which_attempt_was_right_and_how_the_answer_was_chosen() -> None:
    records = [  # right first, lost by the judge; right only in the second, chosen; never right; no attempt
        record("bats", 2, 0.0, gold="Paris", answer="Lyon", attempt_answers=["Paris", "Lyon"],
               attempt_decisions=["CONTINUE", "SUCCESS"], selection="judge"),
        record("bats", 2, 1.0, gold="Paris", answer="Paris", attempt_answers=["Nice", "paris"],
               attempt_decisions=["PIVOT", "SUCCESS"], selection="judge"),
        record("bats", 2, 0.0, gold="Paris", answer="Rome", attempt_answers=["Rome"],
               attempt_decisions=["SUCCESS"], selection="unanimous"),
        record("bats", 2, 0.0, gold="Paris", answer="", status="failed"),
        record("tracker", 2, 1.0),
    ]
    _, cells, _ = summarize(records)
    tracker, bats = cells
    assert "first_attempt_accuracy" not in tracker  # one loop, no attempts
    assert bats["first_attempt_accuracy"] == 0.25 and bats["any_attempt_accuracy"] == 0.5
    assert bats["vote_accuracy"] == 0.25  # the tie of run 1 goes to its first attempt; run 2's to "Nice"
    assert bats["selection_lost"] == 1 and bats["attempts_per_run"] == pytest.approx(5 / 3)
    assert bats["selection_methods"] == {"judge": 2, "unanimous": 1}
    assert bats["decisions"] == {"CONTINUE": 1, "PIVOT": 1, "SUCCESS": 3}


def test_an_option_scoped_to_a_method_reaches_only_its_runs() -> None:
    cfg = BenchConfig(dataset=DATASET, budgets=(2,), methods=("react", "bats"),
                      options={"yes_no_form": True, "bats.agent_plan": "none", "bats.selection": "vote"})
    assert cfg.options_for("react") == {"yes_no_form": True}
    assert cfg.options_for("bats") == {"yes_no_form": True, "agent_plan": "none", "selection": "vote"}
    with pytest.raises(BadInputError, match="METHOD one of --methods"):
        BenchConfig(dataset=DATASET, budgets=(2,), methods=("react",), options={"bats.agent_plan": "none"})


def test_shards_balance_heavy_cells() -> None:
    cells = [(m, b) for m in ("react", "tracker", "bats", "forcing", "parallel") for b in (2, 5, 10, 20)]
    shards = shard_cells(cells, 4)
    assert len(shards) == 4 and sorted(c for s in shards for c in s) == sorted(cells)
    # The heaviest cells (bats and parallel at budget 20) land on different workers.
    assert sum(any(c in s for c in [("bats", 20), ("parallel", 20)]) for s in shards) == 2
    assert len(shard_cells(cells[:2], 8)) == 2  # never more workers than cells


@pytest.mark.skipif(not DATASET.exists(), reason="shared HotpotQA data not present")
def test_dry_run_through_runtime_writes_summary_in_issue_shape(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason=extras.BENCH)
    cfg = BenchConfig(dataset=DATASET, budgets=(2,), methods=("tracker", "bats"), limit=2, concurrency=8,
                      out_dir=tmp_path, dry_run=True)
    records = run_benchmark(cfg)
    assert len(records) == 4 and all(r.status == "succeeded" for r in records)
    assert all(sum(r.tool_units.values()) <= 4 for r in records)
    summary = write_results(cfg, records, wall_s=1.0)
    on_disk = json.loads((tmp_path / "dry_run" / "summary.json").read_text())
    assert on_disk == summary
    assert set(on_disk) == {"commit", "machine", "date", "model", "dataset", "budget_violations", "results"}
    assert on_disk["budget_violations"] == 0 and on_disk["model"] == "dry-run-rule"
    assert [(r["method"], r["budget"]) for r in on_disk["results"]] == [("tracker", 2), ("bats", 2)]
    assert all(r["tokens"] > 0 and r["unified_cost_usd"] > 0 for r in on_disk["results"])
    details = json.loads((tmp_path / "dry_run" / "details.json").read_text())
    assert details["dry_run"] is True and len(details["runs"]) == 4
    assert details["cells"][1]["num_verifier_calls"] == 2
    bats_runs = [r for r in details["runs"] if r["method"] == "bats"]
    assert all(r["attempt_answers"] and r["selection"] for r in bats_runs)
    assert "any_attempt_accuracy" in details["cells"][1] and "any_attempt_accuracy" not in details["cells"][0]
    assert (tmp_path / "dry_run" / "cost_accuracy.png").stat().st_size > 0
