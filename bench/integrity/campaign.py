"""A randomized budget-integrity campaign (issue 15): many runs under random limits on honest and
misbehaving backends, then every account of the database audited.

What runs. ``integrity_agent`` (registered here) asks the LLM once per turn with a mixed English,
CJK and emoji prompt and calls the ``lookup`` (one unit per query) and ``fetch`` tools its task
lists. Each run draws, from the seed, a backend, a number of turns, ``max_tokens``, its tool plan
and 1 to 4 limits on its own scope over ``tokens``, ``input_tokens``, ``output_tokens``, ``usd``,
``lookup`` and ``fetch``; about half also name a shared scope (``pool-<k>/...``, the same limits
in every run that names it). The backends:

- ``scripted``: the kit's scripted LLM (exact prompt counts);
- ``exact``: the kit's loopback server with ``/tokenize`` (the runtime reserves its exact count);
- ``bytes``: the loopback server without ``/tokenize``, reporting one prompt token per UTF-8 byte
  plus a ChatML template (the most a byte-level tokenizer can make: the upper-bound path);
- ``oversized`` (misbehaving): the loopback server that, on about half its replies, ignores
  ``max_tokens`` and reports more output (sometimes more prompt) than it was allowed. Its runs
  always have a token limit, so every over-report meets a reservation; they share ``bad-pool``.

Runs of one process go ``concurrency`` at a time; :func:`run_processes` adds OS processes (this
module's ``worker`` command) that create and charge one scope, ``xproc``, at the same moment.

The audit (:func:`audit`) reads the database only: per resource, the largest spent/limit of an
account only honest runs charge (must be <= 1); reservations left (must be 0); runs left
``running`` (0); accounts whose spent disagrees with the call records of the runs that charge
them (0); overrun events (ledger entries settled above their reservation): 0 on honest backends,
and on the misbehaving one each flagged (entry status ``overrun``, its run ``paused``).

    python -m bench.integrity.campaign worker --db URL --seed 7 --index 0 --runs 6 --members 12 --start-at EPOCH
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from sqlalchemy import select

from budget.tables import BudgetAccountRow, LedgerEntryRow
from orchestrator import workflow as workflows
from orchestrator.errors import QuotaFlowError
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from orchestrator.store.models import LLMCallRow, RunRow, ToolCallRow
from orchestrator.testing import ChatRequest, LoopbackServer, Reply, ScriptedClient, ScriptedConfig
from orchestrator.tools.define import tool
from orchestrator.tools.registry import ToolRegistry
from orchestrator.types import Message, SamplingOptions
from orchestrator.workflow import Workflow

ROOT = Path(__file__).resolve().parents[2]
HONEST = ("scripted", "exact", "bytes")
MISBEHAVING = "oversized"
XPROC_SCOPE = "xproc"
_EPS = 1e-6

TEXTS = (
    "What is the capital of France, and which river runs through it?",
    "巴黎 是 法国 的 首都 ， 塞纳河 从 城市 中间 流过 。 请 说明 它 的 历史 。",
    "请详细介绍东京的历史与文化，包括浅草寺、明治神宫和东京塔的建造年代以及它们对城市的影响。",
    "🚀✨ Summarise the launch 🎉🎉 in three emoji-rich lines 😀👍🏽🇫🇷 and one plain sentence.",
    "Ελληνικά, русский и 日本語: сколько токенов стоит эта строка? 数えてください 🙂",
    "Explain, step by step, how a budget ledger reserves, settles and releases a call's tokens.",
)
REPLIES = (
    "The capital of France is Paris ; the Seine runs through it , past the Louvre and Notre-Dame . " * 6,
    "巴黎 是 法国 的 首都 ， 位于 塞纳河 畔 ， 拥有 埃菲尔铁塔 和 卢浮宫 等 著名 建筑 。 " * 6,
    "🙂 Sure ✨ here it is 🎉 : one 🚀 two 🚀 three 🚀 — done 👍🏽 . " * 6,
    "Сначала резервируем , потом списываем ; остаток возвращаем . 予約 、 決済 、 返却 。 " * 6,
)


# -- the workflow ----------------------------------------------------------------------------------

class _AgentState(TypedDict):
    task: dict[str, Any]
    turn: int
    history: list[str]


def _build(ctx: Any) -> StateGraph:
    async def turn(state: _AgentState) -> dict[str, Any]:
        task, n = state["task"], state["turn"]
        messages = [Message("system", "Answer briefly. Tools: lookup, fetch."), Message("user", task["question"]),
                    *(Message("assistant", text) if i % 2 == 0 else Message("user", f"Observation: {text}")
                      for i, text in enumerate(state["history"]))]
        response = await ctx.chat(messages, sampling=SamplingOptions(max_tokens=task["max_tokens"][n]))
        history = [*state["history"], response.text[:120]]
        observations = []
        for name, units in task["tools"][n]:
            args = {"queries": [f"q{n}-{i}" for i in range(units)]} if name == "lookup" else {"url": f"doc://{n}"}
            observations.append((await ctx.call_tool(name, args)).content[:80])
        return {"turn": n + 1, "history": [*history, " / ".join(observations) or "(no tool)"]}

    graph = StateGraph(_AgentState)
    graph.add_node("turn", turn)
    graph.add_edge(START, "turn")
    graph.add_conditional_edges("turn", lambda s: "turn" if s["turn"] < len(s["task"]["max_tokens"]) else END,
                                ["turn", END])
    return graph


AGENT = workflows.register(Workflow(
    name="integrity_agent", build=_build,
    initial_state=lambda task: {"task": task, "turn": 0, "history": []},
    result=lambda state: {"turns": state["turn"]},
    default_tools=("lookup", "fetch"),
))


def tools() -> ToolRegistry:
    """``lookup`` (one unit per query) and ``fetch`` (one unit per call)."""

    @tool(unit="query", units="queries")
    def lookup(queries: list[str]) -> str:
        """Look queries up."""
        return "; ".join(f"{q}: 巴黎 Paris 🙂" for q in queries)

    @tool(unit="page")
    def fetch(url: str) -> str:
        """Fetch a page."""
        return f"{url}: Paris is the capital of France. 巴黎是法国的首都。"

    return ToolRegistry([lookup, fetch])


# -- the backends --------------------------------------------------------------------------------

def _rng(request: ChatRequest, salt: str) -> random.Random:
    """Drawn from the conversation (not the run id on the wire), so a seed replays the same replies."""
    conversation = json.dumps([request.messages, request.max_tokens], sort_keys=True)
    return random.Random(hashlib.sha256(f"{salt}:{conversation}".encode()).digest())


def _honest(request: ChatRequest) -> str:
    return _rng(request, "reply").choice(REPLIES)


def _bytes(request: ChatRequest) -> Reply:
    """One prompt token per UTF-8 byte plus ChatML's five a message and three to open the reply."""
    size = sum(len(str(m.get("content", "")).encode()) for m in request.messages)
    return Reply(_honest(request), prompt_tokens=size + 5 * len(request.messages) + 3)


