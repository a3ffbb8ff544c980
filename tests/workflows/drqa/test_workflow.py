"""The drqa workflow through the real Runtime (store, ledger, checkpoints) on a simulated solver."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from orchestrator.llm.scripted import ScriptedClient
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from orchestrator.tools.registry import ToolRegistry
from workflows.drqa.sim import make_rows, sim_client

# Mostly easy questions and a few hard ones: where difficulty-aware allocation should pay.
STEPS = [1, 1, 2, 1, 12, 1, 2, 14, 1, 1, 2, 10]


def _run(tmp_path: Path, method: str, budget: int | None, **options: Any) -> tuple[dict[str, Any], ScriptedClient]:
    sim = sim_client()

    async def go() -> dict[str, Any]:
        rt = Runtime(Settings(db_url=f"sqlite:///{tmp_path / f'{method}-{budget}.db'}", home=tmp_path),
                     clients={"sim": sim}, tools=ToolRegistry())
        try:
            res = await rt.run("drqa", {"rows": make_rows(STEPS), "dataset": "gsm8k"}, backend="sim",
                               options={"method": method, "total_budget": budget, "batch_size": 4,
                                        "floor_tokens": 16, "ceiling_tokens": 600, "difficulty_signal": "mixed",
                                        **options})
        finally:
            await rt.aclose()
        assert res.status == "succeeded", res.error
        assert res.result is not None
        return res.result

    return asyncio.run(go()), sim


def _recorded_output_tokens(db: Path) -> int:
    """Output tokens of every LLM call the runtime recorded in ``db``."""
    with closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT COALESCE(SUM(output_tokens), 0) FROM llm_calls").fetchone()[0])


def test_spending_never_exceeds_the_total_budget(tmp_path: Path) -> None:
    for method in ("drqa", "uniform"):
        for budget in (150, 400, 900):
            result, sim = _run(tmp_path, method, budget)
            recorded = _recorded_output_tokens(tmp_path / f"{method}-{budget}.db")
            assert recorded == result["reasoning_tokens"] <= budget, (method, budget)
            assert all(r.sampling.max_tokens <= budget for r in sim.requests)


def test_drqa_beats_uniform_at_equal_budget_and_spends_less_than_unlimited(tmp_path: Path) -> None:
    # Forced answers off: the simulated model's forced guesses would blur the allocation effect
    # (test_drqa_force_answer covers them).
    unlimited, _ = _run(tmp_path, "unlimited", None, unlimited_max_tokens=600, force_answer=False)
    assert unlimited["accuracy"] == 1.0
    budget = int(unlimited["reasoning_tokens"] * 0.75)
    drqa, sim = _run(tmp_path, "drqa", budget, force_answer=False)
    uniform, _ = _run(tmp_path, "uniform", budget, force_answer=False)
    assert drqa["reasoning_tokens"] <= budget < unlimited["reasoning_tokens"]
    assert drqa["accuracy"] > uniform["accuracy"]
    assert drqa["accuracy"] >= unlimited["accuracy"]
    # Probe prompts carry k questions each; the stated budget appears in solve prompts.
    probes = [r for r in sim.requests if "[Q1]" in r.messages[-1].content]
    assert len(probes) == 3
    assert any("words at most" in r.messages[-1].content for r in sim.requests)
    assert set(drqa["tokens_by_purpose"]) >= {"probe", "quick", "solve"}


def test_reallocation_continues_truncated_solutions(tmp_path: Path) -> None:
    # accept_resolved off and a tight ceiling: hard questions get cut, then continued.
    result, sim = _run(tmp_path, "drqa", 1500, ceiling_tokens=60, realloc_ceiling_tokens=200, force_answer=False)
    sources = {it["source"] for it in result["items"]}
    assert "continuation" in sources
    continued = [r for r in sim.requests if len(r.messages) == 4 and r.messages[2].role == "assistant"]
    assert continued and all(r.sampling.max_tokens <= 200 for r in continued)
    assert result["accuracy"] == 1.0
    assert result["reasoning_tokens"] <= 1500


def test_uniform_and_unlimited_skip_probe_and_reallocation(tmp_path: Path) -> None:
    result, sim = _run(tmp_path, "uniform", 240, force_answer=False)
    assert all("[Q1]" not in r.messages[-1].content for r in sim.requests)
    assert len(sim.requests) == len(STEPS)
    assert all(r.sampling.max_tokens == 20 for r in sim.requests)
    result, sim = _run(tmp_path, "unlimited", None, unlimited_max_tokens=600)
    assert all("words at most" not in r.messages[-1].content for r in sim.requests)
    assert result["accuracy"] == 1.0


def test_missing_budget_is_a_bad_input(tmp_path: Path) -> None:
    sim = sim_client()

    async def go() -> Any:
        rt = Runtime(Settings(db_url=f"sqlite:///{tmp_path / 'x.db'}", home=tmp_path),
                     clients={"sim": sim}, tools=ToolRegistry())
        try:
            return await rt.run("drqa", {"rows": make_rows([1])}, backend="sim", options={"method": "uniform"})
        finally:
            await rt.aclose()

    res = asyncio.run(go())
    assert res.status == "failed" and "total_budget" in (res.error or "")


@pytest.mark.parametrize("rows, said", [
    ([{"question": 5, "answer": "2"}], '"question": a non-empty string'),
    ([{"question": "  ", "answer": "2"}], '"question": a non-empty string'),
    ([{"question": "1 + 1?", "answer": [2]}], '"answer": a string, a number or null'),
    ([{"question": "1 + 1?", "answer": True}], '"answer": a string, a number or null'),
    ([{"question": "1 + 1?", "answer": "2", "id": {"a": 1}}], '"id": a string, a number or null'),
    ([{"question": "1 + 1?", "answer": "2"}, ["not", "a", "row"]], "an object with a"),
])
def test_a_task_with_an_unreadable_row_is_refused_before_the_run_is_stored(tmp_path: Path, rows: list[Any],
                                                                         said: str) -> None:
    # The budget is split over the rows: a row that cannot be asked or scored is an error, not a
    # question "5" or a gold answer "None", and no run is left behind to resume.
    from sqlalchemy import func, select

    from orchestrator.errors import BadInputError
    from orchestrator.store.models import RunRow

    async def go() -> int:
        rt = Runtime(Settings(db_url=f"sqlite:///{tmp_path / 'x.db'}", home=tmp_path),
                     clients={"sim": sim_client()}, tools=ToolRegistry())
        try:
            with pytest.raises(BadInputError, match="drqa task") as refused:
                await rt.run("drqa", {"rows": rows, "dataset": "gsm8k"}, backend="sim",
                             options={"method": "uniform", "total_budget": 100})
            assert said in str(refused.value)
            async with rt.store.session() as session:
                return (await session.execute(select(func.count()).select_from(RunRow))).scalar_one()
        finally:
            await rt.aclose()

    assert asyncio.run(go()) == 0


def test_a_null_answer_is_no_answer() -> None:
    from workflows.drqa.datasets import get_spec

    assert get_spec("gsm8k").item({"question": "1 + 1?", "answer": None}).gold == ""
    assert get_spec("gsm8k").item({"question": "1 + 1?", "answer": 2}).gold == "2"


@pytest.mark.parametrize("dataset,row,pred,ok", [
    ("gsm8k", {"question": "q", "answer": "65,960"}, "65960", True),
    ("gsm8k", {"question": "q", "answer": "steps\n#### 18"}, "18 dollars", True),
    ("gsm8k", {"question": "q", "answer": "18"}, "17", False),
    ("math", {"problem": "p", "solution": "so $\\boxed{\\frac{3}{4}}$"}, "0.75", True),
    ("math", {"problem": "p", "solution": "\\boxed{\\sqrt{2}}"}, "\\sqrt{2}", True),
    ("math", {"problem": "p", "solution": "\\boxed{(1,2)}"}, "(1, 2)", True),
    ("math", {"problem": "p", "solution": "\\boxed{5}"}, None, False),
])
def test_scoring(dataset: str, row: dict[str, str], pred: str | None, ok: bool) -> None:
    from workflows.drqa.datasets import get_spec

    spec = get_spec(dataset)
    assert spec.is_correct(pred, spec.item(row).gold) is ok


def test_real_data_files_load() -> None:
    from workflows.drqa.datasets import load_items, split_items

    gsm = load_items("/work/shared/data/gsm8k")
    math = load_items("/work/shared/data/math/validate.jsonl")
    assert len(gsm) == 264 and gsm[0].gold == "36"
    assert len(math) == 119 and math[0].gold == "135"
    train, held = split_items(gsm, 0.4)
    assert len(train) + len(held) == 264 and 70 < len(held) < 140
    assert split_items(gsm, 0.4) == (train, held)


def test_direct_context_runs_the_same_stages_as_the_runtime(tmp_path: Path) -> None:
    from orchestrator.direct import DirectContext
    from workflows.drqa.graph import NODE_ORDER, initial_state, result, run_nodes

    via_runtime, _ = _run(tmp_path, "drqa", 1100)
    sim = sim_client()
    ctx = DirectContext(sim, config={"method": "drqa", "total_budget": 1100, "batch_size": 4,
                                     "floor_tokens": 16, "ceiling_tokens": 600, "difficulty_signal": "mixed"})
    state = asyncio.run(run_nodes(ctx, initial_state({"rows": make_rows(STEPS), "dataset": "gsm8k"})))
    direct = result(state)
    assert direct["accuracy"] == via_runtime["accuracy"]
    assert direct["reasoning_tokens"] == via_runtime["reasoning_tokens"] == ctx.usage.output_tokens <= 1100
    names = [name for name, _ in ctx.steps]
    assert [n for k, n in enumerate(names) if k == 0 or names[k - 1] != n] == list(NODE_ORDER)
    waves = [data["wave"] for name, data in ctx.steps if name == "solve"]
    assert waves == list(range(len(waves))) and len(waves) >= 2


def test_easiest_first_funds_the_easiest_questions_in_waves(tmp_path: Path) -> None:
    # 12 questions need 30-420 tokens each (1,620 in all); of 1,200 the probe takes up to 360.
    result, _ = _run(tmp_path, "drqa", 1200, ceiling_tokens=450, force_answer=False)
    assert result["reasoning_tokens"] <= 1200
    steps = dict(zip((row["id"] for row in make_rows(STEPS)), STEPS, strict=True))
    solved = sorted((it["difficulty"], it["wave"], steps[it["id"]]) for it in result["items"] if it["wave"] is not None)
    waves = [w for _, w, _ in solved]
    assert waves == sorted(waves) and waves[-1] >= 2  # easier questions never wait for harder ones
    # The hard questions (10-14 steps) are the last funded.
    assert {s for _, w, s in solved if w == waves[-1]} <= {10, 12, 14}
    # With less, the hardest go unfunded and every easy one (1-2 steps) is still solved right.
    tight, _ = _run(tmp_path / "t", "drqa", 1000, ceiling_tokens=450, floor_tokens=100, force_answer=False)
    unfunded = {steps[it["id"]] for it in tight["items"] if it["wave"] is None}
    assert unfunded and unfunded <= {10, 12, 14}
    assert all(it["correct"] and it["source"] == "solve" for it in tight["items"] if steps[it["id"]] <= 2)


def test_brief_style_shows_worked_examples_in_the_datasets_answer_format(tmp_path: Path) -> None:
    from workflows.drqa.prompts import BRIEF_EXAMPLES, BRIEF_SYSTEM

    _, sim = _run(tmp_path, "uniform", 900, solve_style="brief")
    solves = [r for r in sim.requests if r.messages[0].content == BRIEF_SYSTEM]
    assert solves, "no solve used the brief style"
    for r in solves:
        roles = [m.role for m in r.messages]
        assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
        assert r.messages[1].content.startswith(BRIEF_EXAMPLES[0][0])
        assert r.messages[2].content.endswith("#### 18") and r.messages[4].content.endswith("#### 75")
        assert "words at most" in r.messages[-1].content and "[steps=" in r.messages[-1].content
    # The unlimited baseline stays plain whatever the style option says.
    _, sim = _run(tmp_path / "u", "unlimited", None, solve_style="brief")
    assert all(r.messages[0].content != BRIEF_SYSTEM for r in sim.requests)


@pytest.mark.parametrize("options", [
    {"strategy": "biggest"}, {"solve_style": "terse"}, {"weight_prior": 2}, {"temperature": -1},
    {"max_concurrency": 0}, {"batch_size": 0}, {"quick_max_tokens": -1}, {"max_probe_fraction": 1.5},
    {"unlimited_max_tokens": 0}, {"length_scale_tokens": 0}, {"resolve_confidence": 2},
])
def test_bad_quota_options_are_bad_input(options: dict[str, Any]) -> None:
    from orchestrator.errors import BadInputError
    from workflows.drqa.config import run_config_from

    with pytest.raises(BadInputError, match="expected valid"):
        run_config_from({"method": "drqa", "total_budget": 100, **options})


def test_string_options_are_read_as_their_types() -> None:
    from workflows.drqa.config import run_config_from

    cfg = run_config_from({"method": "drqa", "total_budget": "900", "max_probe_fraction": "0", "force_answer": "false",
                           "batch_size": "3", "weight_prior": "0.25", "strategy": "proportional"})
    assert cfg.total_budget == 900 and cfg.quota.max_probe_fraction == 0.0 and cfg.quota.force_answer is False
    assert cfg.quota.batch_size == 3 and cfg.quota.difficulty.weight_prior == 0.25
    assert cfg.quota.strategy == "proportional"


@pytest.mark.parametrize("options", [{"max_probe_fraction": "lots"}, {"force_answer": "maybe"}])
def test_unreadable_option_values_are_bad_input(options: dict[str, Any]) -> None:
    from orchestrator.errors import BadInputError
    from workflows.drqa.config import run_config_from

    with pytest.raises(BadInputError):
        run_config_from({"method": "drqa", "total_budget": 100, **options})


def test_only_binding_quotas_are_stated(tmp_path: Path) -> None:
    # easiest_first gives whole quotas (the 450 ceiling) and at most one partial quota per wave.
    result, sim = _run(tmp_path, "drqa", 1200, ceiling_tokens=450, force_answer=False)
    solves = [r for r in sim.requests if "[Q1]" not in r.messages[-1].content and "[steps=" in r.messages[-1].content
              and len(r.messages) == 2]
    whole = [r for r in solves if r.sampling.max_tokens == 450]
    partial = [r for r in solves if r.sampling.max_tokens < 450]
    assert whole and all("words at most" not in r.messages[-1].content for r in whole)
    assert all("words at most" in r.messages[-1].content for r in partial)
    assert result["reasoning_tokens"] <= 1200


def test_variant_option_values_are_read_as_json() -> None:
    from bench.drqa.run import parse_variants

    assert parse_variants("drqa:max_probe_fraction=0,strategy=proportional;uniform:state_budget=false") == [
        ("drqa:max_probe_fraction=0,strategy=proportional", "drqa",
         {"max_probe_fraction": 0, "strategy": "proportional"}),
        ("uniform:state_budget=false", "uniform", {"state_budget": False}),
    ]


def test_the_rows_not_the_path_name_say_which_dataset_a_file_is(tmp_path: Path) -> None:
    # A held-out file's path need not name its dataset, and may name another.
    import json

    from workflows.drqa.datasets import detect_dataset, load_items
    from workflows.drqa.training.pipeline import _split_all

    gsm = tmp_path / "mathieu" / "test.jsonl"
    gsm.parent.mkdir()
    gsm.write_text(json.dumps({"question": "1 + 1?", "answer": "#### 2", "id": "a"}) + "\n")
    maths = tmp_path / "gsm8k-like" / "held.jsonl"
    maths.parent.mkdir()
    maths.write_text(json.dumps({"problem": "x?", "solution": "\\boxed{3}"}) + "\n")
    assert detect_dataset([{"question": "q"}], gsm) == "gsm8k"
    assert detect_dataset([{"problem": "p"}], maths) == "math"
    assert detect_dataset([], tmp_path / "math" / "x.jsonl") == "gsm8k"  # only the file's name counts
    assert detect_dataset([], tmp_path / "math_test.jsonl") == "math"
    assert load_items(gsm)[0].gold == "2" and load_items(maths)[0].gold == "3"
    assert set(_split_all([str(gsm), str(maths)], 0.5)) == {"gsm8k", "math"}


def test_a_line_that_is_not_json_is_named(tmp_path: Path) -> None:
    from orchestrator.errors import BadInputError
    from workflows.drqa.datasets import load_items

    path = tmp_path / "g.jsonl"
    path.write_text('{"question": "1 + 1?", "answer": "2"}\n{oops\n')
    with pytest.raises(BadInputError, match=r"g\.jsonl:2"):
        load_items(path)


def test_a_row_that_is_no_item_a_missing_file_and_non_utf8_are_named(tmp_path: Path) -> None:
    from orchestrator.errors import BadInputError
    from workflows.drqa.datasets import load_items

    path = tmp_path / "g.jsonl"
    path.write_text('{"question": "1 + 1?", "answer": "2"}\n\n{"question": ["a list"], "answer": "3"}\n')
    with pytest.raises(BadInputError, match=r"g\.jsonl:3: gsm8k row"):
        load_items(path)
    with pytest.raises(BadInputError, match="no such file"):
        load_items(tmp_path / "missing.jsonl")
    raw = tmp_path / "latin1.jsonl"
    raw.write_bytes('{"question": "caf\u00e9?", "answer": "1"}\n'.encode("latin-1"))
    with pytest.raises(BadInputError, match="UTF-8"):
        load_items(raw)
