"""The virtual-time replay (bench/serving/sim.py) over the real vLLM 0.26 scheduler on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from bench.serving import replay, sim
from tests import extras


def test_jct_trend_separates_a_growing_queue_from_a_steady_one() -> None:
    steady = [{"arrival_s": float(i), "jct_s": 5.0} for i in range(9)]
    growing = [{"arrival_s": float(i), "jct_s": 5.0 + 2.0 * i} for i in range(9)]
    assert replay.jct_trend(steady) == pytest.approx(1.0)
    # first third 5, 7, 9 -> 7; last third 17, 19, 21 -> 19
    assert replay.jct_trend(growing) == pytest.approx(19.0 / 7.0)
    assert replay.jct_trend(steady[:2]) == 1.0  # too few programs to tell


def test_jct_by_arrival_tenth_shows_a_burst_that_recovers() -> None:
    # 20 programs listed out of arrival order; the 5th tenth (arrivals 8, 9) hit a burst.
    programs = [{"arrival_s": float(i), "jct_s": 30.0 if i in (8, 9) else 5.0} for i in reversed(range(20))]
    assert replay.jct_by_arrival_tenth(programs) == [5.0] * 4 + [30.0] + [5.0] * 5
    assert replay.jct_by_arrival_tenth(programs[:9]) == []  # fewer than ten programs


def test_step_cost_is_linear_in_its_parts() -> None:
    cost = sim.StepCost(per_step_s=0.01, per_prefill_token_s=1e-5, per_decode_seq_s=1e-3, per_context_token_s=1e-7)
    assert cost.step_s(0, 0, 0) == pytest.approx(0.01)
    assert cost.step_s(1000, 4, 20000) == pytest.approx(0.01 + 0.01 + 0.004 + 0.002)


def _pressure_plan(tmp_path: Path) -> tuple[Any, list[Any], Path]:
    """A small KV cache (250 blocks = 4k tokens) and enough programs that stock evicts the
    prefixes of programs in a tool call."""
    pytest.importorskip("vllm", reason=extras.SERVE)
    args = replay.parse_args([
        "--loads", "240", "--window-s", "6", "--drain-s", "120", "--kv-blocks", "250",
        "--max-context", "3000", "--max-turns", "4", "--num-synthetic", "12", "--max-num-seqs", "8",
    ])
    _, levels = replay.make_plan(args)
    return args, levels, sim.write_tiny_model(tmp_path / "model")


def test_pins_keep_prefixes_under_pressure_in_virtual_time(tmp_path: Path) -> None:
    # A small KV cache (250 blocks = 4k tokens) and enough programs that stock evicts the
    # prefixes of programs in a tool call; the plugin pins them. Virtual time: deterministic.
    # (At 300 blocks the two mean JCTs are within 0.3%, too close to assert an order.)
    args, levels, model_dir = _pressure_plan(tmp_path)
    results = {c: sim.summarize(sim.simulate_level(args, c, levels[0], 0, sim.StepCost(), model_dir))
               for c in ("stock", "fixed_ttl")}
    stock, fixed = results["stock"], results["fixed_ttl"]
    assert stock["num_incomplete"] == fixed["num_incomplete"] == 0  # nothing lost, no deadlock
    assert fixed["plugin"]["pins_created"] > 0 and fixed["plugin"]["pin_hits"] > 0
    assert fixed["prefix_hit_rate"] > stock["prefix_hit_rate"]
    assert fixed["mean_jct_s"] < stock["mean_jct_s"]


def test_cpu_tier_serves_evicted_prefixes_in_virtual_time(tmp_path: Path) -> None:
    # The pressure of the pin test: stock evicts prefixes during tool calls; with the CPU tier
    # those prefixes come back by a load, so fewer prompt tokens are computed and programs end
    # sooner. The plugin with a connector pins nothing (vLLM's connector owns block lifetimes).
    args, levels, model_dir = _pressure_plan(tmp_path)
    results = {c: sim.summarize(sim.simulate_level(args, c, levels[0], 0, sim.StepCost(), model_dir))
               for c in ("stock", "stock_offload", "fixed_ttl_offload")}
    stock, offload, plugin = results["stock"], results["stock_offload"], results["fixed_ttl_offload"]
    assert stock["num_incomplete"] == offload["num_incomplete"] == plugin["num_incomplete"] == 0
    assert "cpu_tier_hit_rate" not in stock and offload["cpu_tier_hit_rate"] > 0.05
    assert offload["prefix_hit_rate"] > stock["prefix_hit_rate"] + offload["cpu_tier_hit_rate"] / 2
    assert offload["mean_jct_s"] < stock["mean_jct_s"]
    assert plugin["plugin"]["pins_created"] == 0 and plugin["cpu_tier_hit_rate"] > 0
    # --pin-with-offload: pins kept beside the tier.
    args.pin_with_offload = True
    pinned = sim.summarize(sim.simulate_level(args, "fixed_ttl_offload", levels[0], 0, sim.StepCost(), model_dir))
    assert pinned["plugin"]["pins_created"] > 0 and pinned["plugin"]["pin_hits"] > 0
    assert pinned["num_incomplete"] == 0


def test_cpu_tier_is_an_lru_of_computed_blocks_read_as_a_prefix() -> None:
    class Request:
        def __init__(self, rid: str, hashes: list[str], num_tokens: int) -> None:
            self.request_id, self.block_hashes, self.num_tokens = rid, hashes, num_tokens

    tier = sim.CpuTier(capacity_blocks=4, block_size=16)
    assert sim.CpuTier.of_size(1.0).capacity_blocks == 2**30 // (16 * 128 * 1024)
    tier.store("a", ["h0", "h1", "h2"], num_computed_tokens=40)  # two full blocks computed
    assert list(tier.blocks) == ["h0", "h1"]
    tier.store("a", ["h0", "h1", "h2"], num_computed_tokens=48)
    # A prefix read: stops at the first block the tier lacks, and never covers the last token.
    assert tier.get_num_new_matched_tokens(Request("b", ["h0", "h1", "x", "h2"], 64), 0) == (32, False)
    assert tier.get_num_new_matched_tokens(Request("c", ["h0", "h1", "h2"], 48), 16) == (16, False)
    tier.update_state_after_alloc(Request("c", [], 48), None, 16)
    assert tier.take_loaded_tokens() == 16 and tier.take_loaded_tokens() == 0
    assert tier.loaded_by_request == {"c": 16}
    # Least recently used leaves first: h2 was stored last but h0, h1 were read since.
    tier.store("d", ["n0", "n1"], num_computed_tokens=32)
    assert list(tier.blocks) == ["h0", "h1", "n0", "n1"]


class _FakeChild:
    """Stands in for a GPU child: writes the JSON a child writes, records its GPU."""

    gpus: ClassVar[dict[str, str]] = {}

    def __init__(self, cmd: list[str], cwd: object, env: dict[str, str]) -> None:
        import json

        config = cmd[cmd.index("--child") + 1]
        out = Path(cmd[cmd.index("--child-out") + 1])
        _FakeChild.gpus[config] = env["CUDA_VISIBLE_DEVICES"]
        args = replay.parse_args(cmd[3:])
        _, levels = replay.make_plan(args)
        slow = 2.0 if config == "stock" else 1.0
        out.write_text(json.dumps({
            "gpu": "NVIDIA H200", "service": {"prefill_a_s": 0.01, "prefill_b_s_per_token": 2e-5, "tpot_s": 0.013},
            "levels": [{
                "programs_per_min": level.programs_per_min,
                "programs": [{"arrival_s": a, "jct_s": 5.0 * slow, "done": True, "finish_s": a + 5.0 * slow,
                              "prompt_tokens": 100, "cached_tokens": 50} for a in level.arrivals_s],
                "vllm_prefix_queries": 100.0, "vllm_prefix_hits": 50.0, "preemptions": 0,
            } for level in levels],
        }))
        self.returncode = 0

    def wait(self) -> int:
        return 0


def test_side_by_side_parent_runs_each_config_on_its_own_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    # Each config's child runs through subprocess.run, in its own thread (side by side).
    monkeypatch.setattr(replay.subprocess, "run", lambda cmd, cwd, env, check: _FakeChild(cmd, cwd, env))
    argv = ["--loads", "60,120", "--gpus", "0,1,2", "--out-dir", str(tmp_path), "--budget-s", "600", "--commit", "abc"]
    replay.run_parent(replay.parse_args(argv), argv)
    assert _FakeChild.gpus == {"stock": "0", "fixed_ttl": "1", "utility_ttl": "2"}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [e["programs_per_min"] for e in summary["loads"]] == [60.0, 120.0]
    entry = summary["loads"][1]
    assert entry["stock"]["mean_jct_s"] == pytest.approx(2 * entry["fixed_ttl"]["mean_jct_s"])
    assert entry["stock"]["jct_trend"] == pytest.approx(1.0)
    assert summary["commit"] == "abc" and "H200" in summary["machine"]


def test_step_cost_flag_changes_only_the_named_fields() -> None:
    from bench.serving.sim import StepCost, parse_step_cost

    cost = parse_step_cost("per_step_s=0.018, per_decode_seq_s=2e-4")
    assert cost == StepCost(per_step_s=0.018, per_decode_seq_s=2e-4)
    assert parse_step_cost("") == StepCost()
    with pytest.raises(SystemExit, match="per_step"):
        parse_step_cost("per_stepp=1")
    with pytest.raises(SystemExit, match="number"):
        parse_step_cost("per_step_s=fast")


def test_summary_counts_overdue_programs_against_the_step_costs_lower_bound() -> None:
    cost = sim.StepCost()
    service = cost.service_model()
    assert service.tpot_s == pytest.approx(cost.per_step_s + cost.per_decode_seq_s)
    record = {"prompt_tokens": 10, "cached_tokens": 5, "turns": 1}
    result = {"preemptions": 0, "programs": [
        {**record, "arrival_s": 0.0, "jct_s": 10.0, "done": True, "finish_s": 10.0},
        {**record, "arrival_s": 1.0, "jct_s": 15.0, "done": False},  # cut at 1.5x its bound
        {**record, "arrival_s": 2.0, "jct_s": 30.0, "done": False},  # cut at 3x its bound: overdue
    ]}
    summary = sim.summarize(result, 60.0, [10.0, 10.0, 10.0])
    assert summary["num_incomplete"] == 2 and summary["num_overdue"] == 1
    assert "num_overdue" not in sim.summarize(result, 60.0)
