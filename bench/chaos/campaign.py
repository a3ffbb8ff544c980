"""Crash and resume, randomized (issue 16): SIGKILL a run at a random point, resume it, and compare
it with the same run left alone.

One *trial*: a worker process (:mod:`bench.chaos.worker`) runs a case of :mod:`bench.chaos.cases`
on a fresh database and is SIGKILLed at its ``kill_at``-th *request* (while the provider handles
it: the scripted rule kills its own process; the loopback server kills the worker before
answering) or at its ``kill_at``-th *checkpoint* (the worker kills itself when LangGraph goes to
save it: the tasks of the step before it have ended, their results are not stored), so the kill
lands anywhere between the first and the last request or graph step. The run is then resumed in
this process and compared with the *reference*, the uninterrupted run of the same case on a
database of its own: result, final state, trajectory (steps), LLM and tool call records and the
ledger's spent per resource. A resumed run that charges more than the reference is a double
charge; one that fails with ReplayDivergence is a divergence; requests sent to the provider beyond
the reference's are counted as re-sent (a request in flight at the kill is sent again:
at-least-once to the provider, exactly once in the records).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.chaos.cases import Case, case_tools, load_cases, repo_root
from orchestrator.types import Message

BACKENDS = ("scripted", "loopback")
KILL_AT = ("request", "checkpoint")
"""Where a trial's kill lands: while the provider handles the n-th request, or as LangGraph saves
the n-th checkpoint."""
RUN_ID = "chaos0000000001"
WORKER_TIMEOUT_S = 120


# -- the provider: a counting rule, scripted or behind the loopback server ------------------------

class Provider:
    """Counts the requests a case's rule answers; ``on_request(n)`` runs before the n-th reply."""

    def __init__(self, rule: Callable[[Sequence[Message]], str]) -> None:
        self.rule = rule
        self.count = 0
        self.on_request: Callable[[int], None] | None = None
        self._lock = threading.Lock()

    def __call__(self, messages: Sequence[Message]) -> str:
        with self._lock:
            self.count += 1
            n = self.count
        if self.on_request is not None:
            self.on_request(n)
        return self.rule(messages)

    def reset(self) -> int:
        with self._lock:
            n, self.count = self.count, 0
        return n


def scripted_client(provider: Provider) -> Any:
    from orchestrator.testing import ScriptedClient, ScriptedConfig

    return ScriptedClient(ScriptedConfig(responses=provider))


@contextmanager
def loopback(provider: Provider) -> Iterator[Any]:
    from orchestrator.testing import ChatRequest, LoopbackServer

    def respond(request: ChatRequest) -> str:
        return provider([Message(m["role"], m["content"]) for m in request.messages])

    with LoopbackServer(respond) as server:
        yield server


def runtime(db_url: str, home: Path, provider: Provider) -> Any:
    from orchestrator.runtime import Runtime
    from orchestrator.settings import Settings

    return Runtime(Settings(db_url=db_url, home=home), tools=case_tools(),
                   clients={"scripted": scripted_client(provider)})


def run_kwargs(case: Case, backend: str, server: Any = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"tools": list(case.tools), "budget": case.budget, "options": dict(case.options),
                              "run_id": RUN_ID}
    if backend == "scripted":
        kwargs["backend"] = "scripted"
    else:
        kwargs["backend"] = "openai"
        kwargs["backend_options"] = {"base_urls": [server.base_url], "model": server.model}
    return kwargs


# -- what a run left in the store --------------------------------------------------------------------

