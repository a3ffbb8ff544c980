"""Budget integrity at scale: the randomized campaign of :mod:`bench.integrity.campaign` (issue 15)
on SQLite and PostgreSQL, audited from the database.

What is measured. On each database (a fresh SQLite file; an empty database on a PostgreSQL server,
``--postgres-url`` or one started here with the installed ``initdb``/``pg_ctl``), ``--runs`` runs of
``integrity_agent`` (``--concurrency`` at a time) with random limits over tokens, input and output
tokens, dollars and tool units on their own scope and on shared ones, on three honest backends
(scripted; loopback with ``/tokenize``; loopback without it, counting a token per UTF-8 byte) and a
misbehaving one that reports more than ``max_tokens`` allowed; meanwhile ``--processes`` OS
processes run ``--process-runs`` runs each, all charging one scope. The audit gives, per database:
runs, LLM and tool calls, limits set, the largest spent/limit per unit over accounts only honest
runs charge (a limit held: <= 1.0), reservations left, accounts whose spent disagrees with the
call records, and overrun events (0 on honest backends; on the misbehaving one, how many were
flagged: entry ``overrun`` and run ``paused``).

Output: ``<out>/summary.json`` (provenance, configuration, one audit per database, problems).
Exit code 1 when an audit breaks a promise of the ledger.

    .venv/bin/python bench/integrity/run.py                       # ~2 minutes on 2 cores
    .venv/bin/python bench/integrity/run.py --runs 60 --out /tmp/integrity   # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench.common lives in the checkout, not the installed package
    sys.path.insert(0, str(ROOT))

from bench.common import provenance, write_json
from bench.integrity import campaign
from bench.integrity.postgres import create_database, temporary_server

OUT = ROOT / "bench" / "results" / "integrity"


async def one_database(db_url: str, home: Path, args: argparse.Namespace, progress: Any,
                       label: str) -> dict[str, Any]:
    """The campaign on one empty database, then its audit (with the wall time)."""
    started = time.perf_counter()
    bar = progress.add_task(f"{label:<9} runs", total=args.runs)
    async with campaign.runtime(db_url, home) as rt:  # schema and checkpoint tables before the workers
        workers = campaign.run_processes(db_url, args.seed, args.processes, args.process_runs)
        with campaign.backends() as backends:
            plans = campaign.plan_runs(args.seed, args.runs, misbehaving_share=args.misbehaving_share)
            outcomes = await campaign.run_plans(rt, plans, backends, concurrency=args.concurrency,
                                                on_done=lambda: progress.advance(bar))
        outcomes.update(await asyncio.to_thread(campaign.wait_processes, workers))
        summary = await campaign.audit(rt)
    return {**summary, "run_outcomes": dict(sorted(outcomes.items())),
            "wall_s": round(time.perf_counter() - started, 1)}


async def campaigns(args: argparse.Namespace, home: Path) -> dict[str, dict[str, Any]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    results: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        progress = stack.enter_context(Progress(TextColumn("{task.description}"), BarColumn(),
                                                MofNCompleteColumn(), TimeElapsedColumn()))
        for db in args.dbs.split(","):
            if db == "sqlite":
                url = f"sqlite:///{home / 'integrity.db'}"
            else:
                server = args.postgres_url.rstrip("/") or stack.enter_context(temporary_server())
                url = create_database(server, f"qf_integrity_{int(time.time())}")
            results[db] = await one_database(url, home / db, args, progress, db)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs in this process, per database")
    parser.add_argument("--processes", type=int, default=2, help="OS processes charging one shared scope")
    parser.add_argument("--process-runs", type=int, default=50, help="runs per extra process")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--misbehaving-share", type=float, default=0.2, help="share of runs on the oversized server")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--dbs", default="sqlite,postgres")
    parser.add_argument("--postgres-url", default="",
                        help="a server the bench may create a database on, without a database name, e.g. "
                             "postgresql://postgres@127.0.0.1:5432 (default: start one with initdb/pg_ctl)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--commit", default="", help="the commit measured, for a copy of the tree without .git "
                                                     "(default: this checkout's HEAD)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as home:
        results = asyncio.run(campaigns(args, Path(home)))
    problems = {db: campaign.check(summary) for db, summary in results.items()}
    config = {k: getattr(args, k) for k in ("runs", "processes", "process_runs", "concurrency", "misbehaving_share",
                                            "seed")}
    payload = {**provenance(commit=args.commit), "config": config, "databases": results, "problems": problems}
    path = write_json(args.out / "summary.json", payload)
    for db, summary in results.items():
        events = summary["overrun_events"]
        print(f"{db}: {summary['runs']} runs, {summary['llm_calls']} LLM + {summary['tool_calls']} tool calls, "
              f"{summary['limits']} limits; max spent/limit {max(summary['max_spent_over_limit'].values()):.4f}; "
              f"overruns honest {events['honest']}, misbehaving {events['misbehaving']} "
              f"(flagged {events['flagged']}); problems: {problems[db] or 'none'}")
    print(f"wrote {path}")
    return 1 if any(problems.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
