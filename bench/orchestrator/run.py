"""The runtime's cost per durable LLM turn, against its baselines measured in the same run.

What is measured. The kit's loopback OpenAI-compatible server (:mod:`orchestrator.testing`, its
own process, asyncio streams, the canned reply with usage of ``responder.py``) answers instantly
on loopback. At each concurrency N (default 1, 64, 512, 2048) and on each database (SQLite file;
PostgreSQL: a throwaway server from ``initdb``/``pg_ctl``, or ``--postgres-url``), one after another:

- **raw**: N concurrent "programs", each ``--turns`` sequential POSTs of the same request bodies the
  runtime sends, parsing the JSON reply, with a plain aiohttp client (the fastest client measured
  here). Latency of one call, calls/s. At N <= 64 also with plain ``httpx`` (its own pool), the
  client the runtime used to send through (``raw_httpx``), to show why it no longer does.
- **langgraph**: the bare LangGraph loop with LangGraph's own saver on the same kind of database
  (AsyncSqliteSaver on a file of its own; AsyncPostgresSaver on a pool), no runtime: the same
  two-node graph and the same state growth as the runtime's workflow (a reply and an observation,
  ~200 characters each, appended per step), LangGraph's default durability, no LLM call.
  Steps/s and the time between node entries.
- **runtime**: N concurrent runs of the ``bench_turns`` workflow (registered here) through the real
  :class:`~orchestrator.runtime.Runtime` with the ``openai`` backend pointed at the server, under a
  token and dollar budget (so the ledger reserves and settles two accounts per call). One turn =
  graph step + ledger reserve + HTTP call + ledger settle and LLM call row in one transaction +
  metrics + LangGraph checkpoint (durability ``sync``), every turn durable. A turn's latency is the
  time between consecutive node entries; run set-up (run row, limits, lease, graph compile) and
  tear-down (final status) are reported apart, per run. Throughput (turns/s) counts them in.

Added latency per turn at a quantile q = q(runtime turn latency) - q(raw call latency) at the same
N (a difference of quantiles, p50 and p95). At N = 1, ``--min-programs`` programs run one after
another so the quantiles have enough samples. Failures: any exception from ``Runtime.run`` or a run
that did not succeed (and, for raw, any failed call). Memory per idle program: the process's RSS
growth with ``--idle-programs`` runs parked inside an LLM call (a client that waits), divided by
their number. The profile: py-spy (when installed; cProfile otherwise) of one extra SQLite runtime
phase at ``--profile`` N (default 64).

Outputs under ``--out`` (default ``bench/results/orchestrator``): ``summary.json`` (the machine-checked
summary), ``raw.json`` (every phase's latency statistics, throughput, set-up and tear-down times,
failures), ``overhead.png``, ``profile_sqlite_<N>.txt``.

    .venv/bin/python bench/orchestrator/run.py            # full run, SQLite and PostgreSQL (~10 min on 2 cores)
    .venv/bin/python bench/orchestrator/run.py --quick    # smoke run, about a minute, writes under <out>/quick
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import functools
import gc
import io
import itertools
import json
import os
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable
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
from orchestrator.types import LLMRequest, LLMResponse, Message, ProgramHints, SamplingOptions, Usage
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

    return _turn_graph(agent, done, turns)



def _turn_graph(agent: Any, done: Any, turns: int) -> StateGraph:
    """The graph both the runtime workflow and the bare LangGraph baseline run: ``agent`` once per
    turn, then ``done`` (the same shape and state growth on both sides of the comparison)."""
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


async def raw_phase(base_url: str, client: str, concurrency: int, num_programs: int, turns: int,
                    advance: Callable[[], None]) -> PhaseResult:
    """``num_programs`` programs of ``turns`` sequential raw calls, ``concurrency`` at a time, with
    a plain ``aiohttp`` or ``httpx`` client."""
    import aiohttp

    latencies: list[float] = []
    errors: list[str] = []
    sem = asyncio.Semaphore(concurrency)
    headers = {"Authorization": "Bearer EMPTY", "Content-Type": "application/json"}
    url = f"{base_url}/chat/completions"
    if client == "httpx":
        limits = httpx.Limits(max_connections=1024, max_keepalive_connections=1024)
        hx = httpx.AsyncClient(headers=headers, limits=limits, timeout=httpx.Timeout(300.0, connect=5.0))

        async def post(body: bytes) -> str:
            response = await hx.post(url, content=body)
            response.raise_for_status()
            return str(response.json()["choices"][0]["message"]["content"])

        close: Callable[[], Any] = hx.aclose
    else:
        session = aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=1024),
                                        timeout=aiohttp.ClientTimeout(total=300.0, sock_connect=5.0))

        async def post(body: bytes) -> str:
            async with session.post(url, data=body) as response:
                response.raise_for_status()
                return str(json.loads(await response.read())["choices"][0]["message"]["content"])

        close = session.close

    async def program(index: int) -> None:
        async with sem:
            history: list[dict[str, str]] = []
            for turn in range(turns):
                body = json.dumps(_raw_body(history, f"raw{index}", turn, turn == turns - 1)).encode()
                t0 = time.perf_counter()
                try:
                    text = await post(body)
                except (TimeoutError, httpx.HTTPError, aiohttp.ClientError, KeyError, ValueError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    return
                latencies.append(time.perf_counter() - t0)
                advance()
                history = _history_after(history, text)

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(program(i) for i in range(num_programs)))
        wall = time.perf_counter() - t0
    finally:
        await close()
    return PhaseResult(latencies, wall, len(errors), errors, [], [])


REPLY_200 = ("search: the capital of France and the national anthem La Marseillaise, its history, its author "
             "Rouget de Lisle, and the city of Strasbourg where it was written in April 1792 during the war")


def bare_graph(turns: int, times: dict[str, list[float]]) -> StateGraph:
    """The runtime workflow's graph without the runtime: same nodes, edges and state growth, a
    canned ~200-character reply instead of an LLM call."""

    from langgraph.config import get_config

    def stamp() -> None:
        times.setdefault(get_config()["configurable"]["thread_id"], []).append(time.perf_counter())

    async def agent(state: _TurnState) -> dict[str, Any]:
        stamp()
        return {"turn": state["turn"] + 1, "messages": _history_after(state["messages"], REPLY_200)}

    async def done(state: _TurnState) -> dict[str, Any]:
        stamp()
        return {}

    return _turn_graph(agent, done, turns)


async def langgraph_phase(saver: Any, concurrency: int, num_programs: int, turns: int,
                          advance: Callable[[], None]) -> PhaseResult:
    """``num_programs`` threads of the bare graph on ``saver``, ``concurrency`` at a time."""
    times: dict[str, list[float]] = {}
    graph = bare_graph(turns, times).compile(checkpointer=saver)  # compiled once, as a user would
    errors: list[str] = []
    latencies: list[float] = []
    sem = asyncio.Semaphore(concurrency)
    phase = uuid.uuid4().hex[:8]

    async def program(index: int) -> None:
        async with sem:
            thread = f"lg-{phase}-{index}"
            try:
                await graph.ainvoke({"messages": [], "turn": 0}, {"configurable": {"thread_id": thread},
                                                                  "recursion_limit": 4 * turns + 10})
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            stamps = times.pop(thread, [])
            latencies.extend(b - a for a, b in itertools.pairwise(stamps))
            for _ in range(turns):
                advance()

    t0 = time.perf_counter()
    await asyncio.gather(*(program(i) for i in range(num_programs)))
    wall = time.perf_counter() - t0
    return PhaseResult(latencies, wall, len(errors), errors, [], [])


@contextlib.asynccontextmanager
async def langgraph_saver(db: str, url: str, home: Path) -> AsyncIterator[Any]:
    """LangGraph's own async saver on ``db``: a SQLite file of its own, or a pool on ``url``."""
    if db == "sqlite":
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with aiosqlite.connect(str(home / "langgraph.db")) as conn:
            # The store's settings (WAL, synchronous=NORMAL): LangGraph's defaults (a rollback
            # journal, an fsync per commit) would make the baseline slower for a reason that is
            # not the runtime's.
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            saver = AsyncSqliteSaver(conn)
            await saver.setup()
            yield saver
        return
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    from orchestrator.store.db import plain_postgres_dsn

    async with AsyncConnectionPool(plain_postgres_dsn(url), min_size=1, max_size=20, open=False,
                                   kwargs={"autocommit": True, "prepare_threshold": 0,
                                           "row_factory": dict_row}) as pool:
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()
        yield saver


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


