"""The Ray executor: programs placed on the workers of a Ray cluster (the ``ray`` extra).

Each worker is a Ray actor holding one :class:`~orchestrator.runtime.Runtime` on the driver's
database (PostgreSQL when the workers are on several hosts), so budgets and shared scopes, the
journal, the checkpoints and the run leases are those of one store: a scope's limit holds across
workers exactly as across the programs of one process. The driver gives each program its run id
before sending it, and keeps ``concurrency`` programs in flight per worker.

Failures: a worker process (or its node) that dies is restarted by Ray, which sends the programs
it had in flight again (at most ``max_retries`` times each). A retry finds its run row and
*resumes* the run from its checkpoint, under the run lease: the dead process's lease is taken
over at once on its own host, and waited out (it expires, ``LEASE_TTL``) from another host;
calls it had completed are replayed from the journal, never charged twice. A program whose
worker died more often than that is marked failed (``WorkerLost``), not retried forever.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from orchestrator import accounting
from orchestrator.errors import BudgetExhausted, ConfigError, QuotaFlowError, RunBusy, RunNotFound, WorkerLost
from orchestrator.executors.base import OnDone
from orchestrator.store.leases import LEASE_TTL
from orchestrator.store.models import RunRow, as_utc
from orchestrator.types import RunResult, RunStatus

if TYPE_CHECKING:
    from orchestrator.runtime import Runtime
    from orchestrator.workflow import Workflow

__all__ = ["ProgramWorker", "RayExecutor"]

RuntimeFactory = Callable[[], "Runtime"]
"""Builds a worker's Runtime (called once in each worker process; must be picklable)."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray executor needs Ray: pip install 'quotaflow[ray]'") from None
    return ray


def _outcome(row: RunRow) -> RunResult:
    """The result of a run that ended, as its row records it."""
    code = {RunStatus.SUCCEEDED: 0, RunStatus.PAUSED: BudgetExhausted.exit_code}.get(RunStatus(row.status), 1)
    return RunResult(row.id, row.status, row.result, row.error, code)


def _check_reachable(address: str) -> None:
    """Fail at once on a cluster address where nothing listens (Ray itself retries for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", a ray:// client address: Ray resolves them
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ConfigError(f"cannot join the Ray cluster at {address}: {exc.strerror or exc}; start one with "
                          "`ray start --head` and pass the address it prints (--ray-address)") from None


class ProgramWorker:
    """A Ray actor: one Runtime on the shared database, running the programs the driver sends."""

    def __init__(self, make_runtime: RuntimeFactory, name: str) -> None:
        self.name = f"{name}@{socket.gethostname()}:{os.getpid()}"
        self._make_runtime = make_runtime
        self._runtime: Runtime | None = None

    def _rt(self) -> Runtime:
        if self._runtime is None:
            self._runtime = self._make_runtime()
            self._runtime.worker = self.name
        return self._runtime

    async def info(self) -> dict[str, Any]:
        """This worker's name and process id (the driver waits for it: the worker is up)."""
        return {"name": self.name, "pid": os.getpid()}

    async def run(self, workflow: str | Workflow, task: dict[str, Any], run_id: str,
                  run_kwargs: dict[str, Any]) -> RunResult:
        """Run the program ``run_id``, or, when it exists (this is Ray's retry of it after a
        worker died), continue it. A QuotaFlowError comes back as a failed result, as from the
        local executor (and as a value: not every error type survives Ray's pickling)."""
        try:
            return await self._run_or_continue(workflow, task, run_id, run_kwargs)
        except RunBusy as exc:  # still held by a live worker after the wait: the id says which run
            return RunResult.failed(exc, run_id)
        except QuotaFlowError as exc:  # bad input, before the run was stored
            return RunResult.failed(exc)

    async def _run_or_continue(self, workflow: str | Workflow, task: dict[str, Any], run_id: str,
                               run_kwargs: dict[str, Any]) -> RunResult:
        rt = self._rt()
        try:
            row = await rt.get_run(run_id)
        except RunNotFound:
            return await rt.run(workflow, task, run_id=run_id, **run_kwargs)
        if row.status != RunStatus.RUNNING and row.status != RunStatus.INTERRUPTED:
            return _outcome(row)  # it ended before its worker died: nothing to redo
        # Absolute limits only: setting them again is idempotent, adding relative ones twice is not.
        limits = [lim for lim in accounting.run_limits(run_kwargs.get("budget"), run_id) if not lim.relative]
        deadline = time.monotonic() + 2 * LEASE_TTL.total_seconds()
        while True:
            try:
                return await rt.resume(run_id, budget=limits)
            except RunBusy:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(await _lease_left(rt, run_id))

    async def aclose(self) -> None:
        if self._runtime is not None:
            await self._runtime.aclose()


async def _lease_left(rt: Runtime, run_id: str) -> float:
    """Seconds until the lease of ``run_id`` expires (a dead holder's lease on another host),
    between 0.05 and 5: it is polled again then."""
    until = (await rt.get_run(run_id)).lease_expires_at
    if until is None:
        return 0.05
    return min(max((as_utc(until) - datetime.now(UTC)).total_seconds(), 0.05), 5.0)


