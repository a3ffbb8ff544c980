"""Programs per second on Ray workers (1 and 2) against the local executor, on PostgreSQL.

What is measured. The kit's loopback OpenAI-compatible server (its own process, the instant
canned reply of ``bench/orchestrator/responder.py``) plays the model; the workflow is the
overhead bench's ``bench_turns`` (one ``ctx.chat`` per graph step, ``--turns`` turns, under a
token and dollar budget: one turn = graph step + ledger reserve + HTTP call + ledger settle and
call record + checkpoint). Every phase runs on a fresh database of one PostgreSQL server
(``--postgres-url``, else a temporary one) and a local Ray cluster this script starts
(``--cpus`` logical CPUs, no dashboard). Phases:

- **throughput**: ``--programs`` programs, ``--concurrency`` in flight per worker, on the local
  executor (this process), then on Ray with 1 worker and with 2 workers (after ``--warmup``
  programs on the same workers, not counted). Programs per second = programs / wall time.
- **overhead**: ``--sequential`` programs one after another (concurrency 1) on the local executor
  and on 1 Ray worker: the per-program latency, and the Ray path's extra cost per program.
- **database**: PostgreSQL's own counters (``pg_stat_database``, read once the runtime's
  connections closed): transactions committed and rows written (inserted + updated + deleted) per
  turn and per program besides its turns (40 programs of 1 turn, then of ``2 * --turns``: a line);
  the peak of connections open to a throughput phase's database (``pg_stat_activity``, sampled
  every 0.1 s) per worker; CPU per turn by part of the system (the workers, the driver,
  PostgreSQL, the model server, Ray's daemons, the rest of the machine).

Outputs under ``--out`` (default ``bench/results/distributed``): ``summary.json`` (with
provenance and the multi-host bounds derived from these numbers) and ``throughput.png``.

    .venv/bin/python bench/distributed/run.py            # ~3 minutes on 2 cores
    .venv/bin/python bench/distributed/run.py --quick    # smoke run, writes under <out>/quick
    .venv/bin/python bench/distributed/run.py --durable --out bench/results/distributed/durable
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench.common lives in the checkout, not the installed package
    sys.path.insert(0, str(ROOT))

from bench.common import provenance, pyplot, save_figure, write_json
from bench.integrity.postgres import create_database, temporary_server
from bench.orchestrator.run import BENCH_WORKFLOW, BUDGET, MODEL, QUESTION, start_fake_server
from orchestrator.executors import Executor
from orchestrator.executors.ray_executor import RayExecutor
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from orchestrator.store.db import Store

OUT = ROOT / "bench" / "results" / "distributed"
SERVER_SETTINGS = {False: ("synchronous_commit=off",), True: ()}
"""The temporary server's settings: by default a commit does not wait for its WAL flush (crash-safe,
but an OS crash may lose the last commits), so that the phases measure the runtime, not this disk."""
TARGET_SPEEDUP = 1.6
"""What 2 workers must reach over 1 on the 2-core machine (issue 19)."""


@dataclass(frozen=True)
class Config:
    programs: int
    """Programs of a throughput phase."""
    turns: int
    """LLM turns per program."""
    concurrency: int
    """Programs in flight per worker (and in the local executor)."""
    warmup: int
    """Programs run on fresh Ray workers before a phase is timed."""
    sequential: int
    """Programs of the overhead phase (one at a time)."""
    cpus: int
    """Logical CPUs of the local Ray cluster."""


class CpuMeter:
    """CPU seconds used, by part of the system: the processes that run programs (the driver for
    the local executor, else the Ray workers), the driver, PostgreSQL (the postmaster listening on
    ``pg_port`` and its backends), the fake model server, Ray's own processes (the driver's other
    descendants) and the rest of the machine (other users of a shared machine). Counted per process
    alive at the end (a process that exits in between takes its time with it)."""

    def __init__(self, server_pid: int, worker_pids: list[int], pg_port: int) -> None:
        self.server_pid, self.worker_pids, self.pg_port = server_pid, worker_pids, pg_port

    def _groups(self) -> dict[int, str]:
        import psutil

        me = psutil.Process()
        groups = {p.pid: "ray_daemons" for p in me.children(recursive=True)}
        groups.update({me.pid: "driver" if self.worker_pids else "programs", self.server_pid: "model_server"})
        groups.update({pid: "programs" for pid in self.worker_pids})
        for proc in psutil.process_iter(["name", "cmdline"]):
            if (proc.info["name"] or "").startswith("postgres") and f"-p {self.pg_port}" in " ".join(
                    proc.info["cmdline"] or []):
                groups.update({c.pid: "postgres" for c in [proc, *proc.children()]})
        return groups

    def read(self) -> dict[tuple[str, int], float]:
        """CPU seconds so far of each process of a group, by (group, pid); ("machine", 0): all CPUs' busy time."""
        import psutil

        used: dict[tuple[str, int], float] = {}
        for pid, group in self._groups().items():
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                used[(group, pid)] = times.user + times.system
        machine = psutil.cpu_times()
        used[("machine", 0)] = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return used

    @staticmethod
    def per_turn_ms(before: dict[tuple[str, int], float], after: dict[tuple[str, int], float],
                    turns: int) -> dict[str, float]:
        out = dict.fromkeys(("programs", "driver", "postgres", "model_server", "ray_daemons"), 0.0)
        for (group, pid), seconds in after.items():
            if group != "machine":
                out[group] += seconds - before.get((group, pid), 0.0)
        out["rest_of_machine"] = after[("machine", 0)] - before[("machine", 0)] - sum(out.values())
        return {k: round(v * 1000 / turns, 2) for k, v in out.items()}


