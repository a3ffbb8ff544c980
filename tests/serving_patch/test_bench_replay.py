"""The serving benchmark's CPU parts: trace parsing, the fitted generator, the plan, the summary."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from bench.serving import replay
from bench.serving.workload import (
    ServiceModel,
    fit_workload,
    kv_capacity_bound,
    load_swe,
    load_tracelab,
    poisson_arrivals,
    synthesize,
)
from tests import extras

ROOT = Path(__file__).resolve().parents[2]


def test_tracelab_programs_rebuild_the_recorded_contexts() -> None:
    programs = load_tracelab()
    assert len(programs) == 48
    first = programs[0]  # session 0: 2318+200, then prefix 2518 (+348 +131) = 2997
    assert [t.num_new_tokens for t in first.turns[:2]] == [2318, 348]
    assert first.turns[0].num_new_tokens + first.turns[0].num_output_tokens == 2518
    assert first.turns[0].tool_s == pytest.approx(0.3) and first.turns[-1].tool_s == 0.0


def test_swe_trajectories_are_tokenized_with_tool_times() -> None:
    programs = load_swe(max_context=10**9)
    assert len(programs) == 5
    assert all(20 <= len(p.turns) <= 33 for p in programs)
    tools = {t.tool_name for p in programs for t in p.turns}
    assert {"bash", "str_replace_editor"} <= tools
    assert sum(t.tool_s for p in programs for t in p.turns) > 1.0


def test_generator_follows_the_fit_and_has_a_heavy_tail() -> None:
    real = load_tracelab() + load_swe()
    fit = fit_workload(real)
    synthetic = synthesize(fit, 400, seed=1, max_context=10**9, max_tool_s=1e9)
    assert {len(p.turns) for p in synthetic} <= set(fit.num_turns)
    outputs = sorted(t.num_output_tokens for p in synthetic for t in p.turns)
    real_outputs = sorted(t.num_output_tokens for p in real for t in p.turns)
    assert 0.5 < outputs[len(outputs) // 2] / real_outputs[len(real_outputs) // 2] < 2.0
    tools = sorted(t.tool_s for p in synthetic for t in p.turns[:-1])
    assert tools[-1] > 20 * tools[len(tools) // 2]  # heavy tail
    assert synthesize(fit, 5, seed=1) == synthesize(fit, 5, seed=1)


def test_poisson_arrivals_match_the_rate() -> None:
    arrivals = poisson_arrivals(2000, 120.0, seed=3)
    assert arrivals == sorted(arrivals)
    assert arrivals[-1] / 2000 == pytest.approx(0.5, rel=0.1)


def test_plan_is_deterministic_and_loads_increase() -> None:
    args = replay.parse_args(["--loads", "90,30"])
    _, levels = replay.make_plan(args)
    _, again = replay.make_plan(args)
    assert [lv.programs_per_min for lv in levels] == [30.0, 90.0]
    assert [len(lv.programs) for lv in levels] == [6, 18]
    assert levels[1].arrivals_s == again[1].arrivals_s
    program = levels[0].programs[0]
    assert replay.prompt_tokens(program, 0, 1, 5) == replay.prompt_tokens(program, 0, 1, 5)
    # A program drawn twice into one level gets other tokens the second time (no shared prefix).
    assert replay.prompt_tokens(program, 0, 0, 5, instance=0) != replay.prompt_tokens(program, 0, 0, 5, instance=101)
    assert all(t.num_output_tokens >= 1 and t.tool_s <= 5.0 for lv in levels for p in lv.programs for t in p.turns)


def test_summary_has_the_checked_shape(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason=extras.BENCH)
    args = replay.parse_args(["--loads", "30,90"])
    _, levels = replay.make_plan(args)

    def fake_child(scale: float) -> dict:
        return {
            "gpu": "NVIDIA H200",
            "levels": [
                {
                    "programs": [
                        {"jct_s": scale * (i + 1), "done": True, "finish_s": 10.0 + i, "arrival_s": float(i),
                         "prompt_tokens": 100, "cached_tokens": 50}
                        for i in range(len(lv.programs))
                    ],
                    "vllm_prefix_queries": 100.0,
                    "vllm_prefix_hits": 25.0,
                    "preemptions": 3,
                }
                for lv in levels
            ],
        }

    children = {"stock": fake_child(2.0), "fixed_ttl": fake_child(1.0), "utility_ttl": fake_child(1.0)}
    summary = replay.build_summary(children, levels, ServiceModel(0.01, 1e-4, 0.02))
    assert set(summary) == {"commit", "machine", "date", "model", "trace", "loads", "highest_load_stock_sustains",
                            "sustained_rule", "goodput", "levels_run", "partial"}
    assert summary["levels_run"]["stock"] == [0, 1] and summary["partial"] is False
    assert "H200" in summary["machine"]
    keys = {"mean_jct_s", "p50_jct_s", "p95_jct_s", "throughput_programs_per_min", "prefix_hit_rate", "preemptions"}
    for entry in summary["loads"]:
        for config in ("stock", "fixed_ttl", "utility_ttl"):
            assert keys <= set(entry[config])
        assert entry["lower_bound_mean_jct_s"] > 0
    first = summary["loads"][0]
    assert first["stock"]["mean_jct_s"] == pytest.approx(2 * first["fixed_ttl"]["mean_jct_s"])
    assert first["stock"]["prefix_hit_rate"] == 0.25 and first["stock"]["preemptions"] == 3
    assert [e["programs_per_min"] for e in summary["loads"]] == [30.0, 90.0]
    assert first["fixed_ttl_speedup_mean"] == pytest.approx(2.0)
    # JCT grows with every arrival here (a queue that builds up): stock sustains no load.
    assert first["stock"]["jct_trend"] > replay.SUSTAINED_TREND_MAX and not first["stock_sustained"]
    assert summary["highest_load_stock_sustains"] is None
    steady = fake_child(2.0)
    for level in steady["levels"]:
        for p in level["programs"]:
            p["jct_s"] = 2.0
    # One program cut at 90/min after running far past twice its lower bound: not sustained.
    service = ServiceModel(0.01, 1e-4, 0.02)
    overdue = 2.0 * replay.OVERDUE_STRETCH * max(service.lower_bound_s(p) for level in levels for p in level.programs)
    steady["levels"][1]["programs"][0].update(done=False, jct_s=overdue)
    summary = replay.build_summary({**children, "stock": steady}, levels, service)
    assert [e["stock_sustained"] for e in summary["loads"]] == [True, False]
    assert summary["loads"][1]["stock"]["num_overdue"] == 1
    assert summary["highest_load_stock_sustains"] == 30.0
    json.dumps(summary)
    replay.plot(summary, tmp_path / "jct.png")
    assert (tmp_path / "jct.png").read_bytes()[:4] == b"\x89PNG"


def test_dry_run_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.serving.replay", "--dry-run", "--loads", "30,60"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )
    report = json.loads(done.stdout)
    assert report["sources"] == ["continuum_swe", "synthetic", "tracelab"]
    assert [lv["programs_per_min"] for lv in report["levels"]] == [30.0, 60.0]


class _FakeOutput:
    def __init__(self, n: int, cached: int) -> None:
        self.outputs = [type("C", (), {"token_ids": list(range(7, 7 + n))})()]
        self.num_cached_tokens = cached


class _FakeEngine:
    """Stands in for AsyncLLM: a prefix cache of previous prompts, instant generation."""

    def __init__(self) -> None:
        self.prompts: list[list[int]] = []
        self.requests: list[tuple[str, dict | None]] = []
        self.resets = 0

    async def generate(self, prompt, params, request_id):  # type: ignore[no-untyped-def]
        import asyncio

        tokens = list(prompt["prompt_token_ids"])
        cached = max((self._common(tokens, p) for p in self.prompts), default=0)
        self.prompts.append(tokens + list(range(7, 7 + params.max_tokens)))
        self.requests.append((request_id, params.extra_args))
        await asyncio.sleep(0)
        yield _FakeOutput(params.max_tokens, cached // 16 * 16)

    @staticmethod
    def _common(a: list[int], b: list[int]) -> int:
        n = 0
        for x, y in zip(a, b, strict=False):  # a common prefix: lengths differ
            if x != y:
                break
            n += 1
        return n

    async def reset_prefix_cache(self) -> bool:
        self.resets += 1
        return True


def test_replay_loop_against_a_fake_engine() -> None:
    import asyncio

    pytest.importorskip("vllm", reason=extras.SERVE)
    args = replay.parse_args(
        ["--loads", "600,1200", "--window-s", "0.5", "--drain-s", "3", "--tool-scale", "0.001", "--max-turns", "3"]
    )
    _, levels = replay.make_plan(args)
    engine = _FakeEngine()
    saved: list[dict] = []
    result = asyncio.run(replay._replay(args, engine, levels, "", [0, 1], lambda partial: saved.append(partial)))
    assert engine.resets == 2 and len(result["levels"]) == 2
    # Each finished level is handed out at once, the first before the second runs.
    assert [[lv["level_index"] for lv in s["levels"]] for s in saved] == [[0], [0, 1]]
    assert [lv["level_index"] for lv in result["levels"]] == [0, 1]
    service = result["service"]
    assert service["prefill_b_s_per_token"] > 0 and service["tpot_s"] > 0
    for level, plan in zip(result["levels"], levels, strict=True):
        programs = level["programs"]
        assert len(programs) == len(plan.programs) and all(p["done"] for p in programs)
        assert sum(p["turns"] for p in programs) == sum(len(p.turns) for p in plan.programs)
        # Every later turn re-sends the previous context: the fake cache hits it.
        assert sum(p["cached_tokens"] for p in programs) > 0
    hinted = [x for _, x in engine.requests if x]
    assert all("program_id" in x and x["is_last_step"] in (0, 1) for x in hinted)
    assert sum(x["is_last_step"] for x in hinted) == sum(len(lv.programs) for lv in levels)
    summary = replay.build_summary(
        {"stock": {"gpu": "cpu-fake", **result}}, levels, replay.ServiceModel(**service), commit="abc"
    )
    assert summary["commit"] == "abc" and summary["loads"][0]["stock"]["num_incomplete"] == 0


def test_vendored_traces_match_the_shared_sources() -> None:
    from bench.serving import workload

    if not (workload.SWE_JSON.exists() and workload.TRACELAB_CSV.exists()):
        pytest.skip("../shared/data/traces not present")
    assert workload.load_tracelab(workload.VENDORED_TRACELAB_CSV) == workload.load_tracelab(workload.TRACELAB_CSV)
    for cap in (10**9, 12288):
        from_json = workload.load_swe(workload.SWE_JSON, max_context=cap)
        assert workload.load_swe_turns(workload.VENDORED_SWE_TURNS_CSV, max_context=cap) == from_json


def test_smoke_server_metric_parser_sums_label_sets() -> None:
    from bench.serving.smoke_server import _metric

    text = (
        "quotaflow_continuum_pins_created_total 2.0\n"
        "quotaflow_continuum_pins_created_created 1.7e9\n"
        'vllm:prefix_cache_hits_total{engine="0"} 5.0\n'
        'vllm:prefix_cache_hits_total{engine="1"} 1.0\n'
    )
    assert _metric(text, "quotaflow_continuum_pins_created_total") == 2.0
    assert _metric(text, "vllm:prefix_cache_hits_total") == 6.0
    assert _metric(text, "quotaflow_continuum_pins_active") == 0.0


def test_every_config_gets_the_same_drain_and_the_fastest_calibration_bounds_service() -> None:
    from bench.serving.replay import ENGINE_START_S, fastest_service, fixed_drain_s
    from bench.serving.workload import ServiceModel

    # 440 s for 3 configs x 3 levels: (146.7 - 60) / 3 - 12 - 2 = 14.9 s, under the 25 s cap.
    assert fixed_drain_s(440, 3, 3, 12.0, 25.0) == pytest.approx((440 / 3 - ENGINE_START_S) / 3 - 14.0)
    assert fixed_drain_s(10_000, 3, 3, 12.0, 25.0) == 25.0  # capped
    assert fixed_drain_s(100, 3, 3, 12.0, 25.0) == 2.0  # floor
    cold = ServiceModel(0.02, 6e-5, 0.038)
    warm = ServiceModel(0.03, 5e-5, 0.013)
    assert fastest_service(cold, warm) == ServiceModel(0.02, 5e-5, 0.013)


def test_merge_joins_runs_of_the_same_plan_that_ran_different_configs(tmp_path: Path) -> None:
    """A 2-GPU machine runs stock and fixed TTL side by side, then the utility TTL: one summary."""
    flags = ["--loads", "30,90", "--commit", "abc"]
    _, levels = replay.make_plan(replay.parse_args(flags))

    def child(jct: float, tpot: float) -> dict:
        return {"gpu": "NVIDIA H200", "service": {"prefill_a_s": 0.01, "prefill_b_s_per_token": 1e-4, "tpot_s": tpot},
                "levels": [{"programs": [{"program_id": f"L0-{i}-p", "jct_s": jct, "done": True, "finish_s": 10.0 + i,
                                          "arrival_s": float(i), "prompt_tokens": 100, "cached_tokens": 50}
                                         for i in range(len(lv.programs))],
                            "vllm_prefix_queries": 100.0, "vllm_prefix_hits": 25.0, "preemptions": 0}
                           for lv in levels]}

    first = replay.parse_args([*flags, "--out-dir", str(tmp_path / "a")])
    replay.write_results(first, {"stock": child(3.0, 0.02), "fixed_ttl": child(2.0, 0.03)}, levels, 0.0)
    second = replay.parse_args([*flags, "--out-dir", str(tmp_path / "b")])
    replay.write_results(second, {"utility_ttl": child(1.5, 0.01)}, levels, 0.0)
    raws = [next((tmp_path / d).glob("replay_*.json")) for d in ("a", "b")]

    replay.main([*flags, "--out-dir", str(tmp_path / "m"), "--merge", *map(str, raws)])
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert summary["merged_from"] == [r.name for r in raws] and summary["commit"] == "abc"
    entry = summary["loads"][0]
    assert (entry["stock"]["mean_jct_s"], entry["fixed_ttl"]["mean_jct_s"], entry["utility_ttl"]["mean_jct_s"]) == (
        3.0, 2.0, 1.5)
    assert entry["utility_ttl_speedup_mean"] == pytest.approx(2.0)
    # Paired per program against stock; utility TTL ran in another run (machine), fixed TTL beside stock.
    assert entry["fixed_ttl"]["median_jct_ratio_vs_stock"] == pytest.approx(2.0 / 3.0, abs=1e-4)
    assert entry["utility_ttl"]["median_jct_ratio_vs_stock"] == pytest.approx(0.5)
    assert summary["configs_run_apart_from_stock"] == ["utility_ttl"]
    # The lower bound uses the fastest calibration of all the merged runs (tpot 0.01).
    alone = json.loads((tmp_path / "a" / "summary.json").read_text())["loads"][0]["lower_bound_mean_jct_s"]
    assert entry["lower_bound_mean_jct_s"] < alone
    with pytest.raises(SystemExit, match="window-s"):
        replay.main([*flags, "--window-s", "20", "--out-dir", str(tmp_path / "x"), "--merge", *map(str, raws)])
    with pytest.raises(SystemExit, match="more than one run"):
        replay.main([*flags, "--out-dir", str(tmp_path / "x"), "--merge", str(raws[0]), str(raws[0])])


def test_window_arrivals_offer_the_nominal_rate_within_the_window() -> None:
    from bench.serving.workload import window_arrivals

    for seed in range(5):
        arrivals = window_arrivals(105, 45.0, seed=seed)
        assert arrivals == sorted(arrivals) and arrivals[0] >= 0.0 and arrivals[-1] < 45.0
        assert 140.0 <= replay.realized_rate(arrivals) <= 150.0  # 105 in 45 s: 140/min, up to the last arrival
    args = replay.parse_args(["--loads", "120,150", "--window-s", "45"])
    assert args.arrivals == "window"
    _, levels = replay.make_plan(args)
    assert all(abs(60 * len(lv.arrivals_s) / 45.0 - lv.programs_per_min) <= 1 for lv in levels)
    assert all(lv.arrivals_s[-1] < 45.0 for lv in levels)
    # The old unconditioned draw stays available (and is what older runs are merged with).
    _, old = replay.make_plan(replay.parse_args(["--loads", "120,150", "--window-s", "45", "--arrivals", "poisson"]))
    assert old[0].arrivals_s != levels[0].arrivals_s


def test_swe_trace_keeps_only_the_swe_programs_and_their_fit() -> None:
    args = replay.parse_args(["--trace", "swe", "--loads", "30", "--max-turns", "40", "--max-context", "32768"])
    pool, _ = replay.make_plan(args)
    assert {p.source for p in pool} == {"continuum_swe", "synthetic"}
    mixed, _ = replay.make_plan(replay.parse_args(["--loads", "30", "--max-turns", "40", "--max-context", "32768"]))
    assert "tracelab" in {p.source for p in mixed}
    # SWE programs are the long ones: more turns per program than the mixed pool.
    assert sum(len(p.turns) for p in pool) / len(pool) > sum(len(p.turns) for p in mixed) / len(mixed)
    with pytest.raises(ValueError, match="unknown trace"):
        from bench.serving.workload import build_pool

        build_pool(seed=0, max_context=4096, num_synthetic=2, trace="bfcl")


def _level(rate: float, *, done: int, total: int, jct: float, trend_up: bool = False) -> dict:
    programs = []
    for i in range(total):
        grow = (1 + i) if trend_up else 1
        programs.append({"arrival_s": float(i), "jct_s": jct * grow, "done": i < done})
    return {"programs_per_min": rate, "programs": programs}


def test_goodput_block_reports_sustained_rates_and_completions_at_stock_multiples() -> None:
    loads = []
    for rate, stock, plugin in (
        (10.0, (10, 10, 50.0, False), (10, 10, 49.0, False)),
        (15.0, (8, 15, 80.0, True), (15, 15, 52.0, False)),
        (20.0, (6, 20, 90.0, True), (18, 20, 70.0, False)),
    ):
        entry: dict = {"programs_per_min": rate}
        for config, (done, total, jct, up) in (("stock", stock), ("admission", plugin)):
            level = _level(rate, done=done, total=total, jct=jct, trend_up=up)
            entry[config] = {
                "num_incomplete": total - done,
                "jct_trend": replay.jct_trend(level["programs"]),
                "mean_jct_s": jct,
                "completed_per_min": replay.completed_per_min(level["programs"], 60.0),
            }
        loads.append(entry)
    block = replay.goodput(loads, ["stock", "admission"])
    assert block["stock_sustained_programs_per_min"] == 10.0
    assert block["highest_sustained_programs_per_min"] == {"stock": 10.0, "admission": 15.0}
    at = block["completed_per_min_at_stock_multiple"]["admission"]
    assert set(at) == {"1x", "1.5x", "2x"} and at["2x"] == pytest.approx(60 * 18 / (19 + 60), abs=1e-3)
    checks = block["must_show"]["admission"]
    assert checks["sustains_1.5x_stock"] is True
    # The yardstick: at 2x (20/min) 18 of 20 done in 79 s against 15 of 15 in 74 s at the
    # plugin's own highest sustained load (15/min).
    assert block["completed_per_min_at_highest_sustained"]["admission"] == pytest.approx(60 * 15 / 74, abs=1e-3)
    assert checks["at_2x_keeps_80pct_of_sustained_completions"] is True
    assert checks["jct_within_5pct_up_to_stock_rate"] is True  # 49 s vs 50 s at 10/min
    assert replay.goodput([], ["stock"])["stock_sustained_programs_per_min"] is None


def test_paper_scenario_is_paper_scale_and_keeps_trajectory_tool_waits() -> None:
    args = replay.parse_args(["--scenario", "paper", "--loads", "6", "--window-s", "60"])
    pool, levels = replay.make_plan(args)
    assert len(pool) == 64 and len(levels[0].programs) == 6
    for program in pool:
        assert 20 <= len(program.turns) <= 50
        assert 14_000 <= program.num_context_tokens <= 61_000
        assert program.turns[-1].tool_s == 0.0
    assert replay.engine_max_len(args) >= max(p.num_context_tokens for p in pool)
    # Output lengths and tool waits are the trajectories' own (no 0.15 scale, no 5 s cap).
    swe = {t.num_output_tokens for p in replay.load_swe(max_context=10**9) for t in p.turns}
    assert {t.num_output_tokens for p in pool for t in p.turns} <= swe
    bursty = replay.parse_args(["--loads", "6"])
    assert replay.engine_max_len(bursty) == bursty.max_context + 512


def test_offload_configs_get_a_fresh_engine_per_level(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # vLLM 0.26.0's CPU offloading can kill the engine core (vllm#52170): one child per level.
    args = replay.parse_args(["--loads", "12,24", "--scenario", "paper", "--out-dir", str(tmp_path)])
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: object) -> None:
        calls.append(cmd)
        out = Path(cmd[cmd.index("--child-out") + 1])
        indices = [int(i) for i in cmd[cmd.index("--child-levels") + 1].split(",")]
        levels = [{"programs_per_min": [12, 24][i]} for i in indices]
        out.write_text(json.dumps({"service": {"a": 1}, "levels": levels, "engine_startup_s": 50.0}))

    monkeypatch.setattr(replay.subprocess, "run", fake_run)
    merged = replay._run_config(args, [], "admission_offload", 180.0, 0.0, {}, [0, 1])
    assert [c[c.index("--child-levels") + 1] for c in calls] == ["0", "1"]
    assert [lv["programs_per_min"] for lv in merged["levels"]] == [12, 24]
    assert merged["engine_startup_s"] == 100.0 and merged["engine_per_level"] is True
    calls.clear()
    plain = replay._run_config(args, [], "admission", 180.0, 0.0, {}, [0, 1])
    assert len(calls) == 1 and calls[0][calls[0].index("--child-levels") + 1] == "0,1" and len(plain["levels"]) == 2
    # Each child's file is in the out dir (a lost machine's collect brings it back).
    assert {p.name for p in (tmp_path / "children").iterdir()} == {"admission_offload-L0.json",
                                                                  "admission_offload-L1.json", "admission.json"}
    # Two engine starts per config leave less drain in the same budget.
    assert replay.fixed_drain_s(1240, 1, 2, 90, 900, engine_starts=2) < replay.fixed_drain_s(1240, 1, 2, 90, 900)


def _child_levels(levels: list, indices: list[int], jct: float) -> list[dict]:
    return [{"level_index": i, "programs_per_min": levels[i].programs_per_min, "drain_cap_s": 30.0,
             "programs": [{"jct_s": jct + i, "done": True, "finish_s": 10.0 + k, "arrival_s": float(k),
                           "prompt_tokens": 100, "cached_tokens": 50} for k in range(len(levels[i].programs))],
             "vllm_prefix_queries": 100.0, "vllm_prefix_hits": 25.0, "preemptions": 0} for i in indices]


def test_a_lost_run_keeps_its_finished_levels_and_resumes_with_levels(tmp_path: Path) -> None:
    """The machine is lost after level 0: its child file comes back marked incomplete; the next
    session runs --levels 1,2 and --merge joins both into the summary one whole run would give."""
    flags = ["--loads", "6,9,12", "--scenario", "paper", "--commit", "abc"]
    _, levels = replay.make_plan(replay.parse_args(flags))
    service = {"prefill_a_s": 0.01, "prefill_b_s_per_token": 1e-4, "tpot_s": 0.02}

    def child_file(name: str, indices: list[int], complete: bool) -> Path:
        args = replay.parse_args([*flags, "--child", "stock", "--child-out", str(tmp_path / name)])
        replay.write_child(args, {"service": service, "levels": _child_levels(levels, indices, 5.0),
                                  "config": "stock", "gpu": "NVIDIA H200"}, complete=complete)
        return tmp_path / name

    lost = child_file("lost.json", [0], complete=False)
    rest = child_file("rest.json", [1, 2], complete=True)
    assert json.loads(lost.read_text())["complete"] is False and json.loads(rest.read_text())["complete"] is True
    assert json.loads(lost.read_text())["args"]["loads"] == "6,9,12" and json.loads(lost.read_text())["commit"] == "abc"

    replay.main([*flags, "--out-dir", str(tmp_path / "part"), "--merge", str(lost)])
    part = json.loads((tmp_path / "part" / "summary.json").read_text())
    assert part["partial"] is True and [e["programs_per_min"] for e in part["loads"]] == [6.0]

    replay.main([*flags, "--out-dir", str(tmp_path / "m"), "--merge", str(lost), str(rest)])
    merged = json.loads((tmp_path / "m" / "summary.json").read_text())
    whole = replay.build_summary({"stock": {"gpu": "NVIDIA H200", "service": service,
                                            "levels": _child_levels(levels, [0, 1, 2], 5.0)}},
                                 levels, replay.ServiceModel(**service), commit="abc", trace="paper",
                                 kv_tokens=3000 * 16)
    assert merged["loads"] == json.loads(json.dumps(whole["loads"]))
    assert merged["levels_run"] == {"stock": [0, 1, 2]} and merged["partial"] is False
    with pytest.raises(SystemExit, match=r"level\(s\) \[0\] are in more than one run"):
        replay.main([*flags, "--out-dir", str(tmp_path / "x"), "--merge", str(lost), str(lost)])


def test_the_child_file_is_replaced_whole(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A child killed while it writes level 1 leaves level 0's file intact, not a half-written one."""
    out = tmp_path / "stock.json"
    args = replay.parse_args(["--loads", "6,9,12", "--child", "stock", "--child-out", str(out)])
    _, levels = replay.make_plan(args)
    replay.write_child(args, {"service": {}, "levels": _child_levels(levels, [0], 5.0)}, complete=False)
    write_text = Path.write_text

    def killed_halfway(self: Path, data: str, *a: object, **k: object) -> int:
        write_text(self, data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        replay.write_child(args, {"service": {}, "levels": _child_levels(levels, [0, 1], 5.0)}, complete=True)
    kept = json.loads(out.read_text())
    assert [lv["level_index"] for lv in kept["levels"]] == [0] and kept["complete"] is False


def test_a_config_missing_a_level_keeps_its_other_levels_and_goodput(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    args = replay.parse_args(["--loads", "6,9,12", "--scenario", "paper", "--out-dir", str(tmp_path)])
    _, levels = replay.make_plan(args)
    service = replay.ServiceModel(0.01, 1e-4, 0.02)
    children = {"stock": {"gpu": "g", "levels": _child_levels(levels, [0, 1, 2], 5.0)},
                "admission": {"gpu": "g", "levels": _child_levels(levels, [0, 2], 4.0), "complete": False}}
    summary = replay.build_summary(children, levels, service)
    assert [("admission" in e, "stock" in e) for e in summary["loads"]] == [(True, True), (False, True), (True, True)]
    assert summary["loads"][2]["admission"]["mean_jct_s"] == pytest.approx(6.0)
    assert summary["levels_run"] == {"stock": [0, 1, 2], "admission": [0, 2]} and summary["partial"] is True
    # Every program finished with a flat trend: both sustain every load they ran.
    assert summary["goodput"]["highest_sustained_programs_per_min"] == {"stock": 12.0, "admission": 12.0}
    assert summary["goodput"]["completed_per_min_at_stock_multiple"]["admission"]["1x"] is not None
    # The files (and the plot) are written too; a level nobody ran is left out (here 12/min).
    children["admission"]["service"] = children["stock"]["service"] = {"prefill_a_s": 0.01,
                                                                       "prefill_b_s_per_token": 1e-4, "tpot_s": 0.02}
    children["stock"]["levels"] = _child_levels(levels, [0, 1], 5.0)
    children["admission"]["levels"] = _child_levels(levels, [0], 4.0)
    figures: list = []
    monkeypatch.setattr(replay, "save_figure", lambda fig, path: figures.append(fig))
    replay.write_results(args, children, levels, 0.0)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert [e["programs_per_min"] for e in written["loads"]] == [6.0, 9.0]
    # The plot draws each configuration over the loads it ran.
    lines = {line.get_label(): len(line.get_xdata()) for line in figures[0].axes[0].get_lines()}
    assert lines["admission mean"] == 1 and lines["stock mean"] == 2


def test_levels_option_runs_only_those_levels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    argv = ["--loads", "6,9,12", "--scenario", "paper", "--configs", "stock", "--levels", "1,2", "--budget-s", "900",
            "--drain-s", "900", "--out-dir", str(tmp_path), "--commit", "abc"]
    args = replay.parse_args(argv)
    _, levels = replay.make_plan(args)
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: object) -> None:
        calls.append(cmd)
        indices = [int(i) for i in cmd[cmd.index("--child-levels") + 1].split(",")]
        Path(cmd[cmd.index("--child-out") + 1]).write_text(json.dumps(
            {"service": {"prefill_a_s": 0.01, "prefill_b_s_per_token": 1e-4, "tpot_s": 0.02}, "gpu": "g",
             "levels": _child_levels(levels, indices, 5.0), "complete": True}))

    monkeypatch.setattr(replay.subprocess, "run", fake_run)
    monkeypatch.setattr(replay, "plot", lambda summary, path: None)
    replay.run_parent(args, argv)
    assert len(calls) == 1 and calls[0][calls[0].index("--child-levels") + 1] == "1,2"
    # The budget sizes the drain over the two levels run (argparse takes the last --drain-s).
    drain = [calls[0][i + 1] for i, a in enumerate(calls[0]) if a == "--drain-s"][-1]
    two, three = (replay.fixed_drain_s(900, 1, n, args.window_s, args.drain_s) for n in (2, 3))
    assert drain == f"{two:.2f}" and two > three
    assert "--levels" not in calls[0] and "1,2" not in calls[0][:calls[0].index("--child")]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [e["programs_per_min"] for e in summary["loads"]] == [9.0, 12.0] and summary["partial"] is True
    with pytest.raises(SystemExit, match=r"levels 0\.\.2"):
        replay.parse_levels("3", 3)


def test_a_program_cut_before_twice_its_lower_bound_does_not_decide_the_verdict() -> None:
    # One long program arrives last and the drain ends before it could finish even at 1.2x its
    # isolated time: the level is still sustained. A program cut after 2x its lower bound is overdue.
    # Nine programs; the first three are long ones, so the JCT trend stays below 1.2.
    bounds = [200.0] * 3 + [100.0] * 5 + [250.0]
    record = {"prompt_tokens": 100, "cached_tokens": 50}
    programs = [
        {**record, "program_id": f"L0-{i}-p{i}", "arrival_s": 10.0 * i, "jct_s": 1.2 * bound, "done": True,
         "finish_s": 10.0 * i + 1.2 * bound}
        for i, bound in enumerate(bounds[:-1])
    ]
    programs.append({**record, "program_id": "L0-8-c", "arrival_s": 80.0, "jct_s": 300.0, "done": False})
    block = replay.summarize_level({"programs": programs, "vllm_prefix_queries": 0, "vllm_prefix_hits": 0}, bounds)
    assert block["num_incomplete"] == 1 and block["num_overdue"] == 0
    assert replay.sustains(block) and not replay.sustains(block, strict=True)

    late = [*programs[:-1], {**programs[-1], "jct_s": 510.0}]
    overdue = replay.summarize_level({"programs": late, "vllm_prefix_queries": 0, "vllm_prefix_hits": 0}, bounds)
    assert overdue["num_overdue"] == 1 and not replay.sustains(overdue)

    # A file without lower bounds (older runs) keeps the strict rule.
    assert "num_overdue" not in replay.summarize_level({"programs": programs, "vllm_prefix_queries": 0,
                                                        "vllm_prefix_hits": 0})
    with pytest.raises(ValueError, match="not a replayed program id"):
        replay.program_index("paper-3-x")


def test_goodput_reports_the_strict_verdict_beside_the_overdue_one() -> None:
    def entry(rate: float, incomplete: int, overdue: int) -> dict:
        return {"programs_per_min": rate, "stock": {"num_incomplete": incomplete, "num_overdue": overdue,
                                                    "jct_trend": 1.0, "mean_jct_s": 100.0, "completed_per_min": 2.0}}

    block = replay.goodput([entry(6.0, 0, 0), entry(9.0, 1, 0), entry(12.0, 3, 2)], ["stock"])
    assert block["highest_sustained_programs_per_min"]["stock"] == 9.0
    assert block["highest_sustained_strict_programs_per_min"]["stock"] == 6.0


def test_tool_waits_of_real_coding_sessions_are_the_gaps_the_engine_sees(tmp_path: Path) -> None:
    from bench.serving.workload import ToolWait, load_tool_waits

    def row(session: str, index: int, events: list[tuple[str, str]], tools: list[dict]) -> str:
        return json.dumps({"session_id": session, "round_index": index, "tools": tools,
                           "timing_events": [{"event_type": kind, "timestamp": ts} for kind, ts in events]})

    lines = [
        # Two parallel calls: the wait ends with the slower one's result (12 s), named after it.
        row("s", 0, [("user_message", "2026-01-01T00:00:00Z"), ("tool_call", "2026-01-01T00:00:05Z")],
            [{"tool_name": "Bash", "tool_wall_latency_ms": 300},
             {"tool_name": "WebSearch", "tool_wall_latency_ms": 11900}]),
        row("s", 1, [("tool_result", "2026-01-01T00:00:05.3Z"), ("tool_result", "2026-01-01T00:00:17Z"),
                     ("tool_call", "2026-01-01T00:00:20Z")], [{"tool_name": "Read", "tool_wall_latency_ms": 40}]),
        # No timestamps in the next round: the call's own latency stands in.
        row("s", 2, [("text", "not a time")], []),
        row("s", 3, [("tool_call", "2026-01-01T00:01:00Z")], [{"tool_name": "Edit", "tool_wall_latency_ms": 2500}]),
        row("s", 4, [("tool_result", "bad")], []),
        # A round without tool calls (the user answers next) and the session's last round: no wait.
        row("t", 0, [("text", "2026-01-01T00:00:00Z")], []),
        row("t", 1, [("user_message", "2026-01-01T00:09:00Z")], [{"tool_name": "Bash", "tool_wall_latency_ms": 10}]),
        "{not json", json.dumps({"session_id": "u"}), "",
    ]
    path = tmp_path / "rounds.jsonl"
    path.write_text("\n".join(lines))
    waits, skipped = load_tool_waits(path)
    assert skipped == 2
    # Round s/1's own wait has no tool result after it (s/2 opens with text): its latency, 0.04 s.
    assert waits == [ToolWait("WebSearch", 12.0), ToolWait("Read", 0.04), ToolWait("Edit", 2.5)]

    (tmp_path / "none.jsonl").write_text(row("t", 0, [], []) + "\n")
    with pytest.raises(ValueError, match="no tool wait found"):
        load_tool_waits(tmp_path / "none.jsonl")


def test_the_vendored_tool_waits_match_the_trace_they_come_from() -> None:
    from bench.serving import workload

    if not workload.TRACELAB_ROUNDS.exists():
        pytest.skip("../shared/data is not beside the repository")
    waits, skipped = workload.load_tool_waits(workload.TRACELAB_ROUNDS)
    vendored = workload._read_tool_waits(workload.VENDORED_TOOL_WAITS_CSV)
    assert skipped == 0 and [w.tool_name for w in waits] == [w.tool_name for w in vendored]
    assert [w.wait_s for w in waits] == pytest.approx([w.wait_s for w in vendored], abs=1e-3)
    assert max(w.wait_s for w in waits) > 10.0  # web searches and writes: waits of tens of seconds


def test_paper_programs_with_coding_tool_waits_keep_their_turns_and_contexts() -> None:
    from bench.serving.workload import load_tool_waits

    flags = ["--scenario", "paper", "--paper-turns", "20,30", "--loads", "6", "--window-s", "60"]
    plain, _ = replay.make_plan(replay.parse_args(flags))
    coding, _ = replay.make_plan(replay.parse_args([*flags, "--paper-tool-waits", "coding"]))
    measured = {round(w.wait_s, 3) for w in load_tool_waits()[0]}
    for a, b in zip(plain, coding, strict=True):
        assert [t.num_new_tokens for t in a.turns] == [t.num_new_tokens for t in b.turns]
        assert [t.num_output_tokens for t in a.turns] == [t.num_output_tokens for t in b.turns]
        assert b.turns[-1].tool_s == 0.0 and b.turns[-1].tool_name is None
        assert {round(t.tool_s, 3) for t in b.turns[:-1]} <= measured
    assert sum(p.tool_s for p in coding) > 10 * sum(p.tool_s for p in plain)
    # The option is part of the plan: runs with different waits do not merge.
    assert "paper_tool_waits" in replay._PLAN_ARGS


def test_kv_capacity_bound_is_littles_law_over_the_least_residency() -> None:
    from bench.serving.workload import ProgramSpec, ServiceModel, TurnSpec, kv_token_seconds

    service = ServiceModel(prefill_a_s=0.0, prefill_b_s_per_token=0.0, tpot_s=0.01)
    # Two turns of 10 output tokens over contexts of 1000 then 2010 tokens (+ half the output);
    # the 30 s tool wait between them counts nothing.
    program = ProgramSpec("p", "test", (TurnSpec(1000, 10, 30.0), TurnSpec(1000, 10, 0.0)))
    residency = (1000 + 5) * 0.1 + (2010 + 5) * 0.1
    assert kv_token_seconds(program, service) == pytest.approx(residency)
    # 10,000 tokens hold 10,000 / 302 programs at once; each stays 0.2 s -> 60 * 10000/302 per min.
    assert kv_capacity_bound([program], service, 10_000) == pytest.approx(60 * 10_000 / residency)
    # Prefill time counts the prefix and half the new tokens.
    slow = ServiceModel(prefill_a_s=0.0, prefill_b_s_per_token=0.001, tpot_s=0.0)
    assert kv_token_seconds(program, slow) == pytest.approx(500 * 1.0 + (1010 + 500) * 1.0)
    with pytest.raises(ValueError):
        kv_capacity_bound([], service, 10_000)


def test_summary_levels_carry_the_kv_capacity_bound_and_goodput_compares_stock_with_it() -> None:
    args = replay.parse_args(["--scenario", "paper", "--loads", "6,9,12", "--window-s", "60", "--kv-blocks", "16000"])
    _, levels = replay.make_plan(args)
    service = replay.PRIOR_SERVICE
    child = {"stock": {"gpu": "test", "service": {}, "levels": _child_levels(levels, [0, 1, 2], 5.0)}}
    summary = replay.build_summary(child, levels, service, kv_tokens=16000 * 16)
    bounds = [e["kv_capacity_bound_programs_per_min"] for e in summary["loads"]]
    expected = [kv_capacity_bound(level.programs, service, 16000 * 16) for level in levels]
    assert bounds == pytest.approx(expected) and all(5 < b < 50 for b in bounds)
    block = summary["goodput"]
    assert block["stock_sustained_programs_per_min"] == 12.0
    assert block["kv_capacity_bound_programs_per_min"] == pytest.approx(max(bounds), abs=0.01)
    assert block["stock_sustained_share_of_kv_capacity_bound"] == pytest.approx(12.0 / bounds[2], abs=1e-3)
    assert block["1.5x_stock_above_kv_capacity_bound"] is (block["kv_capacity_bound_programs_per_min"] < 18.0)
    # Without a KV size nothing is claimed.
    assert "kv_capacity_bound_programs_per_min" not in replay.build_summary(child, levels, service)["goodput"]


def test_paired_jct_ratio_is_the_median_over_programs_both_runs_finished() -> None:
    def level(jcts: dict[str, float | None]) -> dict:
        return {"programs": [{"program_id": k, "jct_s": v or 50.0, "done": v is not None} for k, v in jcts.items()]}

    stock = level({"a": 10.0, "b": 20.0, "c": 40.0, "d": None, "long": 100.0})
    other = level({"a": 8.0, "b": 16.0, "c": 32.0, "d": 5.0, "long": 300.0})
    # d is cut in stock: not paired; the long program's 3x does not move the median as it moves a mean.
    assert replay.paired_jct_ratio(stock, other) == pytest.approx(0.8)
    unnamed = {"programs": [{"jct_s": 10.0, "done": True}]}
    assert replay.paired_jct_ratio(unnamed, unnamed) is None


def test_turn_timings_split_each_turn_by_the_engine_timestamps():
    from vllm.v1.metrics.stats import RequestStateStats

    rec: dict = {}
    first = RequestStateStats(arrival_time=1.0, queued_ts=10.0, scheduled_ts=12.5, first_token_ts=13.0,
                              last_token_ts=15.0)
    replay.add_turn_timing(rec, types.SimpleNamespace(metrics=first), 5.25)
    replay.add_turn_timing(rec, types.SimpleNamespace(metrics=None), 1.0)  # stats off: the wall time only
    second = RequestStateStats(queued_ts=20.0, scheduled_ts=20.0, first_token_ts=20.5, last_token_ts=21.0)
    replay.add_turn_timing(rec, types.SimpleNamespace(metrics=second), 1.5)
    assert rec["turn_timings"] == [[5.25, 2.5, 0.5, 2.0], [1.0], [1.5, 0.0, 0.5, 0.5]]
    assert (rec["wall_s"], rec["queue_s"], rec["prefill_s"], rec["decode_s"]) == (7.75, 2.5, 1.0, 2.5)
    other = {"queue_s": 0.5, "prefill_s": 1.0, "decode_s": 0.5, "wall_s": 2.75}
    split = replay.time_split([rec, other, {"jct_s": 1.0}])
    assert split == {"mean_wall_s": 5.25, "mean_queue_s": 1.5, "mean_prefill_s": 1.0, "mean_decode_s": 1.5,
                     "num_programs": 2}
    assert replay.time_split([{"jct_s": 1.0}]) is None


def test_pin_with_offload_reaches_the_offload_configs_only() -> None:
    from bench.serving import replay

    args = replay.parse_args(["--pin-with-offload"])
    assert args.pin_with_offload and not replay.parse_args([]).pin_with_offload
    env = {c: replay.plugin_env(c, None, pin_with_offload=True) for c in ("admission_offload", "fixed_ttl")}
    assert env["admission_offload"]["QUOTAFLOW_CONTINUUM_PIN_WITH_OFFLOADING"] == "1"
    assert env["fixed_ttl"]["QUOTAFLOW_CONTINUUM_PIN_WITH_OFFLOADING"] == "0"
    assert replay.plugin_env("admission_offload", None)["QUOTAFLOW_CONTINUUM_PIN_WITH_OFFLOADING"] == "0"