class RayExecutor:
    """Programs on Ray workers, each holding a Runtime on the driver's database.

    ``address``: the cluster to join (``ray start --head`` prints it; ``"auto"`` finds one on
    this host; None starts a local one, stopped again by ``aclose``, unless Ray is already
    initialised in this process: then that cluster is used).
    ``num_workers``: worker actors (default: one per CPU of the cluster, ``cpus_per_worker``
    each). ``max_retries``: how often a program whose worker died is sent again before it is
    marked failed. ``runtime_factory``: builds each worker's Runtime (default:
    ``Runtime(driver.settings)``; a picklable callable for custom tools or clients).
    ``runtime_env``/``init_options``: passed to ``ray.init`` when this executor connects or starts.
    Workers must import QuotaFlow and the workflow: install it on every node (or give a
    ``runtime_env`` that ships it)."""

    def __init__(self, address: str | None = None, *, num_workers: int | None = None, max_retries: int = 3,
                 runtime_factory: RuntimeFactory | None = None, cpus_per_worker: float = 1.0,
                 runtime_env: dict[str, Any] | None = None, init_options: dict[str, Any] | None = None) -> None:
        self.address = address
        self.num_workers = num_workers
        self.max_retries = max_retries
        self.runtime_factory = runtime_factory
        self.cpus_per_worker = cpus_per_worker
        self.runtime_env = runtime_env
        self.init_options = dict(init_options or {})
        self._ray: Any = _import_ray()  # here, so that a missing extra fails before anything is stored
        self._started_ray = False
        self._actors: list[Any] = []
        self.workers: list[dict[str, Any]] = []
        """``info()`` of each worker once started: name and pid."""

    async def start(self, runtime: Runtime) -> None:
        """Connect to (or start) the cluster and start the workers; done by ``run_many`` when needed."""
        if self._actors:
            return
        ray = self._ray
        if self.address:
            _check_reachable(self.address)
        if not ray.is_initialized():  # else the cluster this process joined already is the one
            try:
                ray.init(address=self.address or "local", include_dashboard=False, runtime_env=self.runtime_env,
                         **self.init_options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray cluster"
                raise ConfigError(f"cannot join {where}: {exc}; start one with `ray start --head` and pass the "
                                  "address it prints (--ray-address), or leave the address out") from None
            self._started_ray = True
        count = self.num_workers or max(1, int(ray.cluster_resources().get("CPU", 1) // self.cpus_per_worker))
        factory = self.runtime_factory or functools.partial(type(runtime), runtime.settings)
        actor = ray.remote(ProgramWorker).options(max_restarts=-1, max_task_retries=self.max_retries,
                                                  num_cpus=self.cpus_per_worker)
        self._actors = [actor.remote(factory, f"w{i}") for i in range(count)]
        self.workers = list(await asyncio.gather(*(a.info.remote() for a in self._actors)))

    async def run_many(self, runtime: Runtime, workflow: str | Workflow, tasks: list[dict[str, Any]], *,
                       concurrency: int, on_done: OnDone | None, **run_kwargs: Any) -> list[RunResult]:
        from orchestrator import workflow as workflows
        from orchestrator.runtime import new_run_id

        await runtime.store.ensure_schema()
        await self.start(runtime)
        # The workflow itself travels (by reference to its module): workers need not have
        # registered it, e.g. from the driver's --workflow-module.
        wf = workflows.get(workflow) if isinstance(workflow, str) else workflow
        # Serialised once for the dataset, not once per program (Ray hands the workers the values).
        shared = (self._ray.put(wf), self._ray.put(run_kwargs))
        slots: asyncio.Queue[Any] = asyncio.Queue()
        for _ in range(max(1, concurrency)):  # interleaved: the first programs spread over all workers
            for actor in self._actors:
                slots.put_nowait(actor)

        async def one(task: dict[str, Any]) -> RunResult:
            actor = await slots.get()
            try:
                res = await self._run_on(actor, runtime, shared, task, new_run_id())
            finally:
                slots.put_nowait(actor)
            if on_done is not None:
                on_done(res)
            return res

        return list(await asyncio.gather(*(one(t) for t in tasks)))

    async def _run_on(self, actor: Any, runtime: Runtime, shared: tuple[Any, Any], task: dict[str, Any],
                      run_id: str) -> RunResult:
        """``actor.run`` with the workflow and run options ``shared`` holds (object refs)."""
        errors = self._ray.exceptions
        try:
            return await actor.run.remote(shared[0], task, run_id, shared[1])  # type: ignore[no-any-return]
        except errors.RayActorError as exc:  # its worker died, and died again on every retry
            return await _worker_lost(runtime, run_id, self.max_retries, exc)
        except errors.RayTaskError as exc:  # a bug in a workflow: raised, as from the local executor
            cause = getattr(exc, "cause", None)
            raise (cause if isinstance(cause, Exception) else exc) from None

    async def aclose(self) -> None:
        """Stop the workers, and the cluster if this executor started it."""
        if self._actors:
            await asyncio.gather(*(a.aclose.remote() for a in self._actors), return_exceptions=True)
            for actor in self._actors:
                self._ray.kill(actor)
        self._actors, self.workers = [], []
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False


async def _worker_lost(runtime: Runtime, run_id: str, retries: int, exc: BaseException) -> RunResult:
    """The result of a program whose worker kept dying: its run (if it was stored) marked failed,
    resumable later with ``quotaflow resume``."""
    fault = WorkerLost(run_id, retries + 1, str(exc).strip().splitlines()[0] if str(exc).strip() else "")
    try:
        row = await runtime.get_run(run_id)
    except RunNotFound:
        return RunResult.failed(fault)
    if row.status not in (RunStatus.RUNNING, RunStatus.INTERRUPTED):
        return _outcome(row)
    async with runtime.store.session() as s:
        await s.execute(update(RunRow).where(RunRow.id == run_id).values(status=RunStatus.FAILED, error=str(fault)))
    return RunResult.failed(fault, run_id)