async def facts(rt: Any, run_id: str) -> dict[str, Any]:
    """Everything compared between a resumed run and its reference."""
    from sqlalchemy import func, select

    from budget.tables import BudgetAccountRow
    from orchestrator.store.models import LLMCallRow, RunRow, StepRow, ToolCallRow

    async with rt.store.session() as s:
        run = (await s.execute(select(RunRow.status, RunRow.result).where(RunRow.id == run_id))).one()
        steps = (await s.execute(select(StepRow.node, StepRow.data).where(StepRow.run_id == run_id)
                                 .order_by(StepRow.id))).all()
        num_llm = (await s.execute(select(func.count()).where(LLMCallRow.run_id == run_id))).scalar_one()
        tools = (await s.execute(select(ToolCallRow.tool, ToolCallRow.arguments, ToolCallRow.units)
                                 .where(ToolCallRow.run_id == run_id))).all()
        accounts = (await s.execute(select(BudgetAccountRow.resource, BudgetAccountRow.spent,
                                           BudgetAccountRow.reserved)
                                    .where(BudgetAccountRow.scope == f"run:{run_id}"))).all()
    return {
        "status": str(run.status), "result": run.result, "state": await rt.get_state(run_id),
        "steps": [[n, d] for n, d in steps], "num_llm_calls": num_llm,
        "tool_calls": sorted(([n, a, float(u or 0)] for n, a, u in tools), key=json.dumps),
        "spent": {r: float(sp) for r, sp, _ in accounts}, "reserved": {r: float(re) for r, _, re in accounts},
    }


