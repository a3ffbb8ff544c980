"""The benchmark's --dry-run (scripted labeler) and --fake-server (real HTTP client, logprobs)
modes write the issue's summary shape, goal rows first, and respect the time limit."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import extras

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
    pytest.importorskip("matplotlib", reason=extras.BENCH)
    bench = _bench()
    out = bench.main(["--dry-run", "--limit", "40", "--tasks", "rte,qqp", "--data-dir", str(shared_data),
                      "--out-dir", str(tmp_path)])
    summary = json.loads((tmp_path / "summary-dry-run.json").read_text())
    assert set(summary) == {"commit", "machine", "date", "model", "results"} and summary["model"] == "dry-run"
    rows = summary["results"]
    assert all(set(r) == KEYS for r in rows)
    # Per task: SinglePrompt, 3 batch sizes x 3 rounds, 3 batch sizes x paper SEAS with 3 and 5 rounds.
    assert len(rows) == 2 * (1 + 9 + 6)
    # Goal rows come first: SinglePrompt, then batch 16/32.
    assert [(r["task"], r["batch_size"]) for r in rows[:2]] == [("rte", 1), ("rte", 16)]
    variants = json.loads((tmp_path / "summary-variants-dry-run.json").read_text())["results"]
    # agree+logprob SEAS at 16/32, and the constrained goal rows (single, k1, paper SEAS k3/k5, logprob SEAS).
    assert {r["variant"] for r in variants} == {"agree", "logprob", "constrained", "constrained+logprob"}
    assert len(variants) == 2 * (3 * 2 + 1 + 2 * 4)
    single = next(r for r in rows if r["task"] == "rte" and r["method"] == "single")
    assert (single["batch_size"], single["rounds"], single["seas"], single["calls"]) == (1, 1, False, 40)
    bs32 = next(r for r in rows if r["task"] == "rte" and r["batch_size"] == 32 and r["rounds"] == 1)
    assert bs32["parse_failures"] > 0  # the dry-run model drops answers past position 20
    assert all(0 <= r["accuracy"] <= 100 and r["input_tokens"] > 0 for r in rows)
    detail = json.loads((tmp_path / "detail-dry-run.json").read_text())
    assert detail["errors"] == {} and detail["num_items"] == {"rte": 40, "qqp": 40}
    assert detail["finished"] and detail["incomplete"] == []
    rates = detail["parse_failure_rate_by_batch_size"]["rte"]
    assert rates["1"] == rates["8"] == rates["16"] == 0.0 < rates["32"]
    # Shared rounds across configurations are sent once, yet counted for each configuration.
    assert detail["num_prompts_sent"] < detail["num_prompts_asked"] == sum(r["calls"] for r in detail["results"])
    assert all(r["unanswered_items"] == 0 for r in detail["results"])
    # The scripted labeler returns no logprobs: the logprob variant falls back to the marks, counted.
    assert all(r["logprob_missing_calls"] == r["calls"] for r in detail["results"] if r["variant"] == "logprob")
    assert all(r["paper_accounting_token_share_pct"] > 0 for r in detail["results"])
    assert (tmp_path / "summary-dry-run.png").stat().st_size > 10_000
    assert out["summary"] == summary


def test_fake_server_goes_through_http_with_logprobs(tmp_path: Path, shared_data: Path) -> None:
    bench = _bench()
    bench.main(["--fake-server", "--limit", "24", "--tasks", "rte", "--batch-sizes", "16", "--rounds", "1",
                "--seas-rounds", "3", "--data-dir", str(shared_data), "--out-dir", str(tmp_path)])
    detail = json.loads((tmp_path / "detail-fake-server.json").read_text())
    assert detail["errors"] == {} and detail["finished"]
    logprob = next(r for r in detail["results"] if r["variant"] == "logprob")
    paper = next(r for r in detail["results"] if r["variant"] == "paper")
    assert logprob["logprob_missing_calls"] == 0 and logprob["confident_answers"] > 0
    assert logprob["seas_exits_by_round"] == paper["seas_exits_by_round"]  # p=0.99 iff marked sure
    assert all(len(r["predictions"]) == 24 for r in detail["results"])
    assert detail["num_constrained_requests"] > 0
    assert not detail["constraint_rejected"] and not detail["logprobs_rejected"]


def test_time_limit_writes_what_finished(tmp_path: Path, shared_data: Path) -> None:
    bench = _bench()
    bench.main(["--fake-server", "--limit", "40", "--tasks", "rte,qqp", "--time-limit-s", "0.001",
                "--data-dir", str(shared_data), "--out-dir", str(tmp_path)])
    detail = json.loads((tmp_path / "detail-fake-server.json").read_text())
    summary = json.loads((tmp_path / "summary-fake-server.json").read_text())
    assert not detail["finished"] and detail["incomplete"] and detail["errors"] == {}
    variants = json.loads((tmp_path / "summary-variants-fake-server.json").read_text())
    total = sum(len(w) for w in bench.grid(["rte", "qqp"], [8, 16, 32], [1, 3, 5], [3, 5]))
    assert len(summary["results"]) + len(variants["results"]) + len(detail["incomplete"]) == total


def test_grid_waves_put_goal_rows_first() -> None:
    first, rest = _bench().grid(["boolq"], [8, 16, 32], [1, 3, 5], [3, 5], constrained=False)
    assert [p.name for p in first[:2]] == ["boolq/bs1/k1", "boolq/bs16/k1"]
    assert {p.batch_size for p in first} == {1, 16, 32} and {p.batch_size for p in rest} == {8, 16, 32}
    assert all(not p.seas for p in rest if p.batch_size != 8)
    paper = [p for p in first + rest if p.seas and p.variant == "paper"]
    assert len(paper) == 6 and {p.rounds for p in paper} == {3, 5}
    assert {(p.variant, p.rounds) for p in first if p.seas} == {("paper", 3), ("paper", 5), ("agree", 5),
                                                                ("logprob", 5)}
    assert len(first + rest) == 1 + 9 + 6 + 2 * 3


def test_constrained_calls_carry_the_answer_regex_and_survive_a_rejection(shared_data: Path) -> None:
    import asyncio
    import re as _re

    from bench.batchprompt.responder import BatchPromptModel
    from orchestrator.llm.openai import OpenAIClient, OpenAIConfig
    from orchestrator.testing import LoopbackServer
    from orchestrator.types import LLMRequest, LLMResponse, Message, SamplingOptions
    from workflows.batchprompt.engine import BatchPromptConfig, BatchPromptResult, run_batchprompt
    from workflows.batchprompt.prompt import answer_regex
    from workflows.batchprompt.tasks import load_builtin_items, load_task

    task = load_task("rte")
    items = load_builtin_items("rte", shared_data, limit=24).items
    regex = answer_regex(task, 3)
    assert _re.fullmatch(regex, "[1] yes (sure)\n[2] no (unsure)\n[3] no (sure)")
    assert not _re.fullmatch(regex, "[1] yes (sure)\n[2] no (unsure)")  # a missing line cannot pass

    async def go(accept: bool) -> tuple[BatchPromptModel, OpenAIClient, list[Any], list[BatchPromptResult]]:
        model = BatchPromptModel([(task, items)], accept_structured=accept)
        with LoopbackServer(model, model="m") as loopback:
            client = OpenAIClient(OpenAIConfig(base_urls=(loopback.base_url,), model="m"))

            async def chat(messages: list[Message], sampling: SamplingOptions) -> LLMResponse:
                return await client.complete(LLMRequest(tuple(messages), sampling))

            results = [await run_batchprompt(task, items, BatchPromptConfig(batch_size=24, reask=False,
                                                                             constrained=constrained),
                                             chat, client.count_tokens)
                       for constrained in (False, True, True)]
            await client.aclose()
        assert not loopback.errors
        return model, client, loopback.chat_bodies, results

    model, client, bodies, (plain, forced, again) = asyncio.run(go(True))
    assert plain.stats.num_missing == 4 and forced.stats.num_missing == 0  # the fake drops past 20
    assert [b.get("structured_outputs") for b in bodies] == [None] + [{"regex": answer_regex(task, 24)}] * 2
    assert model.num_structured == 2 and client.num_rejected["structured_outputs"] == 0
    model, client, bodies, (plain, forced, again) = asyncio.run(go(False))
    # A server without structured outputs: rejected once, then unconstrained; answers still come.
    assert client.num_rejected["structured_outputs"] == 2 and model.num_structured == 0
    assert ["structured_outputs" in b for b in bodies] == [False, True, False, False]
    assert forced.stats.num_missing == again.stats.num_missing == 4