def _oversized(request: ChatRequest) -> Reply | str:
    """Honest on about half the calls; otherwise more output (and at times more prompt) than allowed."""
    from orchestrator.llm.scripted import simple_token_count

    rng = _rng(request, "oversized")
    if rng.random() < 0.5:
        return _honest(request)
    allowed = request.max_tokens or 16
    prompt = sum(simple_token_count(str(m.get("content", ""))) for m in request.messages)
    return Reply(_honest(request), prompt_tokens=prompt + (rng.randint(1, 40) if rng.random() < 0.3 else 0),
                 completion_tokens=allowed + rng.randint(1, 2 * allowed))


def _scripted_reply(messages: Sequence[Message]) -> str:
    digest = hashlib.sha256("".join(m.content for m in messages).encode()).digest()
    return REPLIES[digest[0] % len(REPLIES)]


@contextmanager
def backends() -> Iterator[dict[str, dict[str, Any]]]:
    """Runtime ``run`` keyword arguments per backend label, servers running meanwhile."""
    with ExitStack() as stack:
        servers = {"exact": LoopbackServer(_honest), "bytes": LoopbackServer(_bytes, tokenize=False),
                   MISBEHAVING: LoopbackServer(_oversized)}
        out: dict[str, dict[str, Any]] = {"scripted": {"backend": "scripted"}}
        for label, server in servers.items():
            stack.enter_context(server)
            out[label] = {"backend": "openai", "backend_options": {"base_urls": [server.base_url], "model": label}}
        yield out


