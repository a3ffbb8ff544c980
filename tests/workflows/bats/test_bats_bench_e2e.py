"""The BATS benchmark end to end against the kit's loopback OpenAI-compatible server (the path the GPU run
takes): two worker processes with their own stores, the react method on the shared harness,
the verifier's structured-output request, answer extraction, per-model files, and a time limit
that cancels a hung question and still writes results over the questions every cell finished."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.bats.run import (
    METHOD_WORKFLOWS,
    BenchConfig,
    RunRecord,
    complete_questions,
    load_questions,
    run_benchmark,
    shard_questions,
    write_results,
)
from orchestrator.testing import LoopbackServer
from tests import extras
from tests.workflows.bats.served_model import BatsModel

DATASET = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "hotpotqa" / "validate.jsonl"


def test_questions_are_dealt_round_robin_and_complete_set_needs_every_cell() -> None:
    qs = [{"id": str(i)} for i in range(7)]
    shards = shard_questions(qs, 3)
    assert [[q["id"] for q in s] for s in shards] == [["0", "3", "6"], ["1", "4"], ["2", "5"]]
    assert len(shard_questions(qs[:2], 16)) == 2

    def rec(m: str, b: int, q: str) -> RunRecord:
        return RunRecord(m, b, q, "succeeded", "", "", 0.0, 0.0, {}, 0, 0, 0, 0, 0.0, 0, 0.0, 0.0)

    cells = [("react", 2), ("bats", 2)]
    assert complete_questions([rec("react", 2, "a"), rec("bats", 2, "a"), rec("react", 2, "b")], cells) == {"a"}
    assert METHOD_WORKFLOWS["react"] == "react_harness"


@pytest.mark.skipif(not DATASET.exists(), reason="shared HotpotQA data not present")
def test_bench_against_fake_openai_server_with_time_limit(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason=extras.BENCH)
    questions = load_questions(DATASET, 3)
    server = LoopbackServer(BatsModel(hang_marker=questions[1]["question"]), model="qwen2.5-coder-0.5b").start()
    try:
        cfg = BenchConfig(dataset=DATASET, budgets=(2,), methods=("react", "bats"), backend="openai",
                          backend_options={"base_urls": [server.base_url], "model": "qwen2.5-coder-0.5b"},
                          model="qwen2.5-coder-0.5b", limit=3, concurrency=8, workers=2, out_dir=tmp_path,
                          time_limit_s=45.0, primary=True)
        records = run_benchmark(cfg)
        summary = write_results(cfg, records, wall_s=45.0)
    finally:
        server.stop()
    # The hung question was cancelled in every cell; the other two finished in both cells.
    assert {r.qid for r in records} == {questions[0]["id"], questions[2]["id"]} and len(records) == 4
    assert all(r.status == "succeeded" for r in records)
    # Two workers, each with its own SQLite store.
    assert {p.name for p in (tmp_path / "work-qwen2.5-coder-0.5b").glob("shard*.db")} == {"shard0.db", "shard1.db"}
    for name in ("summary.json", "summary-qwen2.5-coder-0.5b.json"):
        on_disk = json.loads((tmp_path / name).read_text())
        assert on_disk == summary
    assert set(summary) == {"commit", "machine", "date", "model", "dataset", "budget_violations", "results"}
    assert summary["model"] == "qwen2.5-coder-0.5b" and summary["dataset"] == "validate.jsonl (2 questions)"
    assert summary["budget_violations"] == 0
    details = json.loads((tmp_path / "details-qwen2.5-coder-0.5b.json").read_text())
    assert details["time_limited"] is True and details["num_questions"] == 2 and details["num_questions_planned"] == 3
    cells = {c["method"]: c for c in details["cells"]}
    # Structured outputs: every verifier request carried the schema, and no reply was invalid.
    verifier = [b for b in server.chat_bodies if b["messages"][0]["content"].startswith("You check a proposed answer")]
    assert verifier and all(b["response_format"]["type"] == "json_schema" for b in verifier)
    assert cells["bats"]["invalid_verifier_json_rate"] == 0.0
    # Cut replies are counted by purpose (the fake cuts only the planner's), with a sample of the text.
    assert cells["bats"]["cut_calls_by_purpose"] == {"planner": 2} and cells["react"]["cut_calls_by_purpose"] == {}
    assert {r.cut_sample for r in records if r.method == "bats"} == {
        "[planner] explore: the entity in the question\nverify: the answer fits"}
    # Every answer was read from the tool results (one reading call per attempt), and the reader's
    # long sentence cut to the page title by the extraction call, for both methods.
    assert all(c["reading_calls_per_run"] >= 1 for c in cells.values())
    assert all(c["extraction_calls_per_run"] >= 1 and c["long_answer_fraction"] == 0 for c in cells.values())
    assert all(r.agent_answer.endswith("according to the page that I read just now") for r in records)
    assert all(r.answer and len(r.answer) < 60 and "according to" not in r.answer for r in records)
    # Every run keeps what its agent did (both methods: the harness's stats, BATS's attempts).
    assert all(r.actions.get("search") and r.actions.get("answer") for r in records)
    assert all(c["example_copies_per_run"] == 0 for c in cells.values())
    # The served name finds the Qwen entry of the price table (cheaper than the default entry).
    from budget.costs import load_price_table

    assert load_price_table().price_for("qwen2.5-coder-0.5b").input == 0.02
    assert (tmp_path / "cost_accuracy.png").stat().st_size > 0