class PgCounters:
    """PostgreSQL's counters of one database: committed transactions, rows written, and the peak
    number of connections open to it while :meth:`sampling` runs."""

    def __init__(self, server_url: str, db: str) -> None:
        self.server_url, self.db = server_url, db
        self.peak_connections = 0

    def read(self) -> dict[str, int]:
        import psycopg

        with psycopg.connect(f"{self.server_url}/postgres", autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute("SELECT xact_commit, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database "
                               "WHERE datname = %s", (self.db,)).fetchone()
        assert row is not None
        return {"commits": int(row[0]), "rows_written": int(row[1])}

    def settled(self, timeout_s: float = 15.0) -> dict[str, int]:
        """The counters once they stop moving (closed connections report theirs as they exit)."""
        deadline, last = time.monotonic() + timeout_s, self.read()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.read()
            if now == last:
                break
            last = now
        return last

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        import psycopg

        stop = threading.Event()

        def sample() -> None:
            with psycopg.connect(f"{self.server_url}/postgres", autocommit=True) as conn:
                while not stop.wait(0.1):
                    n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                     (self.db,)).fetchone()
                    self.peak_connections = max(self.peak_connections, int(n[0]) if n else 0)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


async def _programs(rt: Runtime, base_url: str, cfg: Config, count: int, concurrency: int,
                    executor: Executor | None) -> tuple[float, list[float]]:
    """Wall time of ``count`` programs and, one at a time, each program's latency."""
    started: list[float] = []
    latencies: list[float] = []
    kwargs: dict[str, Any] = {"budget": BUDGET, "backend": "openai", "tools": [], "options": {"turns": cfg.turns},
                              "backend_options": {"base_urls": [base_url], "model": MODEL}}
    t0 = time.perf_counter()
    if concurrency == 1:  # one after another: each run's own latency
        for _ in range(count):
            started.append(time.perf_counter())
            results = await rt.run_many(BENCH_WORKFLOW, [{"question": QUESTION}], concurrency=1, executor=executor,
                                        **kwargs)
            latencies.append(time.perf_counter() - started[-1])
            _check(results, cfg)
    else:
        _check(await rt.run_many(BENCH_WORKFLOW, [{"question": QUESTION}] * count, concurrency=concurrency,
                                 executor=executor, **kwargs), cfg)
    return time.perf_counter() - t0, latencies


def _check(results: list[Any], cfg: Config) -> None:
    bad = [r for r in results if r.status != "succeeded" or (r.result or {}).get("turns") != cfg.turns]
    if bad:
        raise RuntimeError(f"{len(bad)} program(s) did not succeed: {bad[0]}")