# -- memory per idle program ---------------------------------------------------------------------

class _WaitingClient:
    """An LLM client whose calls wait until released: parks runs inside ``ctx.chat``."""

    model = MODEL

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting = 0

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.waiting += 1
        await self.release.wait()
        return LLMResponse(text="answer: Paris", usage=Usage(100, 0, 4), model=MODEL)

    def stream(self, request: LLMRequest) -> Any:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    async def aclose(self) -> None:
        return None


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def idle_memory(db_url: str, home: Path, programs: int) -> dict[str, Any]:
    """RSS growth with ``programs`` runs parked in an LLM call, per program (KiB)."""
    waiting = _WaitingClient()
    rt = Runtime(Settings(db_url=db_url, home=home), tools=ToolRegistry([]), clients={"waiting": waiting})
    try:
        waiting.release.set()
        await asyncio.gather(*(rt.run(BENCH_WORKFLOW, {"question": QUESTION}, budget=BUDGET, backend="waiting",
                                      options={"turns": 2}) for _ in range(8)))  # warm: imports, caches, pools
        waiting.release.clear()
        waiting.waiting = 0
        gc.collect()
        tracemalloc.start()
        before, traced_before = _rss_bytes(), tracemalloc.get_traced_memory()[0]
        runs = [asyncio.ensure_future(rt.run(BENCH_WORKFLOW, {"question": QUESTION}, budget=BUDGET,
                                             backend="waiting", options={"turns": 2})) for _ in range(programs)]
        while waiting.waiting < programs:
            if any(r.done() for r in runs):
                raise RuntimeError(f"an idle run ended early: {[r.result() for r in runs if r.done()][:1]}")
            await asyncio.sleep(0.05)
        gc.collect()
        parked, traced = _rss_bytes(), tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        waiting.release.set()
        results = await asyncio.gather(*runs)
    finally:
        await rt.aclose()
    failed = sum(r.status != RunStatus.SUCCEEDED for r in results)
    return {"programs": programs, "per_program_kib": (traced - traced_before) / programs / 1024,
            "rss_growth_per_program_kib": (parked - before) / programs / 1024, "failures": failed,
            "what": "Python heap (tracemalloc) held by runs parked inside ctx.chat (their context, compiled "
                    "graph, LangGraph loop and task, lease), divided by their number; RSS growth beside it "
                    "(an underestimate where the allocator reuses memory freed by the phases before)"}


