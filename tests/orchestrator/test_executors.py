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