def runtime(db_url: str, home: Path) -> Runtime:
    return Runtime(Settings(db_url=db_url, home=home), tools=tools(),
                   clients={"scripted": ScriptedClient(ScriptedConfig(_scripted_reply))})


# -- the plan ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunPlan:
    backend: str
    task: dict[str, Any]
    budget: str


_RUN_LIMITS: dict[str, Callable[[random.Random], float]] = {
    "tokens": lambda r: r.randint(100, 5000),
    "input_tokens": lambda r: r.randint(80, 4000),
    "output_tokens": lambda r: r.randint(20, 800),
    "usd": lambda r: round(r.uniform(0.0003, 0.012), 5),
    "lookup": lambda r: r.randint(1, 10),
    "fetch": lambda r: r.randint(1, 5),
}


def pool_budget(rng: random.Random, scope: str, members: int) -> str:
    """Limits of a scope shared by ``members`` runs: a few hundred tokens and a few tool units a
    member, so it binds about halfway through a typical run's plan."""
    return (f"{scope}/tokens={members * rng.randint(100, 600)},{scope}/output_tokens={members * rng.randint(20, 150)},"
            f"{scope}/lookup={members * rng.randint(1, 4)},{scope}/usd={members * rng.uniform(0.0005, 0.004):.5f}")


def plan_runs(seed: int, num_runs: int, *, num_pools: int = 3, misbehaving_share: float = 0.2,
              max_turns: int = 6, shared: str | None = None) -> list[RunPlan]:
    """``num_runs`` random runs; ``shared`` (a budget string) is named by every run instead of a pool
    (so a worker process never resets the limits of the pools the main process sized)."""
    rng = random.Random(seed)
    drafts: list[tuple[str, dict[str, Any], list[str], str | None]] = []
    for _ in range(num_runs):
        bad = shared is None and rng.random() < misbehaving_share
        backend = MISBEHAVING if bad else rng.choice(HONEST)
        turns = rng.randint(1, max_turns)
        task = {"question": " ".join(rng.sample(TEXTS, rng.randint(1, 3))), "backend_label": backend,
                "max_tokens": [rng.choice((8, 16, 32, 64, 128)) for _ in range(turns)],
                "tools": [[(name, rng.randint(1, 3)) for name in ("lookup", "fetch") if rng.random() < 0.5]
                          for _ in range(turns)]}
        if bad:  # token limits (so every over-report meets a reservation) with room for a few calls
            items = [f"tokens={rng.randint(1500, 6000)}", f"output_tokens={rng.randint(300, 1500)}",
                     *(f"{name}={_RUN_LIMITS[name](rng):g}" for name in rng.sample(("lookup", "fetch", "usd"), 1))]
        else:
            items = [f"{name}={_RUN_LIMITS[name](rng):g}"
                     for name in rng.sample(sorted(_RUN_LIMITS), rng.randint(1, 4))]
        pooled = shared is None and num_pools > 0 and rng.random() < 0.5
        pool = "bad-pool" if bad else f"pool-{rng.randrange(num_pools)}" if pooled else None
        drafts.append((backend, task, [*items, shared] if shared else items, pool))
    members = Counter(pool for *_, pool in drafts if pool)
    pools = {pool: pool_budget(rng, pool, n) for pool, n in sorted(members.items())}
    return [RunPlan(backend, task, ",".join([*items, pools[pool]] if pool else items))
            for backend, task, items, pool in drafts]


