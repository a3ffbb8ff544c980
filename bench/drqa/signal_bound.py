"""How good must a difficulty signal be for DRQA to save 25% at equal accuracy? (no server, no GPU)

Reads the per-item records of allocation runs (``details.json.gz`` with the reference row
``unlimited:unlimited_max_tokens=512``, i.e. unlimited capped at the quota ceiling) and asks two
questions of each run's capped chains, the ones a quota can cut or skip:

1. **The size signal with hindsight.** Fund questions in the order DRQA's default signal ranks
   them (easiest first by the question's size, the run's ``difficulty``), each with its capped
   chain as it actually ran (or cut at a flat per-question cap ``L``), until the token target
   (``--share`` of the capped run's tokens) is spent. Knowing each chain's length in advance makes
   this an upper bound for any allocation that orders by that signal.
2. **A signal of a given quality.** Replace the ranking by a synthetic score, ``correct * d +
   N(0, 1)`` (its ROC AUC for telling right from wrong chains is ``Phi(d / sqrt 2)``), and fund
   the top-ranked chains the same way: the mean change in right answers against the capped run,
   per AUC, over ``--draws`` draws and every run.

Usage::

    python bench/drqa/signal_bound.py 'bench/results/drqa/issue22/*/details.json.gz'

Writes ``bench/results/drqa/issue22/signal-bound/signal-bound.json`` and ``signal-bound.png``.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import provenance, pyplot, save_figure, write_json  # noqa: E402

CAPPED = "unlimited:unlimited_max_tokens=512"


def funded_right(order: list[int], tokens: list[int], right: list[bool], budget: float) -> int:
    """Right answers among the chains funded in ``order`` until ``budget`` tokens are spent."""
    spent, count = 0, 0
    for i in order:
        if spent + tokens[i] > budget:
            break
        spent += tokens[i]
        count += right[i]
    return count


def size_bound(tokens: list[int], right: list[bool], difficulty: list[float], share: float,
               caps: list[int]) -> dict[str, int]:
    """Right answers of the size-ordered, hindsight allocation at each flat cap."""
    order = sorted(range(len(tokens)), key=lambda i: difficulty[i])
    budget = share * sum(tokens)
    return {str(cap): funded_right(order, [min(t, cap) for t in tokens],
                                   [r and t <= cap for r, t in zip(right, tokens, strict=True)], budget)
            for cap in caps}


def synthetic_curve(runs: list[dict[str, Any]], share: float, draws: int, seed: int) -> list[dict[str, float]]:
    """Mean change in right answers against the capped run, per synthetic signal AUC."""
    import numpy as np

    rng = np.random.default_rng(seed)
    curve = []
    for step in range(13):
        d = 0.25 * step
        changes = []
        for run in runs:
            tokens, right = run["tokens"], run["right"]
            budget = share * sum(tokens)
            for _ in range(draws):
                order = np.argsort(-(np.array(right) * d + rng.normal(size=len(right))))
                changes.append(funded_right(order.tolist(), tokens, right, budget) - sum(right))
        curve.append({"auc": round(0.5 * (1 + math.erf(d / 2)), 3), "mean_change": round(float(np.mean(changes)), 2),
                      "p10_change": float(np.percentile(changes, 10)), "p90_change": float(np.percentile(changes, 90))})
    return curve


def load_runs(pattern: str) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(glob.glob(pattern)):
        with gzip.open(path) as fh:
            rows = json.load(fh)["allocation"]
        capped = [r for r in rows if r["method"] == "unlimited" and r["variant"] == CAPPED]
        drqa = [r for r in rows if r["method"] == "drqa" and not r["variant"]]
        if not capped or not drqa:
            continue
        difficulty = {it["id"]: it["difficulty"] for it in drqa[0]["items"]}
        items = capped[0]["items"]
        resolved = Path(path).resolve()
        runs.append({"file": str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path,
                     "tokens": [int(it["solve_tokens"]) for it in items],
                     "right": [bool(it["correct"]) for it in items],
                     "difficulty": [float(difficulty[it["id"]]) for it in items]})
    return runs


def plot(curve: list[dict[str, float]], measured: list[tuple[str, float]], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot([c["auc"] for c in curve], [c["mean_change"] for c in curve], marker="o", label="synthetic signal (mean)")
    ax.fill_between([c["auc"] for c in curve], [c["p10_change"] for c in curve], [c["p90_change"] for c in curve],
                    alpha=0.2, label="10th-90th percentile")
    for name, auc in measured:
        ax.axvline(auc, linestyle="--", linewidth=1, color="grey")
        ax.text(auc, ax.get_ylim()[0], f" {name}", rotation=90, va="bottom", fontsize=7)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("ROC AUC of the signal for a right chain")
    ax.set_ylabel("right answers vs the capped run")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("pattern", help="glob of details.json.gz files")
    p.add_argument("--share", type=float, default=0.75, help="token target as a share of the capped run's")
    p.add_argument("--caps", type=lambda s: [int(x) for x in s.split(",")], default=[300, 350, 400, 450, 512])
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--measured-auc", default="size (12 repeats):0.72,size (design split):0.85,probe logprob:0.70",
                   help="name:auc pairs drawn on the plot (measured AUCs, NOTEBOOK §14, §19, §22)")
    p.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results" / "drqa" / "issue22" / "signal-bound")
    args = p.parse_args(argv)
    runs = load_runs(args.pattern)
    if not runs:
        raise SystemExit(f"no allocation run with a {CAPPED!r} row matches {args.pattern!r}")
    per_run = [{"file": r["file"], "capped_right": sum(r["right"]), "capped_tokens": sum(r["tokens"]),
                "size_order_right": size_bound(r["tokens"], r["right"], r["difficulty"], args.share, args.caps)}
               for r in runs]
    curve = synthetic_curve(runs, args.share, args.draws, args.seed)
    pairs = (pair.rsplit(":", 1) for pair in args.measured_auc.split(",") if pair)
    measured = [(name, float(auc)) for name, auc in pairs]
    write_json(args.out_dir / "signal-bound.json", {**provenance(), "args": {k: str(v) for k, v in vars(args).items()},
                                                   "runs": per_run, "synthetic": curve})
    plot(curve, measured, args.out_dir / "signal-bound.png")
    for r in per_run:
        print(f"{r['file']}: capped {r['capped_right']} right; size order at {args.share:.0%}: {r['size_order_right']}")
    for c in curve:
        spread = f"p10 {c['p10_change']:+.0f}, p90 {c['p90_change']:+.0f}"
        print(f"AUC {c['auc']:.2f}: {c['mean_change']:+.2f} right ({spread})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
