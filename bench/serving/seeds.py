"""Several draws of one replay plan, read together: where stock vLLM collapses, and what the
plugin can still gain at the loads stock sustains.

    python -m bench.serving.seeds bench/results/serving/seeds-ca001a0/seed*/summary.json \\
        --out-dir bench/results/serving/seeds-ca001a0

Each ``summary.json`` is one run of ``bench.serving.replay`` (same loads and flags, another
``--seed``: other arrival times and synthetic programs). Per cell (seed, load) it keeps the
plugin's speed-up over stock and stock's *headroom*, stock's mean JCT over the lower bound
(tool time plus isolated service time): no scheduler can beat stock by more than that. Per seed
it names the highest load stock sustains (the replay's rule) with the speed-up and headroom
there; per load, how many seeds stock sustained and the speed-up of the mean over seeds.
Writes ``seeds.json`` and ``seeds.png`` under ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from bench.common import pyplot, save_figure, write_json
from bench.serving.replay import sustains

PLUGIN_CONFIGS = ("fixed_ttl", "utility_ttl")


def cells(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (seed, load, plugin config) with stock's numbers beside the plugin's."""
    rows: list[dict[str, Any]] = []
    for seed, summary in enumerate(summaries):
        for entry in summary["loads"]:
            stock = entry["stock"]
            bound = entry["lower_bound_mean_jct_s"]
            for config in PLUGIN_CONFIGS:
                if config not in entry:
                    continue
                rows.append({
                    "seed": seed,
                    "programs_per_min": entry["programs_per_min"],
                    "config": config,
                    "stock_sustained": bool(entry["stock_sustained"]),
                    "stock_mean_jct_s": stock["mean_jct_s"],
                    "plugin_mean_jct_s": entry[config]["mean_jct_s"],
                    "stock_p95_jct_s": stock["p95_jct_s"],
                    "plugin_p95_jct_s": entry[config]["p95_jct_s"],
                    "stock_jct_trend": stock["jct_trend"],
                    "plugin_jct_trend": entry[config]["jct_trend"],
                    "plugin_sustained": sustains(entry[config]),
                    "stock_prefix_hit_rate": stock["prefix_hit_rate"],
                    "plugin_prefix_hit_rate": entry[config]["prefix_hit_rate"],
                    "lower_bound_mean_jct_s": bound,
                    "speedup_mean": stock["mean_jct_s"] / entry[config]["mean_jct_s"],
                    "stock_headroom": stock["mean_jct_s"] / bound if bound > 0 else float("nan"),
                })
    return rows


def analyse(summaries: list[dict[str, Any]], *, goal: float = 1.5) -> dict[str, Any]:
    """Per seed, per load and overall figures of the cells (see the module docstring)."""
    rows = cells(summaries)
    configs = [c for c in PLUGIN_CONFIGS if any(r["config"] == c for r in rows)]
    per_seed = []
    for seed, summary in enumerate(summaries):
        top = summary.get("highest_load_stock_sustains")
        at_top = [r for r in rows if r["seed"] == seed and r["programs_per_min"] == top]
        per_seed.append({
            "seed": seed,
            "commit": summary["commit"],
            "date": summary["date"],
            "highest_load_stock_sustains": top,
            "at_highest": {r["config"]: {"speedup_mean": r["speedup_mean"], "stock_headroom": r["stock_headroom"],
                                         "p95_no_worse": r["plugin_p95_jct_s"] <= r["stock_p95_jct_s"]}
                           for r in at_top},
        })
    per_load = []
    for load in sorted({r["programs_per_min"] for r in rows}):
        block: dict[str, Any] = {"programs_per_min": load}
        for config in configs:
            here = [r for r in rows if r["programs_per_min"] == load and r["config"] == config]
            stock_mean = statistics.fmean(r["stock_mean_jct_s"] for r in here)
            plugin_mean = statistics.fmean(r["plugin_mean_jct_s"] for r in here)
            block[config] = {
                "seeds": len(here),
                "stock_sustained_seeds": sum(r["stock_sustained"] for r in here),
                "stock_mean_jct_s_over_seeds": stock_mean,
                "plugin_mean_jct_s_over_seeds": plugin_mean,
                "speedup_of_means": stock_mean / plugin_mean,
            }
        per_load.append(block)
    sustained = [r for r in rows if r["stock_sustained"]]
    collapsed = [r for r in rows if not r["stock_sustained"]]
    return {
        "goal_speedup": goal,
        "cells": rows,
        "per_seed": per_seed,
        "per_load": per_load,
        "where_stock_sustains": {
            "cells": len(sustained),
            "speedup_range": _range(r["speedup_mean"] for r in sustained),
            "stock_headroom_range": _range(r["stock_headroom"] for r in sustained),
            "cells_with_headroom_for_goal": sum(r["stock_headroom"] >= goal for r in sustained),
        },
        "where_stock_does_not": {
            "cells": len(collapsed),
            "speedup_range": _range(r["speedup_mean"] for r in collapsed),
            "plugin_sustained": sum(r["plugin_sustained"] for r in collapsed),
        },
    }


