"""The Ray executor on a real local Ray cluster (2 worker actors) and the real PostgreSQL server:
a dataset runs to the results of the local executor, every turn of a program reaches the replica
its id is routed to whichever worker runs it, a shared scope's limit holds exactly across
workers, a worker killed mid-run (by its pid) is retried and its programs resume with no double
charge and the same result, and a program that kills its worker every time is marked failed."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from budget.limits import tool_resource
from budget.tables import BudgetAccountRow
from orchestrator.executors.ray_executor import RayExecutor
from orchestrator.llm.routing import rank_endpoints
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from orchestrator.store.models import LLMCallRow, RunRow, ToolCallRow
from orchestrator.testing import LoopbackServer
from orchestrator.types import RunResult
from serving_patch.core.hints import ProgramHints
from tests import pg
from tests.orchestrator.ray_programs import DOOM, SEARCHES, WorkerRuntime, react_agent
from tests.ray_cluster import ray_cluster

pytestmark = pytest.mark.postgres
__all__ = ["ray_cluster"]  # the fixture, imported for the tests below

MODEL = "loopback-model"
TASKS = [{"question": f"question {i}"} for i in range(6)]
RUN = {"backend": "openai", "tools": ["search"], "budget": "search=10", "options": {"max_turns": 8}}


@pytest.fixture
def replicas() -> Iterator[list[LoopbackServer]]:
    """Two OpenAI-compatible replicas on loopback: programs are routed between them by id."""
    with LoopbackServer(react_agent, model=MODEL) as a, LoopbackServer(react_agent, model=MODEL) as b:
        yield [a, b]


@pytest.fixture
def db_url(pg_server: pg.PgServer, request: pytest.FixtureRequest) -> str:
    return pg_server.create_db(f"qf_ray_{os.getpid()}_{request.node.name[:30].lower()}")


def _run_kwargs(replicas: list[LoopbackServer], **changes: Any) -> dict[str, Any]:
    return {**RUN, "backend_options": {"base_urls": [r.base_url for r in replicas], "model": MODEL}, **changes}


def _executor(db_url: str, scratch: Path, **options: Any) -> RayExecutor:
    scratch.mkdir(exist_ok=True)
    return RayExecutor(num_workers=2, runtime_factory=WorkerRuntime(db_url, str(scratch), **options.pop("rt", {})),
                       **options)


async def _local(db_url: str, scratch: Path, kwargs: dict[str, Any]) -> list[RunResult]:
    scratch.mkdir(exist_ok=True)
    rt = WorkerRuntime(db_url, str(scratch))()
    try:
        return await rt.run_many("react", TASKS, concurrency=2, **kwargs)
    finally:
        await rt.aclose()


async def _facts(rt: Runtime, run_id: str) -> dict[str, Any]:
    async with rt.store.session() as s:
        tools = (await s.execute(select(func.count()).where(ToolCallRow.run_id == run_id))).scalar_one()
        llm = (await s.execute(select(func.count()).where(LLMCallRow.run_id == run_id))).scalar_one()
        spent, reserved = (await s.execute(select(BudgetAccountRow.spent, BudgetAccountRow.reserved).where(
            BudgetAccountRow.scope == f"run:{run_id}", BudgetAccountRow.resource == tool_resource("search")))).one()
    return {"tool_calls": tools, "llm_calls": llm, "searches_charged": spent, "reserved": reserved}


def _assert_affinity(replicas: list[LoopbackServer], run_ids: list[str]) -> None:
    urls = [r.base_url for r in replicas]
    seen: dict[str, set[int]] = {}
    for i, replica in enumerate(replicas):
        for body in replica.chat_bodies:
            hints = ProgramHints.parse(body.get("vllm_xargs"))
            assert hints is not None
            seen.setdefault(hints.program_id, set()).add(i)
    for run_id in run_ids:
        assert seen[run_id] == {rank_endpoints(urls, run_id)[0]}, f"{run_id}: turns reached replicas {seen[run_id]}"


def test_a_dataset_on_ray_matches_the_local_executor(ray_cluster: Any, db_url: str, tmp_path: Path,
                                                     replicas: list[LoopbackServer]) -> None:
    async def go() -> None:
        kwargs = _run_kwargs(replicas)
        executor = _executor(db_url, tmp_path / "ray")
        driver = Runtime(Settings(db_url=db_url))
        done: list[RunResult] = []
        try:
            parent = await driver.run_dataset("react", TASKS, source="tasks.jsonl", concurrency=2,
                                              executor=executor, on_done=done.append, **kwargs)
            on_ray = [await driver.get_run(i) for i in parent.result["runs"]]  # type: ignore[index]
            local = await _local(db_url, tmp_path / "local", kwargs)
            assert parent.status == "succeeded" and len(done) == len(TASKS)  # progress: one call per program
            assert [r.result for r in on_ray] == [r.result for r in local]
            assert [r.result["answer"] for r in local] == [t["question"][::-1] for t in TASKS]  # type: ignore[index]
            assert {r.parent_id for r in on_ray} == {parent.run_id}
            # Each worker recorded itself on the runs it ran, and both ran some.
            assert {r.worker for r in on_ray} == {w["name"] for w in executor.workers}
            assert [await _facts(driver, r.id) for r in on_ray] == [await _facts(driver, r.run_id) for r in local]
            _assert_affinity(replicas, [r.id for r in on_ray] + [r.run_id for r in local])
            # Bad input in a worker (an unknown tool) fails that program before it is stored, as locally.
            bad = await driver.run_many("react", TASKS[:1], executor=executor, **{**kwargs, "tools": ["nope"]})
            assert (bad[0].run_id, bad[0].status, bad[0].exit_code) == ("", "failed", 2)
            assert "nope" in (bad[0].error or "")
        finally:
            await executor.aclose()
            await driver.aclose()

    asyncio.run(go())


def test_a_shared_scope_limit_holds_exactly_across_workers(ray_cluster: Any, db_url: str, tmp_path: Path,
                                                          replicas: list[LoopbackServer]) -> None:
    limit = 7  # 6 programs want 4 searches each, 24 in all, from 2 workers with 3 programs in flight each

    async def go() -> None:
        executor = _executor(db_url, tmp_path)
        driver = Runtime(Settings(db_url=db_url))
        try:
            results = await driver.run_many("react", TASKS, concurrency=3, executor=executor,
                                            **_run_kwargs(replicas, budget=f"search=10,team/search={limit}"))
            async with driver.store.session() as s:
                spent, reserved = (await s.execute(select(BudgetAccountRow.spent, BudgetAccountRow.reserved).where(
                    BudgetAccountRow.scope == "team", BudgetAccountRow.resource == tool_resource("search")))).one()
                done = (await s.execute(select(func.count()).where(ToolCallRow.refused.is_(False)))).scalar_one()
                refused = (await s.execute(select(func.count()).where(ToolCallRow.refused.is_(True)))).scalar_one()
                workers = set((await s.execute(select(RunRow.worker).where(RunRow.worker.is_not(None)))).scalars())
        finally:
            await executor.aclose()
            await driver.aclose()
        assert (spent, reserved, done) == (limit, 0, limit)
        assert refused > 0 and len(results) == len(TASKS)  # the other searches were refused, on both workers
        assert len(workers) == 2

    asyncio.run(go())


async def _wait_for_pid(path: Path, timeout_s: float = 120) -> int:
    """The pid the blocked search writes, polled until a deadline."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, "no search blocked: the programs did not start"
        await asyncio.sleep(0.05)
    return int(path.read_text())


