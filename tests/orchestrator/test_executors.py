"""Executors: the local one is the default (the single-process path as before), a name or an
instance picks another, and importing the runtime never imports Ray."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import BadInputError
from orchestrator.executors import Executor, LocalExecutor, create_executor
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from orchestrator.types import RunResult

ROOT = Path(__file__).resolve().parents[2]
ANSWER = {"backend": "scripted", "backend_options": {"responses": ["answer: Paris"] * 3}, "tools": []}


def test_the_local_executor_is_the_default_and_keeps_task_order(tmp_path: Path) -> None:
    async def go() -> tuple[list[RunResult], list[RunResult]]:
        rt = Runtime(Settings(db_url=f"sqlite:///{tmp_path / 'a.db'}"))
        try:
            done: list[RunResult] = []
            default = await rt.run_many("react", [{"question": "a"}, {"question": "b"}], on_done=done.append, **ANSWER)
            named = await rt.run_many("react", [{"question": "c"}], executor="local", **ANSWER)
            assert len(done) == 2
            return default, named
        finally:
            await rt.aclose()

    default, named = asyncio.run(go())
    assert [r.status for r in default + named] == ["succeeded"] * 3
    assert len({r.run_id for r in default + named}) == 3


def test_an_executor_instance_runs_the_programs(tmp_path: Path) -> None:
    class Recording(LocalExecutor):
        calls: list[dict[str, Any]] = []  # noqa: RUF012 - a test double's record

        async def run_many(self, runtime: Runtime, workflow: Any, tasks: list[dict[str, Any]], *,
                           concurrency: int, on_done: Any, **run_kwargs: Any) -> list[RunResult]:
            self.calls.append({"tasks": len(tasks), "concurrency": concurrency, **run_kwargs})
            return await super().run_many(runtime, workflow, tasks, concurrency=concurrency, on_done=on_done,
                                          **run_kwargs)

    async def go() -> list[RunResult]:
        rt = Runtime(Settings(db_url=f"sqlite:///{tmp_path / 'a.db'}"))
        try:
            return await rt.run_many("react", [{"question": "a"}], concurrency=3, executor=Recording(), **ANSWER)
        finally:
            await rt.aclose()

    assert [r.status for r in asyncio.run(go())] == ["succeeded"]
    assert Recording.calls == [{"tasks": 1, "concurrency": 3, **ANSWER}]
    assert isinstance(Recording(), Executor)


def test_an_unknown_executor_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="executor 'spark': expected one of local, ray"):
        create_executor("spark")


def test_importing_the_runtime_does_not_import_ray() -> None:
    code = "import sys, orchestrator.runtime, orchestrator.executors; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_a_retry_waits_out_a_lease_held_on_another_host_then_resumes(db_url: str, tmp_path: Path) -> None:
    """What a Ray retry does when the dead worker was on another host: its lease cannot be seen to
    be dead, so the retry polls until it expires, then resumes the run from its checkpoint."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from orchestrator.executors.ray_executor import ProgramWorker
    from orchestrator.store.models import RunRow
    from orchestrator.testing import LoopbackServer
    from tests.orchestrator.ray_programs import SEARCHES, WorkerRuntime, react_agent

    async def go(base_url: str) -> None:
        factory = WorkerRuntime(db_url, str(tmp_path), block_once=True)
        kwargs = {"backend": "openai", "backend_options": {"base_urls": [base_url], "model": "m"},
                  "tools": ["search"], "budget": "search=10", "options": {"max_turns": 8}}
        first = ProgramWorker(factory, "w0")
        attempt = asyncio.ensure_future(first.run("react", {"question": "abc"}, "leased00000001", kwargs))
        while not (tmp_path / "blocked.pid").exists():  # the third search blocks: the "worker dies" there
            await asyncio.sleep(0.02)
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        await first.aclose()
        expiry = datetime.now(UTC) + timedelta(seconds=1.5)
        rt = Runtime(Settings(db_url=db_url))
        async with rt.store.session() as s:  # as a worker of another host would have left it
            await s.execute(update(RunRow).where(RunRow.id == "leased00000001")
                            .values(lease_owner="elsewhere:4242:deadbeef", lease_expires_at=expiry))
        retry = ProgramWorker(factory, "w1")
        try:
            result = await retry.run("react", {"question": "abc"}, "leased00000001", kwargs)
            assert datetime.now(UTC) >= expiry  # it waited for the lease
            assert (result.status, result.result["answer"]) == ("succeeded", "cba")  # type: ignore[index]
            row = await rt.get_run("leased00000001")
            assert row.worker is not None and row.worker.startswith("w1@")
            again = await retry.run("react", {"question": "abc"}, "leased00000001", kwargs)
            assert again == result  # a run that ended keeps its outcome: nothing runs again
        finally:
            await retry.aclose()
            await rt.aclose()
        searches = (tmp_path / "calls.log").read_text().splitlines()
        assert len(searches) == SEARCHES + 1  # the blocked search, sent again; the others replayed

    with LoopbackServer(react_agent) as server:
        asyncio.run(go(server.base_url))
