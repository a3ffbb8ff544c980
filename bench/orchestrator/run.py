"""The runtime's overhead per LLM turn, against raw httpx calls to the same instant server.

What is measured. The kit's loopback OpenAI-compatible server (:mod:`orchestrator.testing`, its
own process, asyncio streams, the canned reply with usage of ``responder.py``) answers instantly
on loopback. At each concurrency N (default 1, 64, 512) and on each database (SQLite file;
PostgreSQL at ``--postgres-url``):

- **raw**: N concurrent "programs", each ``--turns`` sequential ``httpx`` POSTs of the same
  request bodies the runtime sends (same messages, sampling and ``vllm_xargs``, the same
  connection limits), parsing the JSON reply. Latency of one call.
- **runtime**: N concurrent runs of the ``bench_turns`` workflow (registered here) through the
  real :class:`~orchestrator.runtime.Runtime` with the ``openai`` backend pointed at the server,
  under a token and dollar budget (so the ledger reserves and settles two accounts per call).
  Its graph is one node that makes one ``ctx.chat`` call per graph step and loops ``--turns``
  times, then a ``done`` node: one turn = graph step + ledger reserve + HTTP call + ledger settle
  and LLM call row in one transaction + metrics + LangGraph checkpoint. The state grows like an
  agent's (the reply plus a canned observation per turn), so checkpoints grow too. A turn's
  latency is the time between consecutive node entries; run set-up (run row, limits, graph
  compile) and tear-down (final status) are reported apart, per run.

Per-turn overhead at a quantile q = q(runtime turn latency) - q(raw call latency) at the same N
(a difference of quantiles, p50 and p95). At N = 1, ``--min-programs`` programs run one after
another so the quantiles have enough samples. Failures: any exception from ``Runtime.run`` or a
run that did not succeed (and, for raw, any failed call).

Outputs under ``--out`` (default ``bench/results/orchestrator``): ``summary.json`` (the
machine-checked summary), ``raw.json`` (every phase's latency statistics, throughput, set-up
and tear-down times, failures), ``overhead.png``; with ``--profile``, ``profile_sqlite_<N>.txt``
(cProfile of one extra runtime phase on SQLite at N, default 64).

    .venv/bin/python bench/orchestrator/run.py               # ~5 minutes on 2 cores (4 turns per program)
    .venv/bin/python bench/orchestrator/run.py --quick       # smoke run, seconds, writes under <out>/quick
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import io
import itertools
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench.common lives in the checkout, not the installed package
    sys.path.insert(0, str(ROOT))

import httpx
from langgraph.graph import END, START, StateGraph

from bench.common import provenance, pyplot, save_figure, write_json
from orchestrator import workflow as workflows
from orchestrator.runtime import RunStatus, Runtime
from orchestrator.settings import Settings
from orchestrator.tools.registry import ToolRegistry
from orchestrator.types import LLMRequest, Message, ProgramHints, SamplingOptions
from orchestrator.workflow import Workflow

OUT = ROOT / "bench" / "results" / "orchestrator"
LOCAL_MODEL_JSON = ROOT / "bench" / "results" / "local_model" / "local_model.json"
MODEL = "bench-model"
SERVER = [sys.executable, "-m", "orchestrator.testing", "serve", "--port", "0", "--model", MODEL,
          "--responder", "bench.orchestrator.responder:canned", "--no-tokenize"]
BUDGET = "tokens=1000000000,usd=1000000"
SAMPLING = SamplingOptions(max_tokens=16, temperature=0.0)

SYSTEM = ("You answer questions by searching an encyclopedia. Reply with exactly one line: "
          "search: <keywords> or browse: <url> or answer: <short answer>. Always search before you answer.")
QUESTION = "Question: What is the capital of the country whose national anthem is La Marseillaise?"
OBSERVATION = ("1. France (wiki://France): France is a country in Western Europe. Its capital and largest "
               "city is Paris, on the Seine. 2. La Marseillaise (wiki://La Marseillaise): the national anthem.")


# -- the benchmark workflow --------------------------------------------------------------------

class _TurnState(TypedDict):
    messages: list[dict[str, str]]
    turn: int


@dataclass
class _Probe:
    """Where the workflow's nodes report to the benchmark (one process, one phase at a time)."""

    node_times: dict[str, list[float]]
    on_turn: Callable[[], None]