# -- profile ------------------------------------------------------------------------------------

class _Profiler:
    """py-spy on this process where it is installed (every thread, sampled), else cProfile
    (this thread, deterministic); written as text either way."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.spy = shutil.which("py-spy") or (str(Path(sys.executable).parent / "py-spy")
                                               if (Path(sys.executable).parent / "py-spy").exists() else None)
        self._proc: subprocess.Popen[bytes] | None = None
        self._cprofile: cProfile.Profile | None = None

    def __enter__(self) -> _Profiler:
        if self.spy:
            self._raw = Path(tempfile.mkdtemp(prefix="qf-pyspy-")) / "profile.raw"  # summarised, then removed
            self._proc = subprocess.Popen([self.spy, "record", "--pid", str(os.getpid()), "--rate", "250",
                                           "--format", "raw", "--output", str(self._raw), "--nonblocking"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # attached
        else:
            self._cprofile = cProfile.Profile()
            self._cprofile.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._cprofile is not None:
            self._cprofile.disable()
            buf = io.StringIO()
            stats = pstats.Stats(self._cprofile, stream=buf)
            stats.sort_stats("tottime").print_stats(40)
            stats.sort_stats("cumulative").print_stats(60)
            self.path.write_text("cProfile of the event loop's thread (waits count in cumulative times)\n"
                                 + buf.getvalue())
            return
        assert self._proc is not None
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self.path.write_text(summarise_pyspy(self._raw) if self._raw.exists() else "py-spy wrote nothing\n")
        shutil.rmtree(self._raw.parent, ignore_errors=True)


def summarise_pyspy(raw: Path, top: int = 45) -> str:
    """Self and inclusive time per function of py-spy's raw (collapsed) stacks, busy samples only."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [re.sub(r" \(.*?(site-packages/|lib/python3\.\d+/|/work/main/)?([^/]*/?[^/]*\.py):\d+\)$",
                         r" (\2)", f) for f in stack.split(";")]
        if frames[-1].startswith(("_worker (", "_connection_worker_thread (")):
            continue  # an idle pool thread waiting for work
        n = int(count)
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    lines = [f"py-spy, {total} busy samples at 250 Hz (every thread; idle pool threads left out)", "",
             "self %  function"]
    lines += [f"{v / total * 100:6.1f}  {k}" for k, v in own.most_common(top)]
    lines += ["", "inclusive %  function"]
    lines += [f"{v / total * 100:6.1f}  {k}" for k, v in incl.most_common(top * 3)]
    return "\n".join(lines) + "\n"


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
    """Profile one extra SQLite runtime phase at this N (None: no profile)."""
    idle_programs: int
    """Runs parked at once to measure memory per idle program (0: not measured)."""
    httpx_up_to: int = 64
    """The plain-httpx raw phase runs at N up to this."""


