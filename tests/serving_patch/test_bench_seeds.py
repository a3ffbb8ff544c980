"""bench/serving/seeds.py: several draws of one replay plan read together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.serving import seeds
from tests import extras


def _block(mean: float, p95: float, trend: float) -> dict:
    return {"mean_jct_s": mean, "p95_jct_s": p95, "jct_trend": trend, "prefix_hit_rate": 0.7, "num_incomplete": 0}


def _summary(stock: list[tuple[float, float]], fixed: list[float], top: float | None) -> dict:
    """Two loads (100, 120); stock (mean, trend) per load; fixed TTL mean per load; bound 5 s."""
    return {
        "commit": "abc", "date": "2026-11-29",
        "highest_load_stock_sustains": top,
        "loads": [
            {"programs_per_min": load, "lower_bound_mean_jct_s": 5.0, "stock_sustained": trend <= 1.2,
             "stock": _block(mean, 2 * mean, trend), "fixed_ttl": _block(f, 2 * f, 1.0)}
            for load, (mean, trend), f in zip((100.0, 120.0), stock, fixed, strict=True)
        ],
    }


def test_speedup_and_headroom_where_stock_sustains_and_where_it_collapses() -> None:
    runs = [
        _summary([(6.0, 1.0), (20.0, 2.5)], [6.0, 8.0], 100.0),  # collapses at 120
        _summary([(6.5, 1.0), (7.0, 1.1)], [6.5, 7.0], 120.0),
    ]
    result = seeds.analyse(runs)
    ok, bad = result["where_stock_sustains"], result["where_stock_does_not"]
    assert ok["cells"] == 3 and ok["speedup_range"] == [1.0, 1.0]
    # stock 6.0 .. 7.0 s over a 5 s bound: at most 1.4x for any scheduler, so no cell can reach 1.5x
    assert ok["stock_headroom_range"] == pytest.approx([1.2, 1.4])
    assert ok["cells_with_headroom_for_goal"] == 0
    assert bad == {"cells": 1, "speedup_range": [2.5, 2.5], "plugin_sustained": 1}
    assert [s["highest_load_stock_sustains"] for s in result["per_seed"]] == [100.0, 120.0]
    assert result["per_seed"][1]["at_highest"]["fixed_ttl"]["stock_headroom"] == pytest.approx(1.4)
    at_120 = result["per_load"][1]["fixed_ttl"]
    assert at_120["stock_sustained_seeds"] == 1
    assert at_120["speedup_of_means"] == pytest.approx((20.0 + 7.0) / (8.0 + 7.0))


def test_main_writes_json_and_plot_and_refuses_runs_of_other_loads(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason=extras.BENCH)
    paths = []
    for i, run in enumerate([_summary([(6.0, 1.0), (7.0, 1.0)], [6.0, 7.0], 120.0)] * 2):
        paths.append(tmp_path / f"s{i}.json")
        paths[-1].write_text(json.dumps(run))
    seeds.main([*map(str, paths), "--out-dir", str(tmp_path / "out")])
    assert json.loads((tmp_path / "out" / "seeds.json").read_text())["where_stock_sustains"]["cells"] == 4
    assert (tmp_path / "out" / "seeds.png").stat().st_size > 0
    other = _summary([(6.0, 1.0), (7.0, 1.0)], [6.0, 7.0], 120.0)
    other["loads"][1]["programs_per_min"] = 130.0
    paths[1].write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="different loads"):
        seeds.main([*map(str, paths), "--out-dir", str(tmp_path / "out2")])
