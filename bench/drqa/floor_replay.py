"""Replay DRQA's 'easiest_first' waves over a finished run's per-question lengths: what a
``min_quota_tokens`` floor would do at a given budget, with no model (CPU, seconds).

Each question's "natural" working is the unlimited row's (its solve tokens and whether it was
right). A question given quota q writes ``q - answer_reserve(q)`` tokens at most: if its natural
working fits it spends that and is scored as unlimited scored it; otherwise it spends the whole
quota and is counted wrong (forced answers after a cut were right for 10 of 225 questions in the
3be667f uniform row, so this errs slightly against short quotas). Questions are funded in the
order of a drqa row's difficulty, in waves, by the workflow's own allocation
(:func:`workflows.drqa.quota.plan.solve_quotas`); the probe's spend is taken off first.
Not a measurement: it checks whether a floor can pay on this model's lengths::

    python bench/drqa/floor_replay.py bench/results/drqa/issue22/size-3be667f/details.json.gz \\
        --order drqa:difficulty_signal=size --floors 0,64,96,128 --fractions 0.5,0.75
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def replay(natural: list[int], right: list[bool], difficulty: list[float], total: int,
           min_quota: int, ceiling: int = 512) -> dict[str, Any]:
    """Waves until one funds nobody: right answers, tokens spent, questions never funded, waves."""
    from workflows.drqa.quota.allocation import AllocationConfig
    from workflows.drqa.quota.plan import QuotaConfig, answer_reserve, policy_for, solve_quotas

    config = QuotaConfig(min_quota_tokens=min_quota, allocation=AllocationConfig(ceiling_tokens=ceiling))
    n = len(natural)
    quotas, ok = [0] * n, [False] * n
    spent = waves = 0
    while True:
        wave = solve_quotas(policy_for("drqa"), difficulty, [False] * n, total - spent, config,
                            funded=[q > 0 for q in quotas])
        if not any(wave):
            break
        waves += 1
        for i, q in enumerate(wave):
            if q:
                quotas[i] = q
                fits = natural[i] <= q - answer_reserve(q, config)
                spent += natural[i] if fits else q
                ok[i] = fits and right[i]
    return {"right": ok, "spent": spent, "unfunded": quotas.count(0), "waves": waves}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("details", help="a bench/drqa details.json (or .json.gz) with an unlimited row")
    p.add_argument("--order", default="", help="the variant (or '' for the default drqa) whose difficulty orders "
                                               "the questions")
    p.add_argument("--floors", default="0,64,96,128")
    p.add_argument("--fractions", default="0.5,0.75")
    p.add_argument("--base-tokens", type=int, default=0,
                   help="budgets are fractions of this (0: the unlimited row's tokens)")
    p.add_argument("--probe-fraction", type=float, default=0.2,
                   help="the probe's share of the budget taken off first (the bench's --max-probe-fraction)")
    p.add_argument("--design-rows", type=int, default=100)
    args = p.parse_args(argv)
    path = Path(args.details)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        details = json.load(f)
    rows = [e for e in details["allocation"] if e["dataset"] == "gsm8k"]
    unlimited = next(e for e in rows if e["method"] == "unlimited" and not e["variant"])
    ordered = next(e for e in rows if e["method"] == "drqa" and e["variant"] == args.order)
    ids = [it["id"] for it in unlimited["items"]]
    by_id = {it["id"]: it for it in ordered["items"]}
    natural = [it["solve_tokens"] for it in unlimited["items"]]
    right = [bool(it["correct"]) for it in unlimited["items"]]
    difficulty = [float(by_id[i]["difficulty"]) for i in ids]
    held_out = [k >= args.design_rows for k in range(len(ids))]
    base = args.base_tokens or unlimited["reasoning_tokens"]
    for frac in (float(x) for x in args.fractions.split(",")):
        budget = int(base * frac)
        total = budget - int(budget * args.probe_fraction)
        for floor in (int(x) for x in args.floors.split(",")):
            out = replay(natural, right, difficulty, total, floor)
            ho = sum(1 for ok, h in zip(out["right"], held_out, strict=True) if ok and h)
            print(f"fraction {frac} (budget {budget}, solve {total}) min_quota_tokens {floor:4}: "
                  f"right {sum(out['right'])}/{len(ids)}, held out {ho}/{sum(held_out)}, spent {out['spent']}, "
                  f"unfunded {out['unfunded']}, waves {out['waves']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
