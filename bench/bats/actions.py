"""What the agents did, cell by cell, from a BATS benchmark details file (CPU, seconds).

Reads the ``runs`` of ``details*.json`` (or ``.json.gz``) written by ``bench/bats/run.py`` since
each run keeps its agent's actions (``actions``: values by kind over all attempts) and counts the
actions that copied the worked example (``num_example_copies``), and prints per method and budget:
runs, exact matches, how the runs stopped, how many ran a query twice, how many searched the
question's own text, how many copied the example, and the mean searches and pages per run::

    python bench/bats/actions.py bench/results/bats/issue22/guard-C/details-qwen2.5-coder-0.5b.json.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: bench.bats.run lives in the checkout
    sys.path.insert(0, str(ROOT))


def load_runs(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        data = json.load(f)
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, list):
        raise SystemExit(f"{path}: no 'runs' list (a details file of bench/bats/run.py?)")
    return runs


def _norm(text: str) -> str:
    return " ".join(str(text).lower().split())


def cell_report(runs: list[dict[str, Any]], questions: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per (method, budget): methods in the order they first appear, budgets ascending."""
    cells: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in runs:
        cells.setdefault((run["method"], int(run["budget"])), []).append(run)
    methods = list(dict.fromkeys(m for m, _ in cells))
    rows = []
    for (method, budget), rs in sorted(cells.items(), key=lambda kv: (methods.index(kv[0][0]), kv[0][1])):
        searches = [r.get("actions", {}).get("search", []) for r in rs]
        rows.append({
            "method": method,
            "budget": budget,
            "runs": len(rs),
            "em": sum(float(r.get("em", 0.0)) for r in rs),
            "stops": dict(Counter(r.get("stop", "") for r in rs)),
            "with_actions": sum(1 for r in rs if r.get("actions")),
            "repeated_query": sum(1 for s in searches if len({_norm(q) for q in s}) < len(s)),
            "searched_question": sum(
                1 for r, s in zip(rs, searches, strict=True)
                if questions and _norm(questions.get(r["qid"], "\0")) in {_norm(q) for q in s}
            ),
            "example_copies": sum(1 for r in rs if r.get("num_example_copies", 0)),
            "searches_per_run": sum(len(s) for s in searches) / len(rs),
            "pages_per_run": sum(len(r.get("actions", {}).get("browse", [])) for r in rs) / len(rs),
        })
    return rows


def _questions(dataset: Path | None) -> dict[str, str]:
    """Question text by the id the benchmark gave each row (bench/bats/run.py's own reader)."""
    if dataset is None:
        return {}
    from bench.bats.run import load_questions

    return {q["id"]: q["question"] for q in load_questions(dataset, None)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("details", type=Path, help="details*.json or .json.gz of bench/bats/run.py")
    ap.add_argument("--dataset", type=Path, default=None,
                    help="the HotpotQA jsonl the run used (for 'searched the question')")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    rows = cell_report(load_runs(args.details), _questions(args.dataset))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if rows and not any(r["with_actions"] for r in rows):
        print("note: these runs carry no actions (written before the bench kept them)", file=sys.stderr)
    print(f"{'method':>8} {'b':>3} {'runs':>5} {'EM':>4} {'repeat':>6} {'q-copy':>6} {'ex-copy':>7} "
          f"{'search':>6} {'pages':>5}  stops")
    for r in rows:
        stops = ", ".join(f"{k} {v}" for k, v in sorted(r["stops"].items()))
        print(f"{r['method']:>8} {r['budget']:>3} {r['runs']:>5} {r['em']:>4.0f} {r['repeated_query']:>6} "
              f"{r['searched_question']:>6} {r['example_copies']:>7} {r['searches_per_run']:>6.2f} "
              f"{r['pages_per_run']:>5.2f}  {stops}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