def _programs(cfg: BenchConfig, concurrency: int) -> int:
    return max(concurrency, cfg.min_programs)


async def _measure_db(cfg: BenchConfig, db: str, db_url: str, base_url: str, home: Path, out: Path,
                      progress: Any) -> dict[str, dict[str, Any]]:
    cells: dict[str, dict[str, Any]] = {}
    # No tools: the turns are LLM-only, and the default registry would need a search corpus.
    rt = Runtime(Settings(db_url=db_url, home=home), tools=ToolRegistry([]))
    backend_url = base_url
    try:
        warm = await runtime_phase(rt, backend_url, cfg.warmup_programs, cfg.warmup_programs, cfg.turns, lambda: None)
        if warm.failures:
            raise RuntimeError(f"warm-up on {db} failed: {warm.errors[:3]}")
        async with langgraph_saver(db, db_url, home) as saver:
            await langgraph_phase(saver, cfg.warmup_programs, cfg.warmup_programs, cfg.turns, lambda: None)
            for n in cfg.concurrencies:
                num = _programs(cfg, n)
                total = num * cfg.turns

                def task(what: str, n: int = n, total: int = total) -> Callable[[], None]:
                    handle = progress.add_task(f"{db} N={n} {what}", total=total)
                    return functools.partial(progress.advance, handle)

                cell: dict[str, Any] = {"programs": num, "turns_per_program": cfg.turns}
                cell["raw"] = (await raw_phase(base_url, "aiohttp", n, num, cfg.turns, task("raw aiohttp"))
                               ).as_json(total)
                if n <= cfg.httpx_up_to:
                    cell["raw_httpx"] = (await raw_phase(base_url, "httpx", n, num, cfg.turns, task("raw httpx"))
                                         ).as_json(total)
                cell["langgraph"] = (await langgraph_phase(saver, n, num, cfg.turns, task("bare LangGraph"))
                                     ).as_json(total)
                batches = getattr(rt.store, "batches", 0)
                run = await runtime_phase(rt, base_url, n, num, cfg.turns, task("runtime"))
                cell["runtime"] = run.as_json(total)
                cell["runtime"]["group_commits"] = getattr(rt.store, "batches", 0) - batches
                cells[str(n)] = cell
        if db == "sqlite" and cfg.profile_concurrency:
            n = cfg.profile_concurrency
            num = 4 * _programs(cfg, n)  # a few seconds of samples
            handle = progress.add_task(f"{db} N={n} runtime (profiled)", total=num * cfg.turns)
            with _Profiler(out / f"profile_sqlite_{n}.txt"):
                await runtime_phase(rt, base_url, n, num, cfg.turns, functools.partial(progress.advance, handle))
    finally:
        await rt.aclose()
    return cells


