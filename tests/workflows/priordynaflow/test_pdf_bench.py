"""The benchmark's --dry-run mode (scripted backend) end to end: every dataset and method in
summary.json in the issue's shape, details and the convergence plot written."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests import extras

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "priordynaflow" / "run.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("pdf_bench_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_dry_run_writes_the_summary_in_the_issue_shape(tmp_path):
    pytest.importorskip("matplotlib", reason=extras.BENCH)
    bench = load_bench()
    bench.main(["--dry-run", "--max-items", "4", "--explore-steps", "4", "--out", str(tmp_path)])

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == {"commit", "machine", "date", "model", "results"}
    assert summary["model"] == "scripted"
    keys = {"dataset", "method", "accuracy", "tokens_per_task", "calls_per_task", "mean_path_length"}
    assert all(set(r) == keys for r in summary["results"])
    pairs = {(r["dataset"], r["method"]) for r in summary["results"]}
    assert pairs == {(d, m) for d in ("gsm8k", "math", "humaneval", "mbpp") for m in ("cot", "fixed", "priordynaflow")}
    by = {(r["dataset"], r["method"]): r for r in summary["results"]}
    assert by[("gsm8k", "cot")]["calls_per_task"] == 1.0 and by[("mbpp", "fixed")]["mean_path_length"] == 3.0
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["tokens_per_task"] > 0 for r in summary["results"])
    pdf = by[("math", "priordynaflow")]
    assert pdf["calls_per_task"] == pdf["mean_path_length"] >= 1.0

    details = json.loads((tmp_path / "details.json").read_text())
    assert details["items_per_dataset"] == {"gsm8k": 4, "math": 4, "humaneval": 4, "mbpp": 4}
    assert set(details["qtables"]) == {"math/fold0", "math/fold1", "code-check/fold0", "code-check/fold1"}
    # Each fold's table learned from its training items (4 per dataset, 2 folds: 4 per family).
    assert all(t["num_episodes"] == 4 for t in details["qtables"].values())
    # Right answers per path: as many as the summary's accuracy says, on paths that ran.
    for name in ("gsm8k", "mbpp"):
        right = round(by[(name, "priordynaflow")]["accuracy"] * 4)
        assert sum(details["path_successes"][name].values()) == right
        assert set(details["path_successes"][name]) <= {path for path, _ in details["paths"][name]}
    assert (tmp_path / "convergence.png").stat().st_size > 1000


def test_methods_leaves_out_the_rows_not_asked_for(tmp_path):
    """--methods priordynaflow: no baseline row and no baseline call; a name outside the three is refused."""
    pytest.importorskip("matplotlib", reason=extras.BENCH)
    bench = load_bench()
    summary = bench.main(["--dry-run", "--datasets", "gsm8k", "--max-items", "4", "--explore-steps", "4",
                          "--methods", "priordynaflow", "--out", str(tmp_path)])
    assert [(r["dataset"], r["method"]) for r in summary["results"]] == [("gsm8k", "priordynaflow")]
    summary = bench.main(["--dry-run", "--datasets", "gsm8k", "--max-items", "4", "--methods", "cot",
                          "--out", str(tmp_path)])
    assert [r["method"] for r in summary["results"]] == ["cot"]
    assert json.loads((tmp_path / "details.json").read_text())["qtables"] == {}
    with pytest.raises(SystemExit):
        bench.parse_args(["--methods", "cot,chain"])


def test_gguf_runs_the_rows_on_the_embedded_model(tmp_path):
    """--gguf: the calls go to the in-process model (the embedded SmolLM2 here), no server."""
    pytest.importorskip("matplotlib", reason=extras.BENCH)
    pytest.importorskip("transformers", reason=extras.LOCAL)
    from orchestrator.llm.local import default_gguf_path

    bench = load_bench()
    summary = bench.main(["--gguf", str(default_gguf_path()), "--base-url", "http://127.0.0.1:9/v1",
                          "--datasets", "gsm8k", "--max-items", "2", "--methods", "cot", "--max-tokens", "8",
                          "--out", str(tmp_path)])
    assert summary["model"] == default_gguf_path().stem
    (row,) = summary["results"]
    assert row["calls_per_task"] == 1.0 and row["tokens_per_task"] > 8


@pytest.mark.parametrize("route_context", ["compact", "full"])
def test_routing_calls_go_through_the_openai_client_and_count_in_the_figures(tmp_path, route_context):
    # The bench against a loopback OpenAI server answering with the dry run's script: the
    # routing calls reach the server constrained to the candidates and count in calls and tokens.
    pytest.importorskip("matplotlib", reason=extras.BENCH)
    from orchestrator.testing import LoopbackServer
    from orchestrator.types import Message
    from workflows.priordynaflow.prompt import ROUTER_SYSTEM

    bench = load_bench()
    reply = bench.scripted_reply(bench.load_rows(["gsm8k"], 4, 0)["gsm8k"])
    with LoopbackServer(lambda request: reply([Message(m["role"], m["content"]) for m in request.messages])) as server:
        summary = bench.main(["--base-url", server.base_url, "--datasets", "gsm8k", "--max-items", "4",
                              "--explore-steps", "4", "--next-choice", "constrained",
                              "--route-context", route_context, "--out", str(tmp_path)])
    assert not server.errors
    routing = [b for b in server.chat_bodies if "structured_outputs" in b]
    names = {"solver", "analyst", "programmer", "inspector", "END"}
    assert routing and all(set(b["structured_outputs"]["choice"]) <= names and b["max_tokens"] == 8
                           and b["temperature"] == 0.0 for b in routing)
    compact = [b["messages"][0]["content"] == ROUTER_SYSTEM and len(b["messages"]) == 2 for b in routing]
    assert all(compact) if route_context == "compact" else not any(compact)
    pdf = next(r for r in summary["results"] if r["method"] == "priordynaflow")
    fixed = next(r for r in summary["results"] if r["method"] == "fixed")
    assert pdf["calls_per_task"] > pdf["mean_path_length"] and fixed["calls_per_task"] == 3.0


def test_the_seed_plot_reads_a_summary_key_and_refuses_one_without_seeds(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason=extras.BENCH)
    from bench.priordynaflow import seeds_plot

    arms = {"fresh": {"mbpp": {"accuracy_pct": [53.5, 52.3], "tokens_per_task": [459.1, 443.6]}},
            "turn": {"mbpp": {"accuracy_pct": [48.8], "tokens_per_task": [525.0]}, "runs": 1}}
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"k": {"seeds_0_to_4": arms}, "bare": {"runs": []}}))
    out = tmp_path / "seeds.png"
    assert seeds_plot.main(["--summary", str(summary), "--key", "k", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit):
        seeds_plot.main(["--summary", str(summary), "--key", "bare", "--out", str(out)])
    assert "has no seeds_0_to_4" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no arm"):
        seeds_plot.plot_seeds({"a": {"runs": 2}}, out)