def test_a_killed_worker_is_retried_and_its_programs_resume(ray_cluster: Any, db_url: str, tmp_path: Path,
                                                            replicas: list[LoopbackServer]) -> None:
    async def go() -> None:
        kwargs = _run_kwargs(replicas)
        executor = _executor(db_url, tmp_path / "ray", rt={"block_once": True})
        driver = Runtime(Settings(db_url=db_url))
        try:
            running = asyncio.ensure_future(driver.run_many("react", TASKS, concurrency=2, executor=executor,
                                                            **kwargs))
            killed = await _wait_for_pid(tmp_path / "ray" / "blocked.pid")
            assert killed in {w["pid"] for w in executor.workers}
            os.kill(killed, signal.SIGKILL)
            on_ray = await running
            local = await _local(db_url, tmp_path / "local", kwargs)
            assert [r.status for r in on_ray] == ["succeeded"] * len(TASKS)
            assert [r.result for r in on_ray] == [r.result for r in local]
            facts = [await _facts(driver, r.run_id) for r in on_ray]
            assert facts == [await _facts(driver, r.run_id) for r in local]  # no double charge, no extra call
            assert facts[0] == {"tool_calls": SEARCHES, "llm_calls": SEARCHES + 2, "searches_charged": SEARCHES,
                                "reserved": 0}  # SEARCHES + 1 turns and the reading call
            # The blocked program (at least) was sent again and ended in the restarted worker process.
            started = {w["pid"] for w in executor.workers}
            names = [(await driver.get_run(r.run_id)).worker or "" for r in on_ray]
            ended_in = {int(name.rsplit(":", 1)[1]) for name in names}
            assert ended_in - started, f"no run ended in a new worker process: {ended_in} vs {started}"
            _assert_affinity(replicas, [r.run_id for r in on_ray])
        finally:
            await executor.aclose()
            await driver.aclose()
        # Resumed, not restarted: besides each program's searches, only the ones in flight on the
        # killed worker (at most its 2 programs) ran again.
        executed = (tmp_path / "ray" / "calls.log").read_text().splitlines()
        assert len(TASKS) * SEARCHES <= len(executed) <= len(TASKS) * SEARCHES + 2
        assert any(line.startswith(f"{killed} ") for line in executed)

    asyncio.run(go())


def test_a_program_that_kills_its_worker_every_time_is_marked_failed(ray_cluster: Any, db_url: str,
                                                                     tmp_path: Path,
                                                                     replicas: list[LoopbackServer]) -> None:
    async def go() -> None:
        executor = _executor(db_url, tmp_path, max_retries=1)
        driver = Runtime(Settings(db_url=db_url))
        try:
            doomed, fine = await driver.run_many("react", [{"question": DOOM}, {"question": "fine"}], concurrency=1,
                                                 executor=executor, **_run_kwargs(replicas))
            row = await driver.get_run(doomed.run_id)
        finally:
            await executor.aclose()
            await driver.aclose()
        assert (doomed.status, doomed.exit_code, row.status) == ("failed", 4, "failed")
        assert "died on each of 2 attempt(s)" in (row.error or "")
        assert f"quotaflow resume {doomed.run_id}" in (row.error or "")
        assert fine.status == "succeeded"
        attempts = [line for line in (tmp_path / "calls.log").read_text().splitlines() if line.endswith(DOOM)]
        assert len(attempts) == 2 and len({line.split()[0] for line in attempts}) == 2  # two processes died

    asyncio.run(go())