async def _phase(server_url: str, base_url: str, server_pid: int, cfg: Config, name: str,
                 workers: int | None) -> dict[str, Any]:
    """One throughput phase on a fresh database: ``workers`` Ray workers, or None for local."""
    db = f"dist_{name}_{os.getpid()}"
    url = create_database(server_url, db)
    await Store(url).ensure_schema()  # migrations outside the timed part
    counters = PgCounters(server_url, db)
    rt = Runtime(Settings(db_url=url))
    executor = RayExecutor(num_workers=workers, max_retries=0) if workers else None
    try:
        if executor is not None:
            await executor.start(rt)
        await _programs(rt, base_url, cfg, cfg.warmup, cfg.concurrency * (workers or 1), executor)
        pg_port = int(server_url.rsplit(":", 1)[1])
        cpu = CpuMeter(server_pid, [w["pid"] for w in getattr(executor, "workers", [])], pg_port)
        cpu_before = cpu.read()
        with counters.sampling():
            wall, _ = await _programs(rt, base_url, cfg, cfg.programs, cfg.concurrency, executor)
        cpu_after = cpu.read()
    finally:
        if executor is not None:
            await executor.aclose()
        await rt.aclose()
    turns = cfg.programs * cfg.turns
    return {"executor": "ray" if workers else "local", "workers": workers or 1, "programs": cfg.programs,
            "turns": turns, "wall_s": round(wall, 3), "programs_per_s": round(cfg.programs / wall, 2),
            "turns_per_s": round(turns / wall, 1),
            "peak_connections": counters.peak_connections,
            "peak_connections_per_worker": round(counters.peak_connections / (workers or 1), 1),
            "cpu_ms_per_turn": CpuMeter.per_turn_ms(cpu_before, cpu_after, turns)}


async def _db_writes(server_url: str, base_url: str, cfg: Config) -> dict[str, Any]:
    """Database writes of a turn and of a program's set-up and end, apart: the same programs with 1
    and with ``2 * turns`` turns (local executor), PostgreSQL's counters after each, a straight line."""
    url = create_database(server_url, f"dist_writes_{os.getpid()}")
    await Store(url).ensure_schema()
    counters = PgCounters(server_url, url.rsplit("/", 1)[1])
    count, points = 40, {}
    for turns in (1, 2 * cfg.turns):
        before = counters.settled()
        rt = Runtime(Settings(db_url=url))
        try:
            await _programs(rt, base_url, replace(cfg, turns=turns), count, 8, None)
        finally:
            await rt.aclose()  # its connections close: their backends report their statistics
        after = counters.settled()
        points[turns] = {k: (after[k] - before[k]) / count for k in after}
    long, short = points[2 * cfg.turns], points[1]
    per_turn = {k: (long[k] - short[k]) / (2 * cfg.turns - 1) for k in long}
    return {"programs": count, "turns": sorted(points),
            "commits_per_turn": round(per_turn["commits"], 2),
            "rows_written_per_turn": round(per_turn["rows_written"], 2),
            "commits_per_program_besides_turns": round(short["commits"] - per_turn["commits"], 2),
            "rows_written_per_program_besides_turns": round(short["rows_written"] - per_turn["rows_written"], 2)}


async def _overhead(server_url: str, base_url: str, cfg: Config) -> dict[str, Any]:
    """Per-program latency, one program at a time, local vs 1 Ray worker."""
    url = create_database(server_url, f"dist_overhead_{os.getpid()}")
    await Store(url).ensure_schema()
    rt = Runtime(Settings(db_url=url))
    executor = RayExecutor(num_workers=1, max_retries=0)
    try:
        await _programs(rt, base_url, cfg, 5, 1, None)  # warm: clients, checkpointer, compiled graphs
        _, local = await _programs(rt, base_url, cfg, cfg.sequential, 1, None)
        await executor.start(rt)
        await _programs(rt, base_url, cfg, 5, 1, executor)
        _, on_ray = await _programs(rt, base_url, cfg, cfg.sequential, 1, executor)
    finally:
        await executor.aclose()
        await rt.aclose()
    ms = {k: statistics.median(v) * 1000 for k, v in (("local", local), ("ray", on_ray))}
    return {"programs": cfg.sequential, "turns_per_program": cfg.turns,
            "local_ms_p50": round(ms["local"], 2), "ray_ms_p50": round(ms["ray"], 2),
            "ray_overhead_ms_per_program": round(ms["ray"] - ms["local"], 2),
            "local_ms_mean": round(statistics.fmean(local) * 1000, 2),
            "ray_ms_mean": round(statistics.fmean(on_ray) * 1000, 2)}


