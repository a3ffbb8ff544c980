"""Forced final answers: a solve cut off at its quota still answers, inside the same budget."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from orchestrator.direct import DirectContext
from orchestrator.llm.scripted import ScriptedClient, ScriptedConfig
from orchestrator.types import Message
from tests import extras
from workflows.drqa.graph import NODE_ORDER, TEXT_RECORD_CHARS, initial_state, result, run_nodes
from workflows.drqa.prompts import FORCE_ANSWER_CUE
from workflows.drqa.quota.plan import QuotaConfig, answer_reserve
from workflows.drqa.sim import make_rows, sim_client, sim_reply

STEPS = [1, 1, 2, 1, 12, 1, 2, 14, 1, 1, 2, 10]


def _run(method: str, budget: int | None, **options: Any) -> tuple[dict[str, Any], ScriptedClient, DirectContext]:
    sim = sim_client()
    ctx = DirectContext(sim, config={"method": method, "total_budget": budget, "batch_size": 4,
                                     "floor_tokens": 16, "ceiling_tokens": 600, **options})
    state = asyncio.run(run_nodes(ctx, initial_state({"rows": make_rows(STEPS), "dataset": "gsm8k"})))
    return result(state), sim, ctx


def _forced_requests(sim: ScriptedClient) -> list[Any]:
    return [r for r in sim.requests if FORCE_ANSWER_CUE in r.messages[-1].content]


def test_answer_reserve_is_at_most_half_the_quota_and_zero_when_off() -> None:
    cfg = QuotaConfig(answer_reserve_tokens=24)
    assert answer_reserve(200, cfg) == 24
    assert answer_reserve(30, cfg) == 15
    assert answer_reserve(1, cfg) == 0
    assert answer_reserve(200, QuotaConfig(force_answer=False)) == 0


def test_cut_off_solve_gets_a_forced_answer_from_its_own_working() -> None:
    # 240 tokens over 12 questions: 20 each, so every solve is cut after 10 words.
    res, sim, ctx = _run("uniform", 240)
    forced = _forced_requests(sim)
    assert len(forced) == len(STEPS) == res["num_forced"] == res["num_truncated"]
    for req in forced:
        roles = [m.role for m in req.messages]
        assert roles == ["system", "user", "assistant", "user"]
        # The solve prompt without its budget sentence (a small model copies that number as its answer).
        assert "budget" not in req.messages[1].content and "Reason step by step" in req.messages[1].content
        assert req.messages[2].content.startswith("step")  # the cut-off working goes back
        assert "####" in req.messages[3].content  # the answer format is asked for again
        assert req.sampling.max_tokens <= 10  # the reserve: half of a 20-token quota
    # The sim's forced answer is right when half the working was done: 10 of 30 words for S=1 is not.
    assert res["num_unparsable"] == 0
    assert {it["source"] for it in res["items"]} == {"forced"}
    # uniform records no reallocate step; the answer stage runs just before final.
    assert [name for name, _ in ctx.steps] == [n for n in NODE_ORDER if n != "reallocate"]


def test_forced_answers_turn_cut_chains_into_correct_answers() -> None:
    # 50 tokens a question, 6 held back (the reply "#### 22" is 5 scripted tokens): S=2 questions
    # (60 words of working) are cut either way; without forcing they score nothing, with it the
    # forced answer reads 44 words (>= half).
    off, sim_off, _ = _run("uniform", 600, force_answer=False, answer_reserve_tokens=6)
    on, sim_on, _ = _run("uniform", 600, answer_reserve_tokens=6)
    assert off["num_forced"] == 0 and not _forced_requests(sim_off)
    assert [it["source"] for it in off["items"]].count("none") == 6  # S >= 2: cut, no answer
    assert on["num_forced"] == 6 and len(_forced_requests(sim_on)) == 6
    assert (off["accuracy"], on["accuracy"]) == (0.5, 0.75)
    solves = [r for r in sim_on.requests if len(r.messages) == 2]
    assert len(solves) == 12 and all(r.sampling.max_tokens == 44 for r in solves)


@pytest.mark.parametrize("method", ["uniform", "drqa"])
@pytest.mark.parametrize("budget", [120, 240, 480, 900, 1500])
def test_budget_never_exceeded_with_forced_answers(method: str, budget: int) -> None:
    res, _, ctx = _run(method, budget, answer_reserve_tokens=24)
    assert res["reasoning_tokens"] == ctx.usage.output_tokens <= budget
    assert sum(res["tokens_by_purpose"].values()) == res["reasoning_tokens"]
    for it in res["items"]:
        # Solve + continuation/retry + forced answer stay inside the item's quota and extra.
        assert it["solve_tokens"] <= it["quota"] + it["extra"], it


def test_budget_never_exceeded_when_forced_answers_ramble() -> None:
    """A model that answers the cue with more working still stops at the reserve."""

    def rambling(messages: Sequence[Message]) -> str:
        return " ".join(["more"] * 500) if FORCE_ANSWER_CUE in messages[-1].content else sim_reply(messages)

    for method in ("uniform", "drqa", "unlimited"):
        sim = ScriptedClient(ScriptedConfig(rambling, model="sim"))
        budget = None if method == "unlimited" else 300
        ctx = DirectContext(sim, config={"method": method, "total_budget": budget, "unlimited_max_tokens": 40,
                                         "floor_tokens": 16, "ceiling_tokens": 600})
        res = result(asyncio.run(run_nodes(ctx, initial_state({"rows": make_rows(STEPS), "dataset": "gsm8k"}))))
        assert res["num_forced"] > 0
        cap = 300 if budget else 40 * len(STEPS)
        assert ctx.usage.output_tokens == res["reasoning_tokens"] <= cap, method
        assert all(it["solve_tokens"] <= it["quota"] + it["extra"] for it in res["items"])
        # A forced reply cut at its reserve is not read for an intermediate number.
        assert sum(1 for it in res["items"] if it["forced"] and it["answer"] is None) == res["num_forced"]


def test_per_item_record() -> None:
    res, _, _ = _run("uniform", 240, answer_reserve_tokens=8)
    it = res["items"][4]  # steps=12: 360 words of working, cut at 12
    assert it["finish_reason"] == "length" and it["forced"] and it["forced_finish_reason"] == "stop"
    assert it["quota"] == 20 and it["solve_tokens"] <= 20
    assert it["text"].startswith("step") and "####" not in it["text"]
    assert it["forced_text"].startswith("####") and it["answer"] == it["forced_text"][5:]
    assert it["gold"] == "44" and it["correct"] is False
    for key in ("id", "answer", "gold", "source", "correct", "quota", "extra", "solve_tokens", "finish_reason",
                "forced", "text", "forced_text", "difficulty"):
        assert key in it
    long = _run("unlimited", None, unlimited_max_tokens=600)[0]["items"][7]  # 420 words of working
    assert len(long["text"]) <= TEXT_RECORD_CHARS + 10 and long["text"].endswith("#### 77")


def test_bench_records_items_and_respects_the_time_limit(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason=extras.BENCH)
    from bench.drqa.run import main

    args = ["--dry-run", "--parts", "allocation", "--via", "direct", "--results-dir", str(tmp_path),
            "--artifacts-dir", str(tmp_path / "art"), "--fractions", "0.5,0.75",
            "--variants", "drqa:strategy=proportional", "--design-rows", "4"]
    assert main(args) == 0
    details = json.loads((tmp_path / "dry-run" / "details.json").read_text())
    entries = details["allocation"]
    gsm = [e for e in entries if e["dataset"] == "gsm8k"]
    assert [(e["method"], e["variant"]) for e in gsm] == [
        ("unlimited", ""), ("unlimited", "unlimited:unlimited_max_tokens=512"),
        *[("uniform", ""), ("drqa", ""), ("drqa", "drqa:strategy=proportional")] * 2]
    assert [e["options"]["strategy"] for e in gsm[2:5]] == ["easiest_first", "easiest_first", "proportional"]
    # The rows looked at while designing (the first 4) are reported apart from the rest.
    for e in entries:
        assert e["design_rows"]["num_items"] == 4
        assert e["held_out"]["num_items"] == e["num_items"] - 4
        assert e["held_out"]["solve_tokens"] + e["design_rows"]["solve_tokens"] == sum(
            it["solve_tokens"] for it in e["items"])
    for e in entries:
        assert {"num_truncated", "num_forced", "num_unparsable"} <= set(e)
        assert len(e["items"]) == e["num_items"]
        for it in e["items"]:
            assert {"id", "method", "total_budget", "quota", "solve_tokens", "finish_reason", "text", "answer",
                    "source", "gold", "correct"} <= set(it)
            assert it["method"] == e["method"]
    summary = json.loads((tmp_path / "dry-run" / "summary.json").read_text())
    # Variants stay out of the summary (it holds each method with its defaults).
    assert len(entries) == 16 and len(summary["allocation"]) == 10
    assert (tmp_path / "dry-run" / "allocation.png").exists()
    # No time left: nothing starts, the skips are recorded, the files are still written.
    assert main([*args, "--results-dir", str(tmp_path / "late"), "--time-limit-s", "1", "--min-run-s", "30"]) == 0
    late = json.loads((tmp_path / "late" / "dry-run" / "details.json").read_text())
    assert late["allocation"] == [] and any("not started" in s for s in late["skipped"])


def test_bench_end_to_end_over_http_against_the_fake_server(tmp_path: Path) -> None:
    """The GPU command's path: real data files, the OpenAI client, HTTP, --time-limit-s."""
    from bench.drqa.responder import MODEL, respond
    from bench.drqa.run import main
    from orchestrator.testing import LoopbackServer

    with LoopbackServer(respond, model=MODEL, tokenize=False) as server:
        assert main(["--base-url", server.base_url, "--model", "fake-drqa", "--variants", "",
                     "--parts", "allocation", "--limit", "6", "--fractions", "0.5", "--time-limit-s", "120",
                     "--results-dir", str(tmp_path), "--artifacts-dir", str(tmp_path / "art")]) == 0
    details = json.loads((tmp_path / "details.json").read_text())
    assert [(e["dataset"], e["method"], e["options"]["unlimited_max_tokens"]) for e in details["allocation"]] == [
        (d, m, cap) for d in ("gsm8k", "math")
        for m, cap in (("unlimited", 4096), ("unlimited", 512), ("uniform", 4096), ("drqa", 4096))]
    for e in details["allocation"][1:]:
        if e["method"] != "unlimited":
            assert e["reasoning_tokens"] <= e["total_budget"]
    assert details["skipped"] == []
    assert any(it["forced"] for e in details["allocation"] for it in e["items"])


def test_state_budget_off_keeps_the_cap_but_drops_the_sentence() -> None:
    res, sim, _ = _run("uniform", 600, state_budget=False, answer_reserve_tokens=4)
    solves = [r for r in sim.requests if len(r.messages) == 2]
    assert len(solves) == 12 and all(r.sampling.max_tokens == 46 for r in solves)
    assert all("words at most" not in r.messages[-1].content for r in solves)
    assert res["reasoning_tokens"] <= 600
    _, sim_on, _ = _run("uniform", 600, answer_reserve_tokens=4)
    assert all("in about 34 words at most. Then end with" in r.messages[-1].content
               for r in sim_on.requests if len(r.messages) == 2)
