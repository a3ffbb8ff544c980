"""The local executor: programs on the runtime's own event loop, in this process."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from orchestrator.errors import QuotaFlowError
from orchestrator.executors.base import OnDone
from orchestrator.types import RunResult

if TYPE_CHECKING:
    from orchestrator.runtime import Runtime
    from orchestrator.workflow import Workflow


class LocalExecutor:
    """``concurrency`` programs at a time on this process's event loop (the default executor)."""

    async def run_many(self, runtime: Runtime, workflow: str | Workflow, tasks: list[dict[str, Any]], *,
                       concurrency: int, on_done: OnDone | None, **run_kwargs: Any) -> list[RunResult]:
        sem = asyncio.Semaphore(max(1, concurrency))

        async def one(task: dict[str, Any]) -> RunResult:
            async with sem:
                try:
                    res = await runtime.run(workflow, task, **run_kwargs)
                except QuotaFlowError as exc:
                    res = RunResult.failed(exc)
                if on_done is not None:
                    on_done(res)
                return res

        return list(await asyncio.gather(*(one(t) for t in tasks)))

    async def start(self, runtime: Runtime) -> None:
        return None

    async def aclose(self) -> None:
        return None