def _plan(phases: dict[str, dict[str, Any]], writes: dict[str, Any]) -> dict[str, Any]:
    """The numbers that bound a multi-host layout, from this run (see README, "Past one machine")."""
    two = phases["ray_2"]
    pool_bound = 2 * (20 + 20) + 20  # Store: async + sync engines (pool 20, overflow 20); checkpointer pool 20
    turns_per_s = two["turns_per_s"] / 2
    return {
        "commits_per_turn": writes["commits_per_turn"],
        "rows_written_per_turn": writes["rows_written_per_turn"],
        "commits_per_program_besides_turns": writes["commits_per_program_besides_turns"],
        "turns_per_s_per_worker": round(turns_per_s, 1),
        "db_commits_per_s_per_worker": round(turns_per_s * (writes["commits_per_turn"] + writes[
            "commits_per_program_besides_turns"] / two["turns"] * two["programs"]), 1),
        "worker_cpu_ms_per_turn": two["cpu_ms_per_turn"]["programs"],
        "postgres_cpu_ms_per_turn": two["cpu_ms_per_turn"]["postgres"],
        "peak_connections_per_worker_measured": two["peak_connections_per_worker"],
        "max_connections_per_worker_configured": pool_bound,
    }


def _plot(phases: dict[str, dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = list(phases)
    ax.bar(names, [phases[n]["programs_per_s"] for n in names], color=["#888", "#4a7", "#27a"])
    ax.set_ylabel("programs / s")
    ax.set_title("bench_turns on PostgreSQL: local vs Ray workers")
    save_figure(fig, path)


async def bench(server_url: str, base_url: str, server_pid: int, cfg: Config) -> dict[str, Any]:
    phases = {"local": await _phase(server_url, base_url, server_pid, cfg, "local", None),
              "ray_1": await _phase(server_url, base_url, server_pid, cfg, "ray1", 1),
              "ray_2": await _phase(server_url, base_url, server_pid, cfg, "ray2", 2)}
    speedup = phases["ray_2"]["programs_per_s"] / phases["ray_1"]["programs_per_s"]
    writes = await _db_writes(server_url, base_url, cfg)
    return {"throughput": phases, "speedup_2_over_1": round(speedup, 2), "target_speedup": TARGET_SPEEDUP,
            "meets_target": speedup >= TARGET_SPEEDUP, "overhead": await _overhead(server_url, base_url, cfg),
            "database_writes": writes, "multi_host_bounds": _plan(phases, writes)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=240)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=32)
    parser.add_argument("--sequential", type=int, default=40)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--postgres-url", default=None, help="postgresql://user@host:port (a server; default: a "
                        "temporary one)")
    parser.add_argument("--durable", action="store_true", help="the temporary server with its default commit "
                        "durability (each commit waits for its WAL flush: the disk's flush rate bounds the phases)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few programs")
    args = parser.parse_args(argv)
    cfg = Config(args.programs, args.turns, args.concurrency, args.warmup, args.sequential, args.cpus)
    out = args.out
    if args.quick:
        cfg, out = Config(24, 2, 4, 4, 5, args.cpus), args.out / "quick"
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    server, base_url = start_fake_server()
    ray.init(address="local", num_cpus=cfg.cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        with contextlib.ExitStack() as stack:
            pg = args.postgres_url or stack.enter_context(temporary_server(*SERVER_SETTINGS[args.durable]))
            result = asyncio.run(bench(pg, base_url, server.pid, cfg))
    finally:
        ray.shutdown()
        server.kill()
    payload = {**provenance(), "config": cfg.__dict__, "model": "loopback fake OpenAI server (canned reply)",
               "database": "PostgreSQL " + ("(given)" if args.postgres_url else "(temporary, this machine; "
                                            + (" ".join(SERVER_SETTINGS[args.durable]) or "default settings") + ")"),
               **result}
    write_json(out / "summary.json", payload)
    _plot(result["throughput"], out / "throughput.png")
    t = result["throughput"]
    print(f"programs/s: local {t['local']['programs_per_s']}, ray 1 worker {t['ray_1']['programs_per_s']}, "
          f"2 workers {t['ray_2']['programs_per_s']} ({result['speedup_2_over_1']}x); Ray overhead per program "
          f"{result['overhead']['ray_overhead_ms_per_program']} ms -> {out / 'summary.json'}")


if __name__ == "__main__":
    main()