async def run_bench(cfg: BenchConfig, base_url: str, db_urls: dict[str, str], home: Path,
                    out: Path) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, Any] | None]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    phases: dict[str, dict[str, dict[str, Any]]] = {}
    memory = None
    with Progress(TextColumn("{task.description:<30}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  refresh_per_second=4) as progress:
        for db in cfg.dbs:
            dbhome = home / db
            dbhome.mkdir(parents=True, exist_ok=True)
            phases[db] = await _measure_db(cfg, db, db_urls[db], base_url, dbhome, out, progress)
    if cfg.idle_programs:
        idle_home = home / "idle"
        idle_home.mkdir(parents=True, exist_ok=True)
        memory = await idle_memory(f"sqlite:///{idle_home}/idle.db", idle_home, cfg.idle_programs)
    return phases, memory


GOALS = {"overhead_p50_ms_sqlite_1": 3.0, "overhead_p50_ms_postgres_1": 5.0, "turns_per_s_sqlite_64": 400.0,
         "ratio_to_langgraph_sqlite_64": 0.5, "failures_at_2048": 0}


def summarise(phases: dict[str, dict[str, dict[str, Any]]], cfg: BenchConfig,
              memory: dict[str, Any] | None, profile: str | None) -> dict[str, Any]:
    def table(fn: Callable[[dict[str, Any]], float | None]) -> dict[str, dict[str, float | None]]:
        return {db: {n: (round(v, 3) if (v := fn(cell)) is not None else None) for n, cell in by_n.items()}
                for db, by_n in phases.items()}

    def overhead(q: str) -> Callable[[dict[str, Any]], float | None]:
        def fn(cell: dict[str, Any]) -> float | None:
            raw, run = cell["raw"]["latency_ms"], cell["runtime"]["latency_ms"]
            return run[q] - raw[q] if raw.get("count") and run.get("count") else None
        return fn

    def failures_at(n: int) -> int | None:
        cells = [by_n[str(n)] for by_n in phases.values() if str(n) in by_n]
        if not cells:
            return None
        return sum(c[k]["failures"] for c in cells for k in ("raw", "raw_httpx", "langgraph", "runtime") if k in c)

    turns = table(lambda c: c["runtime"]["turns_per_s"])
    steps = table(lambda c: c["langgraph"]["turns_per_s"])
    ratio = table(lambda c: c["runtime"]["turns_per_s"] / c["langgraph"]["turns_per_s"]
                  if c["langgraph"]["turns_per_s"] else None)
    p50 = table(overhead("p50"))
    summary: dict[str, Any] = {
        **provenance(),
        "overhead_p50_ms": p50,
        "overhead_p95_ms": table(overhead("p95")),
        "failures_at_512": failures_at(512),
        "failures_at_2048": failures_at(2048),
        "turns_per_s": turns,
        "baseline_langgraph_steps_per_s": steps,
        "raw_http_calls_per_s": table(lambda c: c["raw"]["turns_per_s"]),
        "raw_httpx_calls_per_s": {db: {n: round(c["raw_httpx"]["turns_per_s"], 3) for n, c in by_n.items()
                                       if "raw_httpx" in c} for db, by_n in phases.items()},
        "ratio_turns_to_langgraph_steps": ratio,
        "memory_per_idle_program_kib": round(memory["per_program_kib"], 1) if memory else None,
        "profile_file": profile,
        "local_model_tokens_per_s": local_model_tokens_per_s(),
        "local_model_tokens_per_s_source": "carried over from bench/results/local_model/local_model.json "
                                           "(measuring it needs the local model; this bench does not run it)",
        "baselines": {"raw_http": "plain aiohttp client, same request bodies, same server, same N",
                      "langgraph": "bare LangGraph graph (same shape and state growth, no LLM call) with LangGraph's "
                                   "own async saver (AsyncSqliteSaver on its own file, WAL and synchronous=NORMAL as "
                                   "the runtime's store / AsyncPostgresSaver on a pool of 20), LangGraph's default "
                                   "durability ('async'), graph compiled once"},
    }
    got = {"overhead_p50_ms_sqlite_1": p50.get("sqlite", {}).get("1"),
           "overhead_p50_ms_postgres_1": p50.get("postgres", {}).get("1"),
           "turns_per_s_sqlite_64": turns.get("sqlite", {}).get("64"),
           "ratio_to_langgraph_sqlite_64": ratio.get("sqlite", {}).get("64"),
           "failures_at_2048": summary["failures_at_2048"]}
    summary["goals"] = {k: {"goal": ("<= " if k.startswith(("overhead", "failures")) else ">= ") + str(goal),
                            "measured": got[k],
                            "met": None if got[k] is None else (got[k] <= goal if k.startswith(("overhead", "failures"))
                                                                 else got[k] >= goal)}
                        for k, goal in GOALS.items()}
    return summary


def plot(summary: dict[str, Any], phases: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    plt = pyplot()

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4))
    for db, style in (("sqlite", "o"), ("postgres", "s")):
        if db not in phases:
            continue
        ns = sorted(int(n) for n in phases[db])
        left.plot(ns, [summary["overhead_p50_ms"][db][str(n)] for n in ns], style, linestyle="-", label=f"{db} p50")
        left.plot(ns, [summary["overhead_p95_ms"][db][str(n)] for n in ns], style, alpha=0.5, linestyle="--",
                  label=f"{db} p95")
        right.plot(ns, [phases[db][str(n)]["runtime"]["turns_per_s"] for n in ns], style, linestyle="-",
                   label=f"runtime turns/s, {db}")
        right.plot(ns, [phases[db][str(n)]["langgraph"]["turns_per_s"] for n in ns], style, linestyle="--",
                   alpha=0.6, label=f"bare LangGraph + saver steps/s, {db}")
        right.plot(ns, [phases[db][str(n)]["raw"]["turns_per_s"] for n in ns], style, linestyle=":", alpha=0.5,
                   label=f"raw aiohttp calls/s (next to {db})")
    left.axhline(3.0, color="grey", linewidth=0.8, linestyle="-.", label="goal at N=1: 3 ms (SQLite)")
    left.axhline(5.0, color="grey", linewidth=0.8, linestyle=":", label="goal at N=1: 5 ms (PostgreSQL)")
    right.axhline(400, color="grey", linewidth=0.8, linestyle="-.", label="goal at N=64: 400 turns/s (SQLite)")
    left.set_yscale("symlog", linthresh=1.0)
    left.set_ylim(bottom=0)  # a negative difference of quantiles (both sides saturated) is not drawn
    right.set_yscale("log")
    for ax, title, ylabel in ((left, "Added latency per durable turn", "runtime - raw call (ms)"),
                              (right, "Throughput", "per second")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent programs")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"QuotaFlow runtime vs raw HTTP and bare LangGraph ({summary['machine']}, {summary['commit'][:10]})",
                 fontsize=9)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,64,512,2048", help="comma-separated programs in flight")
    parser.add_argument("--turns", type=int, default=4, help="LLM turns per program")
    parser.add_argument("--min-programs", type=int, default=60, help="programs per phase at least")
    parser.add_argument("--dbs", default="sqlite,postgres", help="sqlite and/or postgres")
    parser.add_argument("--postgres-url", default="",
                        help="an empty PostgreSQL database the bench may fill, e.g. "
                             "postgresql://postgres@127.0.0.1:5432/bench (default: a throwaway server from the "
                             "installed initdb/pg_ctl)")
    parser.add_argument("--profile", type=int, default=64,
                        help="profile one extra SQLite runtime phase at this N (0: none)")
    parser.add_argument("--idle-programs", type=int, default=1000, help="runs parked to measure memory (0: none)")
    parser.add_argument("--quick", action="store_true", help="smoke run: N=1,64, 3 turns, results under <out>/quick")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    out: Path = args.out / "quick" if args.quick else args.out
    cfg = BenchConfig(
        concurrencies=(1, 64) if args.quick else tuple(int(n) for n in args.concurrency.split(",")),
        turns=3 if args.quick else args.turns,
        min_programs=10 if args.quick else args.min_programs,
        dbs=tuple(d.strip() for d in args.dbs.split(",") if d.strip()),
        warmup_programs=4 if args.quick else 16,
        profile_concurrency=(args.profile or None) if not args.quick else None,
        idle_programs=100 if args.quick else args.idle_programs,
    )
    out.mkdir(parents=True, exist_ok=True)
    load_at_start = os.getloadavg()
    started = time.perf_counter()
    server, base_url = start_fake_server()
    try:
        with tempfile.TemporaryDirectory(prefix="qf-bench-") as tmp, contextlib.ExitStack() as stack:
            db_urls = {"sqlite": f"sqlite:///{tmp}/bench.db"}
            if "postgres" in cfg.dbs:
                db_urls["postgres"] = args.postgres_url or _temporary_postgres(stack)
            phases, memory = asyncio.run(run_bench(cfg, base_url, db_urls, Path(tmp), out))
    finally:
        server.terminate()
        server.wait(timeout=10)
    profile = f"profile_sqlite_{cfg.profile_concurrency}.txt" if cfg.profile_concurrency else None
    summary = summarise(phases, cfg, memory, profile)
    raw = {
        **{k: summary[k] for k in ("commit", "machine", "date")},
        "config": {
            "concurrencies": list(cfg.concurrencies),
            "turns_per_program": cfg.turns,
            "min_programs": cfg.min_programs,
            "warmup_programs": cfg.warmup_programs,
            "budget": BUDGET,
            "server": "orchestrator.testing loopback server (asyncio streams, separate process, instant canned reply)",
            "overhead": "quantile(runtime turn latency) - quantile(raw aiohttp call latency), same N",
            "runtime_durability": "sync (every checkpoint committed before the next step)",
        },
        "load_average_at_start": list(load_at_start),
        "load_average_at_end": list(os.getloadavg()),
        "total_wall_s": time.perf_counter() - started,
        "memory": memory,
        "phases": phases,
    }
    summary["load_average_at_start"] = list(load_at_start)
    write_json(out / "summary.json", summary)
    write_json(out / "raw.json", raw)
    plot(summary, phases, out / "overhead.png")
    print(json.dumps(summary, indent=2))
    return 0


def _temporary_postgres(stack: contextlib.ExitStack) -> str:
    from bench.integrity.postgres import create_database, temporary_server

    return create_database(stack.enter_context(temporary_server()), "orchestrator_bench")


if __name__ == "__main__":
    sys.exit(main())