def compare(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """What differs between a resumed run and its reference (empty: identical)."""
    return [key for key in ("status", "result", "state", "steps", "num_llm_calls", "tool_calls", "spent")
            if got[key] != want[key]] + (["reserved"] if any(got["reserved"].values()) else [])


def double_charged(got: dict[str, Any], want: dict[str, Any]) -> bool:
    more_spent = any(got["spent"].get(r, 0.0) > v + 1e-9 for r, v in want["spent"].items())
    more_calls = len(got["tool_calls"]) > len(want["tool_calls"]) or got["num_llm_calls"] > want["num_llm_calls"]
    return more_spent or more_calls


# -- one trial ---------------------------------------------------------------------------------------

@dataclass
class Trial:
    workflow: str
    backend: str
    kill_at: int
    at: str = "request"
    killed: bool = False
    identical: bool = False
    differences: list[str] = field(default_factory=list)
    double_charge: bool = False
    divergence: bool = False
    resent_requests: int = 0
    error: str | None = None


def start_worker(name: str, db_url: str, home: Path, backend: str, kill_at: int, base_url: str = "",
                 at: str = "request") -> subprocess.Popen[bytes]:
    root = repo_root()
    point = str(kill_at) if at == "request" else f"{at}:{kill_at}"
    return subprocess.Popen([sys.executable, "-m", "bench.chaos.worker", name, db_url, str(home), backend,
                             point, base_url], cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


SENT = "requests sent before the kill: "
"""What a worker that kills itself at a checkpoint prints first (its provider's count)."""


def die_at_checkpoint(saver: Any, n: int, before_kill: Callable[[], None]) -> None:
    """Make ``saver`` SIGKILL this process when asked to save its ``n``-th checkpoint."""
    put = saver.aput
    count = 0

    async def aput(config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        nonlocal count
        count += 1
        if count == n:
            before_kill()
            os.kill(os.getpid(), signal.SIGKILL)
        return await put(config, checkpoint, metadata, new_versions)

    saver.aput = aput


async def checkpoints_of(rt: Any, run_id: str) -> int:
    """Checkpoints the run's thread holds (both savers name their table ``checkpoints``)."""
    from sqlalchemy import text

    async with rt.store.session() as s:
        return int((await s.execute(text("SELECT count(*) FROM checkpoints WHERE thread_id = :t"),
                                    {"t": run_id})).scalar_one())


async def reference(name: str, backend: str, db_url: str, home: Path) -> tuple[dict[str, Any], int, int]:
    """The uninterrupted run: its facts, how many requests it sent and checkpoints it saved."""
    case = load_cases()[name]
    provider = Provider(case.rule)
    with loopback(provider) if backend == "loopback" else _nothing() as server:
        async with runtime(db_url, home, provider) as rt:
            result = await rt.run(case.workflow, case.task, **run_kwargs(case, backend, server))
            if result.status != "succeeded":
                raise RuntimeError(f"reference {name}/{backend} ended {result.status}: {result.error}")
            return await facts(rt, RUN_ID), provider.count, await checkpoints_of(rt, RUN_ID)


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


async def trial(name: str, backend: str, db_url: str, home: Path, kill_at: int, want: dict[str, Any],
                num_reference_requests: int, at: str = "request") -> Trial:
    """Kill a fresh run of ``name`` at its ``kill_at``-th request (or checkpoint, ``at``),
    resume it, compare."""
    case = load_cases()[name]
    out = Trial(name, backend, kill_at, at)
    provider = Provider(case.rule)
    with loopback(provider) if backend == "loopback" else _nothing() as server:
        victim: list[subprocess.Popen[bytes]] = []
        if server is not None and at == "request":
            def kill(n: int) -> None:
                if n == kill_at and victim:
                    victim[0].send_signal(signal.SIGKILL)
                    victim[0].wait()
            provider.on_request = kill
        proc = start_worker(name, db_url, home, backend, kill_at, server.base_url if server else "", at)
        victim.append(proc)
        try:
            stdout, stderr = await asyncio.to_thread(proc.communicate, timeout=WORKER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            out.error = f"worker hung for {WORKER_TIMEOUT_S} s"
            return out
        out.killed = proc.returncode == -signal.SIGKILL
        if not out.killed and proc.returncode != 0:
            out.error = f"worker exited {proc.returncode}: {stderr.decode(errors='replace')[-500:]}"
            return out
        if server is not None:
            sent_before = provider.reset()
        elif not out.killed:
            sent_before = num_reference_requests
        elif at == "request":
            sent_before = kill_at
        else:
            sent_before = int(stdout.decode().partition(SENT)[2].split()[0])
        provider.on_request = None
        async with runtime(db_url, home, provider) as rt:
            resumed = await rt.resume(RUN_ID)
            got = await facts(rt, RUN_ID)
    out.divergence = "ReplayDivergence" in str(resumed.error) or "diverge" in str(resumed.error or "").lower()
    out.differences = compare(got, want)
    out.identical = not out.differences
    out.double_charge = double_charged(got, want)
    out.resent_requests = sent_before + provider.count - num_reference_requests
    if resumed.status != "succeeded":
        out.error = f"resume ended {resumed.status}: {resumed.error}"
    return out


def kill_points(seed: int, num_kills: int, num_requests: int) -> list[int]:
    """``num_kills`` request numbers in 1..num_requests, seeded: spread evenly from the first to
    the last (the last checkpoint follows the run's final step: its side effects are done, its
    results not yet stored), the rest at random."""
    rng = random.Random(seed)
    spread = min(num_kills, num_requests)
    if spread < 2:
        return [rng.randint(1, num_requests) for _ in range(num_kills)]
    return [1 + (i * (num_requests - 1)) // (spread - 1) if i < spread else rng.randint(1, num_requests)
            for i in range(num_kills)]


async def campaign(name: str, backend: str, new_db: Callable[[str], str], home: Path, *, seed: int,
                   num_kills: int, at: str = "request",
                   on_trial: Callable[[Trial], None] | None = None) -> dict[str, Any]:
    """``num_kills`` trials of one case on one backend, killed at requests or checkpoints (``at``);
    each on a database ``new_db(label)`` returns."""
    want, num_requests, num_checkpoints = await reference(name, backend, new_db(f"ref_{name}_{backend}_{at}"), home)
    trials = []
    points = kill_points(seed, num_kills, num_requests if at == "request" else num_checkpoints)
    for i, kill_at in enumerate(points):
        t = await trial(name, backend, new_db(f"kill_{name}_{backend}_{at}_{i}"), home, kill_at, want, num_requests,
                        at)
        trials.append(t)
        if on_trial is not None:
            on_trial(t)
    return {"at": at, **summarize(trials, num_requests), "reference_checkpoints": num_checkpoints}


def summarize(trials: list[Trial], num_reference_requests: int) -> dict[str, Any]:
    return {
        "kills": sum(t.killed for t in trials),
        "trials": len(trials),
        "identical": sum(t.identical for t in trials),
        "double_charges": sum(t.double_charge for t in trials),
        "divergences": sum(t.divergence for t in trials),
        # Over the trials that resumed exactly (a run that took another path sent other requests).
        "resent_requests": sum(t.resent_requests for t in trials if t.identical),
        "reference_requests": num_reference_requests,
        "errors": [t.error for t in trials if t.error][:5],
        "differences": sorted({d for t in trials for d in t.differences}),
        "kill_points": [t.kill_at for t in trials],
        "failures": [{"kill_at": t.kill_at, "differences": t.differences, "error": (t.error or "")[:300]}
                     for t in trials if not t.identical or t.error][:10],
    }
