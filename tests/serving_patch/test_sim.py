"""The virtual-time replay (bench/serving/sim.py) over the real vLLM 0.26 scheduler on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.serving import replay, sim


def test_jct_trend_separates_a_growing_queue_from_a_steady_one() -> None:
    steady = [{"arrival_s": float(i), "jct_s": 5.0} for i in range(9)]
    growing = [{"arrival_s": float(i), "jct_s": 5.0 + 2.0 * i} for i in range(9)]
    assert replay.jct_trend(steady) == pytest.approx(1.0)
    # first third 5, 7, 9 -> 7; last third 17, 19, 21 -> 19
    assert replay.jct_trend(growing) == pytest.approx(19.0 / 7.0)
    assert replay.jct_trend(steady[:2]) == 1.0  # too few programs to tell


def test_step_cost_is_linear_in_its_parts() -> None:
    cost = sim.StepCost(per_step_s=0.01, per_prefill_token_s=1e-5, per_decode_seq_s=1e-3, per_context_token_s=1e-7)
    assert cost.step_s(0, 0, 0) == pytest.approx(0.01)
    assert cost.step_s(1000, 4, 20000) == pytest.approx(0.01 + 0.01 + 0.004 + 0.002)


def test_pins_keep_prefixes_under_pressure_in_virtual_time(tmp_path: Path) -> None:
    # A small KV cache (300 blocks = 4.8k tokens) and enough programs that stock evicts the
    # prefixes of programs in a tool call; the plugin pins them. Virtual time: deterministic.
    args = replay.parse_args([
        "--loads", "240", "--window-s", "6", "--drain-s", "120", "--kv-blocks", "300",
        "--max-context", "3000", "--max-turns", "4", "--num-synthetic", "12", "--max-num-seqs", "8",
    ])
    _, levels = replay.make_plan(args)
    model_dir = sim.write_tiny_model(tmp_path / "model")
    results = {c: sim.summarize(sim.simulate_level(args, c, levels[0], 0, sim.StepCost(), model_dir))
               for c in ("stock", "fixed_ttl")}
    stock, fixed = results["stock"], results["fixed_ttl"]
    assert stock["num_incomplete"] == fixed["num_incomplete"] == 0  # nothing lost, no deadlock
    assert fixed["plugin"]["pins_created"] > 0 and fixed["plugin"]["pin_hits"] > 0
    assert fixed["prefix_hit_rate"] > stock["prefix_hit_rate"]
    assert fixed["mean_jct_s"] < stock["mean_jct_s"]