def _range(values: Any) -> list[float]:
    values = list(values)
    return [min(values), max(values)] if values else []


def plot(result: dict[str, Any], path: Path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for config, color in zip(PLUGIN_CONFIGS, ("tab:blue", "tab:green"), strict=True):
        mine = [r for r in result["cells"] if r["config"] == config]
        for sustained, marker, label in ((True, "o", "stock sustains"), (False, "x", "stock not sustained")):
            pts = [r for r in mine if r["stock_sustained"] == sustained]
            if pts:
                ax.scatter([r["programs_per_min"] + 0.6 * (r["seed"] - 1.5) for r in pts],
                           [r["speedup_mean"] for r in pts], marker=marker, color=color,
                           label=f"{config}: {label}")
    stock_ok = [r for r in result["cells"] if r["stock_sustained"] and r["config"] == "fixed_ttl"]
    if stock_ok:
        ax.scatter([r["programs_per_min"] + 0.6 * (r["seed"] - 1.5) for r in stock_ok],
                   [r["stock_headroom"] for r in stock_ok], marker="_", s=160, color="k",
                   label="stock / lower bound (most any scheduler could gain)")
    ax.axhline(result["goal_speedup"], color="tab:red", ls="--", lw=1, label=f"goal {result['goal_speedup']}x")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xlabel("offered load (programs / min); one point per seed")
    ax.set_ylabel("mean JCT speed-up over stock vLLM")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("summaries", type=Path, nargs="+", help="summary.json of each seed, in seed order")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--goal", type=float, default=1.5, help="Speed-up the issue asks for.")
    args = parser.parse_args(argv)
    summaries = [json.loads(p.read_text()) for p in args.summaries]
    loads = {tuple(e["programs_per_min"] for e in s["loads"]) for s in summaries}
    if len(loads) != 1:
        raise SystemExit(f"the runs have different loads: {sorted(loads)}")
    result = {"sources": [str(p) for p in args.summaries], **analyse(summaries, goal=args.goal)}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_json(args.out_dir / "seeds.json", result)
    plot(result, args.out_dir / "seeds.png")
    ok, bad = result["where_stock_sustains"], result["where_stock_does_not"]
    print(
        f"stock sustains {ok['cells']} cells: speed-up {ok['speedup_range']}, "
        f"stock/lower bound {ok['stock_headroom_range']}, "
        f"{ok['cells_with_headroom_for_goal']} with room for {args.goal}x"
    )
    print(
        f"stock does not sustain {bad['cells']} cells: speed-up {bad['speedup_range']}, "
        f"plugin sustained {bad['plugin_sustained']}"
    )
    for seed in result["per_seed"]:
        print(
            f"seed {seed['seed']}: highest load stock sustains {seed['highest_load_stock_sustains']}: "
            f"{seed['at_highest']}"
        )


if __name__ == "__main__":
    main()
