"""The executor interface: where the programs of ``Runtime.run_many`` run."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from orchestrator.runtime import Runtime
    from orchestrator.types import RunResult
    from orchestrator.workflow import Workflow

OnDone = Callable[["RunResult"], None]
"""Called on the driver with each program's result as it finishes (progress, collection)."""


@runtime_checkable
class Executor(Protocol):
    """Runs one program per task for a runtime (the driver's), results in task order.

    Every program is a run of ``runtime.run(workflow, task, **run_kwargs)`` semantics: its own run
    row, budget and checkpoints in the runtime's database, whichever process executes it. A task
    that fails before its run is stored comes back as a failed result with an empty run id."""

    async def run_many(self, runtime: Runtime, workflow: str | Workflow, tasks: list[dict[str, Any]], *,
                       concurrency: int, on_done: OnDone | None, **run_kwargs: Any) -> list[RunResult]:
        """Run every task; ``concurrency`` is the number of programs in flight per worker."""
        ...

    async def start(self, runtime: Runtime) -> None:
        """Get ready to run ``runtime``'s programs (join a cluster, start workers); ``run_many``
        does it when needed, a caller may do it first to fail before anything is stored."""
        ...

    async def aclose(self) -> None:
        """Give back what the executor started (workers, a cluster it started itself)."""
        ...
