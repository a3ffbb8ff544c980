"""Plot routed accuracy and tokens per seed for the arms of a multi-seed comparison.

Reads one key of ``bench/results/priordynaflow/summary.json`` whose ``seeds_0_to_4`` maps each arm
to, per dataset, ``accuracy_pct`` and ``tokens_per_task`` (one value per run), and draws one panel
per dataset: every run as a dot (accuracy against tokens per task), each arm's mean as a cross::

    python bench/priordynaflow/seeds_plot.py --key issue22_methods12 \\
        --out bench/results/priordynaflow/issue22/methods12-ad4c842/retry_seeds.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import pyplot, save_figure  # noqa: E402

SUMMARY = ROOT / "bench/results/priordynaflow/summary.json"


def plot_seeds(arms: dict[str, dict[str, Any]], path: Path, *, title: str = "") -> Path:
    """One panel per dataset that any arm has: a dot per run, a cross at the arm's mean."""
    datasets = sorted({ds for arm in arms.values() for ds, v in arm.items() if isinstance(v, dict)})
    if not datasets:
        raise ValueError("no arm has per-dataset figures (accuracy_pct, tokens_per_task)")
    plt = pyplot()
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.2), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        for k, (arm, figures) in enumerate(arms.items()):
            if ds not in figures:
                continue
            acc, tok = figures[ds]["accuracy_pct"], figures[ds]["tokens_per_task"]
            color = f"C{k}"
            ax.scatter(tok, acc, color=color, alpha=0.6, label=f"{arm} ({len(acc)} runs)")
            ax.scatter([sum(tok) / len(tok)], [sum(acc) / len(acc)], color=color, marker="x", s=120)
        ax.set(title=f"{ds}: routed row per run (x: mean)", xlabel="tokens per task", ylabel="accuracy %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--summary", type=Path, default=SUMMARY)
    p.add_argument("--key", default="issue22_methods12", help="the summary key holding seeds_0_to_4")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    entry = json.loads(args.summary.read_text()).get(args.key)
    if not isinstance(entry, dict) or "seeds_0_to_4" not in entry:
        p.error(f"{args.summary}: key {args.key!r} has no seeds_0_to_4")
    print(plot_seeds(entry["seeds_0_to_4"], args.out, title=f"PriorDynaFlow code-check retries ({args.key})"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