PROBE = _Probe({}, lambda: None)


def turn_messages(history: list[dict[str, str]]) -> list[Message]:
    """The prompt of one turn: system, question, then the conversation so far."""
    return [Message("system", SYSTEM), Message("user", QUESTION),
            *(Message(m["role"], m["content"], m.get("name")) for m in history)]  # type: ignore[arg-type]


def _history_after(history: list[dict[str, str]], reply: str) -> list[dict[str, str]]:
    return [
        *history,
        {"role": "assistant", "content": reply},
        {"role": "tool", "content": OBSERVATION, "name": "search"},
    ]


def _build(ctx: Any) -> StateGraph:
    turns = int(ctx.config["turns"])

    async def agent(state: _TurnState) -> dict[str, Any]:
        PROBE.node_times.setdefault(ctx.run_id, []).append(time.perf_counter())
        last = state["turn"] == turns - 1
        response = await ctx.chat(turn_messages(state["messages"]), sampling=SAMPLING, tool_name="search",
                                  is_last_step=last)
        PROBE.on_turn()
        return {"turn": state["turn"] + 1, "messages": _history_after(state["messages"], response.text)}

    async def done(state: _TurnState) -> dict[str, Any]:
        PROBE.node_times.setdefault(ctx.run_id, []).append(time.perf_counter())
        return {}

    graph = StateGraph(_TurnState)
    graph.add_node("agent", agent)
    graph.add_node("done", done)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", lambda s: "done" if s["turn"] >= turns else "agent", ["agent", "done"])
    graph.add_edge("done", END)
    return graph


BENCH_WORKFLOW = workflows.register(Workflow(
    name="bench_turns",
    build=_build,
    initial_state=lambda task: {"messages": [], "turn": 0},
    result=lambda state: {"turns": state.get("turn", 0)},
    description="overhead benchmark: one ctx.chat per graph step, a fixed number of turns",
))


# -- statistics --------------------------------------------------------------------------------

