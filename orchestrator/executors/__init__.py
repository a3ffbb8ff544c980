"""Where the programs of a dataset run: executors.

    results = await runtime.run_many("react", tasks, executor="local")        # this process (default)
    results = await runtime.run_many("react", tasks, executor=RayExecutor())   # Ray workers

- :class:`Executor`: the interface, one method that runs one program per task and returns the
  results in task order, calling ``on_done`` as each finishes (the driver's progress).
- :class:`LocalExecutor` (``"local"``): the runtime's own event loop, ``concurrency`` programs at a
  time. The default; the single-process path is exactly this.
- :class:`~orchestrator.executors.ray_executor.RayExecutor` (``"ray"``, the ``ray`` extra): programs
  on Ray workers, each holding a Runtime on the same database; ray is imported only when one is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.executors.base import Executor, OnDone
from orchestrator.executors.local import LocalExecutor

if TYPE_CHECKING:
    from orchestrator.executors.ray_executor import RayExecutor
    from orchestrator.runtime import Runtime
    from orchestrator.types import RunResult
    from orchestrator.workflow import Workflow

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "OnDone", "RayExecutor", "create_executor", "run_many"]

EXECUTORS = ("local", "ray")
"""The executor names ``create_executor`` (and ``quotaflow run --executor``) knows."""


def create_executor(name: str, **options: Any) -> Executor:
    """The executor called ``name`` (one of :data:`EXECUTORS`) with its ``options``."""
    from orchestrator.errors import BadInputError

    if name == "local":
        return LocalExecutor(**options)
    if name == "ray":
        from orchestrator.executors.ray_executor import RayExecutor

        return RayExecutor(**options)
    raise BadInputError(f"executor {name!r}", "one of " + ", ".join(EXECUTORS))


async def run_many(runtime: Runtime, workflow: str | Workflow, tasks: list[dict[str, Any]], *,
                   executor: Executor | str | None, concurrency: int, on_done: OnDone | None,
                   **kwargs: Any) -> list[RunResult]:
    """``Runtime.run_many`` on ``executor`` (an instance, a name, or None for local); an executor
    made here from its name is closed again afterwards."""
    if executor is None or executor == "local":
        return await _LOCAL.run_many(runtime, workflow, tasks, concurrency=concurrency, on_done=on_done, **kwargs)
    if not isinstance(executor, str):
        return await executor.run_many(runtime, workflow, tasks, concurrency=concurrency, on_done=on_done, **kwargs)
    made = create_executor(executor)
    try:
        return await made.run_many(runtime, workflow, tasks, concurrency=concurrency, on_done=on_done, **kwargs)
    finally:
        await made.aclose()


def __getattr__(name: str) -> Any:
    if name == "RayExecutor":  # without importing ray before it is used
        from orchestrator.executors.ray_executor import RayExecutor

        return RayExecutor
    raise AttributeError(name)


_LOCAL = LocalExecutor()
