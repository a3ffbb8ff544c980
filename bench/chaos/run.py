"""Crash and resume at scale: the chaos campaign of :mod:`bench.chaos.campaign` (issue 16) over
every case of :mod:`bench.chaos.cases`, both backends and both databases.

What is measured. For each workflow (react, bats, priordynaflow, batchprompt, drqa, an SDK
workflow with four parallel tool+LLM branches, an SDK workflow whose initial state is {}), each
backend (the scripted LLM; the kit's loopback OpenAI server) and each database (a fresh SQLite
file; a fresh database on a PostgreSQL server, ``--postgres-url`` or one started here with the
installed ``initdb``/``pg_ctl``): ``--kills`` runs SIGKILLed at seeded random requests, and as many
as LangGraph saves a seeded random checkpoint (``--at``), resumed, and compared with the
uninterrupted run (result, state, trajectory, call records, charges).

    python bench/chaos/run.py                      # 20 kills each, sqlite and postgres
    python bench/chaos/run.py --kills 5 --dbs sqlite --workflows react,bats

Output: ``<out>/summary.json`` (provenance, configuration, per workflow/db/backend: kills,
identical, double charges, divergences, re-sent requests, failures; totals).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench.common lives in the checkout, not the installed package
    sys.path.insert(0, str(ROOT))

from bench.chaos import campaign
from bench.chaos.cases import load_cases
from bench.common import provenance, write_json
from bench.integrity.postgres import create_database, temporary_server

OUT = ROOT / "bench" / "results" / "chaos"
_names = itertools.count()


async def one(name: str, backend: str, at: str, db: str, server: str, home: Path, args: argparse.Namespace,
              slots: asyncio.Semaphore) -> dict[str, Any]:
    def new_db(label: str) -> str:
        if db == "sqlite":
            return f"sqlite:///{home / f'{name}-{backend}-{at}-{label}'}.db"
        return create_database(server, f"qfchaos_{os.getpid()}_{next(_names)}")

    async with slots:
        started = time.perf_counter()
        summary = await campaign.campaign(name, backend, new_db, home, seed=args.seed, num_kills=args.kills, at=at)
        summary["wall_s"] = round(time.perf_counter() - started, 1)
    print(f"{name:<18} {db:<8} {backend:<8} at {at:<10} kills={summary['kills']} identical={summary['identical']} "
          f"double={summary['double_charges']} diverged={summary['divergences']} "
          f"resent={summary['resent_requests']}", flush=True)
    return summary


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    names = args.workflows.split(",") if args.workflows else list(load_cases())
    results: dict[str, Any] = {}
    with ExitStack() as stack:
        server = ""
        if "postgres" in args.dbs:
            server = args.postgres_url.rstrip("/") or stack.enter_context(temporary_server())
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="qf-chaos-")))
        slots = asyncio.Semaphore(args.concurrency)
        combos = [(n, b, a, d) for n in names for d in args.dbs.split(",") for b in args.backends.split(",")
                  for a in args.at.split(",")]

        async def cell(n: str, b: str, a: str, d: str) -> None:
            # Kills at requests under the backend's name (as before checkpoints were a kill point).
            label = b if a == "request" else f"{b}@{a}"
            results.setdefault(n, {}).setdefault(d, {})[label] = await one(n, b, a, d, server, home, args, slots)
            write(args, results, complete=False)  # what is done so far survives an interrupted run

        await asyncio.gather(*(cell(n, b, a, d) for n, b, a, d in combos))
    return results


def write(args: argparse.Namespace, results: dict[str, Any], *, complete: bool, wall_s: float = 0.0) -> Path:
    config = {k: getattr(args, k) for k in ("kills", "seed", "dbs", "backends", "at", "workflows", "concurrency",
                                            "note")}
    payload = {**provenance(commit=args.commit), "config": config, "complete": complete, "totals": totals(results),
               "wall_s": wall_s, "results": results}
    return write_json(args.out / "summary.json", payload)


def totals(results: dict[str, Any]) -> dict[str, int]:
    cells = [s for by_db in results.values() for by_backend in by_db.values() for s in by_backend.values()]
    keys = ("trials", "kills", "identical", "double_charges", "divergences", "resent_requests")
    return {k: sum(c[k] for c in cells) for k in keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="kills per workflow, database and backend")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--dbs", default="sqlite,postgres")
    parser.add_argument("--backends", default=",".join(campaign.BACKENDS))
    parser.add_argument("--at", default=",".join(campaign.KILL_AT),
                        help="where kills land: request (while the provider answers) and/or checkpoint")
    parser.add_argument("--workflows", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="campaigns at once (schema set-up of fresh SQLite files in one process races above 1)")
    parser.add_argument("--postgres-url", default="",
                        help="postgresql://postgres@127.0.0.1:5432 (default: start one with initdb/pg_ctl)")
    parser.add_argument("--commit", default="", help="commit to record when the tree has no .git")
    parser.add_argument("--note", default="", help="recorded as is (e.g. why a run was reduced)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = asyncio.run(main_async(args))
    path = write(args, results, complete=True, wall_s=round(time.perf_counter() - started, 1))
    print(f"wrote {path}: {totals(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
