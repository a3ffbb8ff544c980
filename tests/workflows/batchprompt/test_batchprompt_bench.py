"""The benchmark's --dry-run mode (scripted labeler, no server) writes the issue's summary shape."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
KEYS = {"task", "method", "batch_size", "rounds", "seas", "accuracy", "input_tokens", "output_tokens", "calls",
        "parse_failures"}


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_batchprompt_run", ROOT / "bench" / "batchprompt" / "run.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_dry_run_writes_summary_detail_and_plot(tmp_path: Path, shared_data: Path) -> None:
    bench = _bench()
    out = bench.main(["--dry-run", "--limit", "40", "--tasks", "rte,qqp", "--data-dir", str(shared_data),
                      "--out-dir", str(tmp_path)])
    summary = json.loads((tmp_path / "summary-dry-run.json").read_text())
    assert set(summary) == {"commit", "machine", "date", "model", "results"} and summary["model"] == "dry-run"
    rows = summary["results"]
    assert all(set(r) == KEYS for r in rows)
    # Per task: SinglePrompt, 3 batch sizes x 3 rounds, 3 batch sizes x SEAS with 3 and 5 rounds.
    assert len(rows) == 2 * (1 + 9 + 6)
    single = next(r for r in rows if r["task"] == "rte" and r["method"] == "single")
    assert (single["batch_size"], single["rounds"], single["seas"], single["calls"]) == (1, 1, False, 40)
    bs32 = next(r for r in rows if r["task"] == "rte" and r["batch_size"] == 32 and r["rounds"] == 1)
    assert bs32["parse_failures"] > 0  # the dry-run model drops answers past position 20
    assert all(0 <= r["accuracy"] <= 100 and r["input_tokens"] > 0 for r in rows)
    detail = json.loads((tmp_path / "detail-dry-run.json").read_text())
    assert detail["errors"] == {} and detail["num_items"] == {"rte": 40, "qqp": 40}
    # Shared rounds across configurations are sent once, yet counted for each configuration.
    assert detail["num_prompts_sent"] < detail["num_prompts_asked"] == sum(r["calls"] for r in rows)
    assert all(r["unanswered_items"] == 0 for r in detail["results"])
    assert (tmp_path / "summary-dry-run.png").stat().st_size > 10_000
    assert out["summary"] == summary


def test_grid_shape() -> None:
    points = _bench().grid(["boolq"], [8, 16, 32], [1, 3, 5], [3, 5])
    assert len(points) == 16 and points[0].method == "single"
    assert sum(p.seas for p in points) == 6 and {p.rounds for p in points if p.seas} == {3, 5}