def quantile(values: list[float], q: float) -> float:
    """Linear-interpolated quantile (``q`` in [0, 1]) of a non-empty list."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def describe_ms(seconds: list[float]) -> dict[str, float | int]:
    """Count and quantiles in milliseconds."""
    if not seconds:
        return {"count": 0}
    ms = [s * 1000 for s in seconds]
    return {"count": len(ms), "mean": statistics.fmean(ms), "p50": quantile(ms, 0.5), "p90": quantile(ms, 0.9),
            "p95": quantile(ms, 0.95), "p99": quantile(ms, 0.99), "max": max(ms), "min": min(ms)}


# -- phases -------------------------------------------------------------------------------------

@dataclass
class PhaseResult:
    latencies_s: list[float]
    wall_s: float
    failures: int
    errors: list[str]
    setup_s: list[float]
    teardown_s: list[float]

    def as_json(self, turns_total: int) -> dict[str, Any]:
        return {"latency_ms": describe_ms(self.latencies_s), "wall_s": self.wall_s,
                "turns_per_s": turns_total / self.wall_s if self.wall_s else None, "failures": self.failures,
                "errors": self.errors[:10], "setup_ms": describe_ms(self.setup_s),
                "teardown_ms": describe_ms(self.teardown_s)}


def _raw_body(history: list[dict[str, str]], program_id: str, turn: int, last: bool) -> dict[str, Any]:
    """The body OpenAIClient sends for the same turn (built the same way, outside the timing)."""
    request = LLMRequest(messages=tuple(turn_messages(history)), sampling=SAMPLING,
                         hints=ProgramHints(program_id=program_id, turn=turn, is_last_step=last, tool_name="search"))
    return {"model": MODEL, "messages": [m.to_wire() for m in request.messages], "max_tokens": SAMPLING.max_tokens,
            "temperature": SAMPLING.temperature, "top_p": SAMPLING.top_p, "vllm_xargs": request.hints.to_xargs()}


async def raw_phase(base_url: str, concurrency: int, num_programs: int, turns: int,
                    advance: Callable[[], None]) -> PhaseResult:
    """``num_programs`` programs of ``turns`` sequential raw httpx calls, ``concurrency`` at a time."""
    latencies: list[float] = []
    errors: list[str] = []
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=1024)
    async with httpx.AsyncClient(headers={"Authorization": "Bearer EMPTY"}, limits=limits,
                                 timeout=httpx.Timeout(300.0, connect=5.0)) as client:

        async def program(index: int) -> None:
            async with sem:
                history: list[dict[str, str]] = []
                for turn in range(turns):
                    body = _raw_body(history, f"raw{index}", turn, turn == turns - 1)
                    t0 = time.perf_counter()
                    try:
                        response = await client.post(f"{base_url}/chat/completions", json=body)
                        response.raise_for_status()
                        text = response.json()["choices"][0]["message"]["content"]
                    except (httpx.HTTPError, KeyError, ValueError) as exc:
                        errors.append(f"{type(exc).__name__}: {exc}")
                        return
                    latencies.append(time.perf_counter() - t0)
                    advance()
                    history = _history_after(history, text)

        t0 = time.perf_counter()
        await asyncio.gather(*(program(i) for i in range(num_programs)))
        wall = time.perf_counter() - t0
    return PhaseResult(latencies, wall, len(errors), errors, [], [])


async def runtime_phase(rt: Runtime, base_url: str, concurrency: int, num_programs: int, turns: int,
                        advance: Callable[[], None]) -> PhaseResult:
    """``num_programs`` runs of ``bench_turns`` through the runtime, ``concurrency`` at a time."""
    PROBE.node_times = {}
    PROBE.on_turn = advance
    errors: list[str] = []
    latencies: list[float] = []
    setup: list[float] = []
    teardown: list[float] = []
    sem = asyncio.Semaphore(concurrency)
    backend_options = {"base_urls": [base_url], "model": MODEL}

    async def program() -> None:
        async with sem:
            t0 = time.perf_counter()
            try:
                result = await rt.run(BENCH_WORKFLOW, {"question": QUESTION}, budget=BUDGET, backend="openai",
                                      backend_options=backend_options, options={"turns": turns})
            except Exception as exc:  # every exception is a failure to count, not a crash of the bench
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            t_end = time.perf_counter()
            if result.status != RunStatus.SUCCEEDED:
                errors.append(f"run {result.run_id} {result.status}: {result.error}")
                return
            times = PROBE.node_times.pop(result.run_id, [])
            if len(times) != turns + 1:
                errors.append(f"run {result.run_id}: {len(times)} node entries, expected {turns + 1}")
                return
            setup.append(times[0] - t0)
            teardown.append(t_end - times[-1])
            latencies.extend(b - a for a, b in itertools.pairwise(times))

    t0 = time.perf_counter()
    await asyncio.gather(*(program() for _ in range(num_programs)))
    wall = time.perf_counter() - t0
    return PhaseResult(latencies, wall, len(errors), errors, setup, teardown)


# -- processes ----------------------------------------------------------------------------------

def start_fake_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(SERVER, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()  # blocks until the server listens
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"fake server did not start (said {line!r})")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"


def local_model_tokens_per_s() -> float | None:
    try:
        return float(json.loads(LOCAL_MODEL_JSON.read_text())["decode_tokens_per_s"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


# -- driver -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BenchConfig:
    """What one benchmark invocation runs."""

    concurrencies: tuple[int, ...]
    """Numbers of programs in flight at once."""
    turns: int
    """LLM turns per program."""
    min_programs: int
    """Programs per phase at least (run ``concurrency`` at a time): enough samples at N = 1."""
    dbs: tuple[str, ...]
    """Databases: ``sqlite`` and/or ``postgres``."""
    warmup_programs: int
    """Programs run (unrecorded) on each new runtime before measuring."""
    profile_concurrency: int | None
    """Profile one extra SQLite runtime phase at this N with cProfile (None: no profile)."""


def _programs(cfg: BenchConfig, concurrency: int) -> int:
    return max(concurrency, cfg.min_programs)


async def run_bench(cfg: BenchConfig, base_url: str, db_urls: dict[str, str], home: Path,
                    out: Path) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    phases: dict[str, dict[str, dict[str, Any]]] = {}
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  refresh_per_second=4) as progress:
        tasks = {}
        for db in cfg.dbs:
            for n in cfg.concurrencies:
                total = _programs(cfg, n) * cfg.turns
                tasks[(db, n, "raw")] = progress.add_task(f"{db} N={n} raw httpx", total=total)
                tasks[(db, n, "runtime")] = progress.add_task(f"{db} N={n} runtime", total=total)
        for db in cfg.dbs:
            # No tools: the turns are LLM-only, and the default registry would need a search corpus.
            rt = Runtime(Settings(db_url=db_urls[db], home=home), tools=ToolRegistry([]))
            try:
                warm = await runtime_phase(rt, base_url, cfg.warmup_programs, cfg.warmup_programs, cfg.turns,
                                           lambda: None)
                if warm.failures:
                    raise RuntimeError(f"warm-up on {db} failed: {warm.errors[:3]}")
                phases[db] = {}
                for n in cfg.concurrencies:
                    num = _programs(cfg, n)
                    raw_task, rt_task = tasks[(db, n, "raw")], tasks[(db, n, "runtime")]
                    raw = await raw_phase(base_url, n, num, cfg.turns, lambda t=raw_task: progress.advance(t))
                    run = await runtime_phase(rt, base_url, n, num, cfg.turns, lambda t=rt_task: progress.advance(t))
                    phases[db][str(n)] = {"programs": num, "turns_per_program": cfg.turns,
                                          "raw": raw.as_json(num * cfg.turns), "runtime": run.as_json(num * cfg.turns)}
                if db == "sqlite" and cfg.profile_concurrency:
                    n = cfg.profile_concurrency
                    task = progress.add_task(f"{db} N={n} runtime (cProfile)", total=_programs(cfg, n) * cfg.turns)
                    profiler = cProfile.Profile()
                    profiler.enable()
                    await runtime_phase(rt, base_url, n, _programs(cfg, n), cfg.turns,
                                        functools.partial(progress.advance, task))
                    profiler.disable()
                    _write_profile(profiler, out / f"profile_sqlite_{n}.txt")
            finally:
                await rt.aclose()
    return phases


def _write_profile(profiler: cProfile.Profile, path: Path) -> None:
    buf = io.StringIO()
    stats = pstats.Stats(profiler, stream=buf)
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(60)
    path.write_text(buf.getvalue())


def summarise(phases: dict[str, dict[str, dict[str, Any]]], cfg: BenchConfig) -> dict[str, Any]:
    def overhead(q: str) -> dict[str, dict[str, float | None]]:
        table: dict[str, dict[str, float | None]] = {}
        for db, by_n in phases.items():
            table[db] = {}
            for n, cell in by_n.items():
                raw, run = cell["raw"]["latency_ms"], cell["runtime"]["latency_ms"]
                table[db][n] = round(run[q] - raw[q], 3) if raw.get("count") and run.get("count") else None
        return table

    top = str(max(cfg.concurrencies))
    failures = sum(cell["runtime"]["failures"] + cell["raw"]["failures"]
                   for by_n in phases.values() for n, cell in by_n.items() if n == top)
    return {**provenance(), "overhead_p50_ms": overhead("p50"), "overhead_p95_ms": overhead("p95"),
            "failures_at_512": failures, "local_model_tokens_per_s": local_model_tokens_per_s()}


def plot(summary: dict[str, Any], phases: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    plt = pyplot()

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for db, style in (("sqlite", "o"), ("postgres", "s")):
        if db not in phases:
            continue
        ns = sorted(int(n) for n in phases[db])
        left.plot(ns, [summary["overhead_p50_ms"][db][str(n)] for n in ns], style, linestyle="-", label=f"{db} p50")
        left.plot(ns, [summary["overhead_p95_ms"][db][str(n)] for n in ns], style, alpha=0.5, linestyle="--",
                  label=f"{db} p95")
        right.plot(ns, [phases[db][str(n)]["runtime"]["latency_ms"]["p50"] for n in ns], style, linestyle="-",
                   label=f"runtime turn, {db}")
        right.plot(ns, [phases[db][str(n)]["raw"]["latency_ms"]["p50"] for n in ns], style, alpha=0.5,
                   linestyle=":", label=f"raw httpx call (next to {db})")
    left.axhline(2.0, color="grey", linewidth=0.8, linestyle="-.", label="goal: 2 ms p50 at N=64")
    for ax, title, ylabel in ((left, "Added latency per LLM turn", "overhead (ms)"),
                              (right, "Latency per turn, p50", "latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent programs")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"QuotaFlow runtime overhead vs raw httpx ({summary['machine']}, {summary['commit'][:10]})",
                 fontsize=9)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,64,512", help="comma-separated programs in flight")
    parser.add_argument("--turns", type=int, default=4, help="LLM turns per program")
    parser.add_argument("--min-programs", type=int, default=40, help="programs per phase at least")
    parser.add_argument("--dbs", default="sqlite", help="sqlite and/or postgres (postgres needs --postgres-url)")
    parser.add_argument("--postgres-url", default="",
                        help="an empty PostgreSQL database the bench may fill, e.g. postgresql://postgres@127.0.0.1:5432/bench")
    parser.add_argument("--profile", type=int, nargs="?", const=64, default=None,
                        help="cProfile one extra SQLite runtime phase at this N (default 64)")
    parser.add_argument("--quick", action="store_true", help="smoke run: N=1,8, 3 turns, results under <out>/quick")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if "postgres" in args.dbs and not args.postgres_url:
        parser.error("--dbs postgres needs --postgres-url: an empty database on a running server")

    out: Path = args.out / "quick" if args.quick else args.out
    cfg = BenchConfig(
        concurrencies=(1, 8) if args.quick else tuple(int(n) for n in args.concurrency.split(",")),
        turns=3 if args.quick else args.turns,
        min_programs=4 if args.quick else args.min_programs,
        dbs=tuple(d.strip() for d in args.dbs.split(",") if d.strip()),
        warmup_programs=2 if args.quick else 8,
        profile_concurrency=args.profile,
    )
    out.mkdir(parents=True, exist_ok=True)
    load_at_start = os.getloadavg()
    started = time.perf_counter()
    server, base_url = start_fake_server()
    try:
        with tempfile.TemporaryDirectory(prefix="qf-bench-") as tmp:
            db_urls = {"sqlite": f"sqlite:///{tmp}/bench.db"}
            if "postgres" in cfg.dbs:
                db_urls["postgres"] = args.postgres_url
            phases = asyncio.run(run_bench(cfg, base_url, db_urls, Path(tmp), out))
    finally:
        server.terminate()
        server.wait(timeout=10)
    summary = summarise(phases, cfg)
    raw = {
        **{k: summary[k] for k in ("commit", "machine", "date")},
        "config": {
            "concurrencies": list(cfg.concurrencies),
            "turns_per_program": cfg.turns,
            "min_programs": cfg.min_programs,
            "warmup_programs": cfg.warmup_programs,
            "budget": BUDGET,
            "server": "orchestrator.testing loopback server (asyncio streams, separate process, instant canned reply)",
            "overhead": "quantile(runtime turn latency) - quantile(raw httpx call latency), same N",
        },
        "load_average_at_start": list(load_at_start),
        "load_average_at_end": list(os.getloadavg()),
        "total_wall_s": time.perf_counter() - started,
        "phases": phases,
    }
    write_json(out / "summary.json", summary)
    write_json(out / "raw.json", raw)
    plot(summary, phases, out / "overhead.png")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