async def run_plans(rt: Runtime, plans: list[RunPlan], kwargs: dict[str, dict[str, Any]], *, concurrency: int = 16,
                    on_done: Callable[[], None] = lambda: None) -> Counter[str]:
    """Run every plan, ``concurrency`` at a time; the statuses they ended in (``error:<type>`` for a
    run that raised a QuotaFlowError instead of returning, e.g. RunBusy)."""
    sem = asyncio.Semaphore(concurrency)
    statuses: Counter[str] = Counter()

    async def one(plan: RunPlan) -> None:
        async with sem:
            try:
                res = await rt.run(AGENT, plan.task, budget=plan.budget, **kwargs[plan.backend])
                statuses[str(res.status)] += 1
            except QuotaFlowError as exc:
                statuses[f"error:{type(exc).__name__}"] += 1
        on_done()

    await asyncio.gather(*(one(p) for p in plans))
    return statuses


def run_processes(db_url: str, seed: int, num_processes: int, runs_each: int) -> list[subprocess.Popen[str]]:
    """Start ``num_processes`` workers that create and charge ``xproc`` together, about 3 s from now
    (their imports done); the caller waits for them."""
    start_at = time.time() + 3.0
    return [subprocess.Popen([sys.executable, "-m", "bench.integrity.campaign", "worker", "--db", db_url,
                              "--seed", str(seed), "--index", str(i), "--runs", str(runs_each),
                              "--members", str(num_processes * runs_each),
                              "--start-at", f"{start_at:.3f}"],
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for i in range(num_processes)]


def wait_processes(procs: list[subprocess.Popen[str]], timeout_s: float = 300) -> Counter[str]:
    """The statuses the workers' runs ended in; RuntimeError with a worker's stderr if one failed."""
    statuses: Counter[str] = Counter()
    for proc in procs:
        out, err = proc.communicate(timeout=timeout_s)
        if proc.returncode != 0:
            raise RuntimeError(f"integrity worker exited {proc.returncode}:\n{err[-4000:]}")
        statuses.update(json.loads(out.strip().splitlines()[-1]))
    return statuses


async def _worker(db_url: str, seed: int, index: int, runs: int, members: int, start_at: float) -> Counter[str]:
    with tempfile.TemporaryDirectory() as home, backends() as kwargs:
        rt = runtime(db_url, Path(home))
        try:
            await rt.store.ensure_schema()
            shared = pool_budget(random.Random(seed), XPROC_SCOPE, members)  # the same in every worker
            plans = plan_runs(seed * 1000 + index, runs, shared=shared)
            await asyncio.sleep(max(0.0, start_at - time.time()))
            return await run_plans(rt, plans, kwargs, concurrency=runs)
        finally:
            await rt.aclose()


# -- the audit -----------------------------------------------------------------------------------

async def audit(rt: Runtime) -> dict[str, Any]:
    """Every account, entry, run and call record of the database, checked (see the module doc)."""
    async with rt.store.session() as s:
        runs = {rid: (status, (task or {}).get("backend_label", "")) for rid, status, task in
                (await s.execute(select(RunRow.id, RunRow.status, RunRow.task))).all()}
        accounts = (await s.execute(select(BudgetAccountRow))).scalars().all()
        entries = (await s.execute(select(LedgerEntryRow))).scalars().all()
        llm = (await s.execute(select(LLMCallRow.run_id, LLMCallRow.input_tokens, LLMCallRow.output_tokens,
                                      LLMCallRow.cost_usd))).all()
        tool_rows = (await s.execute(select(ToolCallRow.run_id, ToolCallRow.tool, ToolCallRow.units,
                                            ToolCallRow.cost_usd).where(~ToolCallRow.refused))).all()
    used: dict[str, Counter[str]] = defaultdict(Counter)
    for rid, inp, out, cost in llm:
        used[rid].update({"tokens": inp + out, "tokens:input": inp, "tokens:output": out, "usd": cost})
    for rid, name, units, cost in tool_rows:
        used[rid].update({f"tool:{name}": units, "usd": cost})
    charged_by: dict[int, set[str]] = defaultdict(set)
    for e in entries:
        charged_by[e.account_id].add(e.run_id or "")
    ratios: dict[str, float] = {}
    violations, mismatches, leaked = 0, 0, 0.0
    for a in accounts:
        leaked += a.reserved
        rids = {a.scope.removeprefix("run:")} if a.scope.startswith("run:") else charged_by[a.id]
        truth = sum(used[r][a.resource] for r in rids)
        mismatches += abs(truth - a.spent) > _EPS * max(1.0, truth)
        if a.limit_amount and all(runs.get(r, ("", ""))[1] != MISBEHAVING for r in rids):
            ratios[a.resource] = max(ratios.get(a.resource, 0.0), a.spent / a.limit_amount)
            violations += a.spent > a.limit_amount + _EPS
    over = [e for e in entries if e.settled_amount > e.reserved_amount + _EPS]
    bad_runs = {r for r, (_, label) in runs.items() if label == MISBEHAVING}
    overrun_runs = {e.run_id for e in over}
    return {
        "runs": len(runs), "runs_by_status": dict(Counter(status for status, _ in runs.values())),
        "llm_calls": len(llm), "tool_calls": len(tool_rows),
        "limits": sum(a.limit_amount is not None for a in accounts),
        "limits_by_resource": dict(sorted(Counter(a.resource for a in accounts if a.limit_amount is not None).items())),
        "max_spent_over_limit": {k: round(v, 6) for k, v in sorted(ratios.items())},
        "limit_violations": violations, "reserved_left": round(leaked, 9), "spent_mismatches": mismatches,
        "runs_left_running": sum(status == "running" for status, _ in runs.values()),
        "overrun_events": {
            "honest": sum(e.run_id not in bad_runs for e in over),
            "misbehaving": sum(e.run_id in bad_runs for e in over),
            "flagged": sum(e.status == "overrun" and runs[e.run_id or ""][0] == "paused" for e in over),
            "unflagged": sum(e.status != "overrun" or runs[e.run_id or ""][0] != "paused" for e in over),
            "runs_with_overrun": len(overrun_runs), "misbehaving_runs": len(bad_runs),
        },
    }


def check(summary: dict[str, Any]) -> list[str]:
    """What in an audit (with ``run_outcomes`` where given) breaks a promise of the ledger or the
    runtime (empty: every limit held, every run ended)."""
    problems = [f"{k} = {summary[k]}" for k in ("limit_violations", "spent_mismatches", "runs_left_running")
                if summary[k]]
    problems += [f"{n} runs raised {outcome.removeprefix('error:')}"
                 for outcome, n in summary.get("run_outcomes", {}).items() if outcome.startswith("error:")]
    if summary["reserved_left"] > _EPS:
        problems.append(f"reserved_left = {summary['reserved_left']}")
    problems += [f"{unit}: spent/limit {ratio} > 1" for unit, ratio in summary["max_spent_over_limit"].items()
                 if ratio > 1 + _EPS]
    events = summary["overrun_events"]
    problems += [f"overrun_events.{k} = {events[k]}" for k in ("honest", "unflagged") if events[k]]
    return problems


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.integrity.campaign")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help=f"runs naming the shared scope {XPROC_SCOPE!r}, at --start-at")
    worker.add_argument("--db", required=True)
    worker.add_argument("--seed", type=int, required=True)
    worker.add_argument("--index", type=int, required=True)
    worker.add_argument("--runs", type=int, default=6)
    worker.add_argument("--members", type=int, default=12, help="runs of all workers (sizes the shared limits)")
    worker.add_argument("--start-at", type=float, default=0.0, help="epoch seconds")
    args = parser.parse_args(argv)
    statuses = asyncio.run(_worker(args.db, args.seed, args.index, args.runs, args.members, args.start_at))
    print(json.dumps(dict(statuses)))


if __name__ == "__main__":
    main()
