"""The runtime: runs registered workflows as checkpointed LangGraph graphs.

One run = one program: a row in the store, a LangGraph thread (thread id = run id) in the
checkpointer of the same database, budget accounts in the ``run:<id>`` scope, and a
:class:`~orchestrator.run_context.RuntimeContext` through which every LLM and tool call is
reserved, dispatched, settled, recorded and journaled. ``resume`` continues a paused or crashed
run from its last checkpoint; calls that had completed are replayed from the journal, never
charged twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Self

from langchain_core.runnables import RunnableConfig
from sqlalchemy import update

from budget.costs import PriceTable, load_price_table
from budget.errors import PriceTableError
from budget.ledger import Ledger
from budget.limits import Limit
from orchestrator import accounting, executors, metrics
from orchestrator import workflow as workflows
from orchestrator.errors import BudgetExhausted, ConfigError, QuotaFlowError, RunBusy, RunNotFound
from orchestrator.executors import Executor
from orchestrator.llm.base import LLMClient
from orchestrator.run_context import RuntimeContext
from orchestrator.settings import Settings
from orchestrator.store import calls, runs
from orchestrator.store.checkpointer import open_checkpointer
from orchestrator.store.db import Store, storage_error
from orchestrator.store.leases import LeaseKeeper
from orchestrator.store.models import RunRow
from orchestrator.tools.builtins import RunTools
from orchestrator.tools.registry import ToolRegistry
from orchestrator.types import RunResult, RunStatus
from orchestrator.workflow import Workflow, drive

__all__ = ["RunResult", "RunStatus", "Runtime"]


def new_run_id() -> str:
    """A fresh run id (executors give a program its id before it runs)."""
    return uuid.uuid4().hex[:16]


def _load_prices(path: str | Path | None) -> PriceTable:
    try:
        return load_price_table(path)
    except PriceTableError as exc:
        raise ConfigError(str(exc)) from None


class Runtime:
    """Runs workflows; the entry point of the SDK and the CLI.

    >>> rt = Runtime(Settings(db_url="sqlite:///runs.db"))
    >>> result = rt.run_sync("react", {"question": "..."}, budget="search=5,tokens=20000")
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        tools: ToolRegistry | None = None,
        clients: dict[str, LLMClient] | None = None,
        pricing: PriceTable | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.store = Store(self.settings.db_url)
        self.ledger = Ledger(self.store)
        self.pricing = pricing or _load_prices(self.settings.price_table)
        self._tools = RunTools(tools, self.settings.corpus_path)
        # Clients given by the caller, by backend name; others are created on first use.
        self._given: dict[str, LLMClient] = dict(clients or {})
        self._clients: dict[str, LLMClient] = {}
        self._stack: AsyncExitStack | None = None
        self._checkpointer: Any = None
        self._init_lock = asyncio.Lock()
        self._leases = LeaseKeeper(self.store)
        self.worker: str | None = None
        """The executor's worker this runtime is (recorded on the runs it starts or resumes)."""

    # -- set-up ------------------------------------------------------------------------------
    @property
    def tools(self) -> ToolRegistry:
        """The registry runs draw their tools from (the caller's, or the built-in tools)."""
        return self._tools.registry

    @property
    def checkpointer(self) -> Any:
        """The LangGraph saver on the runtime's database (None until the runtime started)."""
        return self._checkpointer

    def _tools_for(self, names: list[str]) -> ToolRegistry:
        return self._tools.for_run(names)

    def client(self, backend: str, **options: Any) -> LLMClient:
        """The LLM client for ``backend`` (one per backend and options, shared by runs)."""
        if backend in self._given:
            return self._given[backend]
        key = backend + repr(sorted(options.items()))
        if key not in self._clients:
            from orchestrator.llm import create_client

            self._clients[key] = create_client(backend, **{**self.settings.backend_defaults(backend), **options})
        return self._clients[key]

    async def _ensure_started(self) -> None:
        if self._stack is not None:
            return
        async with self._init_lock:
            if self._stack is not None:
                return
            await self.store.ensure_schema()
            async with AsyncExitStack() as stack:  # closed again if the saver cannot be set up
                try:
                    self._checkpointer = await open_checkpointer(self.store, stack)
                except Exception as exc:
                    raise storage_error(exc, self.store.db_url) or exc from None
                self._stack = stack.pop_all()

    async def aclose(self) -> None:
        await self._leases.aclose()
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
        for client in self._clients.values():
            await client.aclose()
        await self.store.aclose()

    async def __aenter__(self) -> Self:
        await self._ensure_started()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- running -------------------------------------------------------------------------------
    async def run(
        self,
        workflow: str | Workflow,
        task: dict[str, Any],
        *,
        budget: str | list[Limit] | None = None,
        backend: str = "local",
        backend_options: dict[str, Any] | None = None,
        tools: Iterable[str] | None = None,
        options: dict[str, Any] | None = None,
        run_id: str | None = None,
        parent_id: str | None = None,
        scopes: Iterable[str] = (),
    ) -> RunResult:
        """Run ``workflow`` on one task to completion (or until a budget pauses it)."""
        await self._ensure_started()
        wf = workflows.get(workflow) if isinstance(workflow, str) else workflow
        run_id = run_id or new_run_id()
        backend_options = dict(backend_options or {})
        tool_names = list(tools) if tools is not None else list(wf.default_tools)
        # Unknown tools, no corpus for search, a budget on a resource nothing charges: fail before
        # the run is stored.
        run_tools = self._tools_for(tool_names).names()
        limits = accounting.run_limits(budget, run_id, run_tools)
        charged = sorted({*scopes, *accounting.named_scopes(limits, run_id)})
        opts = {"backend_options": _jsonable(backend_options), "tools": tool_names, "scopes": charged,
                **wf.check_options(options or {}, task=task)}
        llm = self.client(backend, **backend_options)
        row = {"id": run_id, "parent_id": parent_id, "workflow": wf.name, "status": RunStatus.RUNNING,
               "backend": backend, "model": getattr(llm, "model", "") or "", "task": task, "options": opts,
               "worker": self.worker}
        # One transaction: the row, its limits and this process's lease on it.
        await self.store.transact(lambda conn: runs.create_run(conn, row, limits, self._leases.owner))
        return await self._execute(wf, run_id, task, opts, resume=False, backend=backend, llm=llm)

    async def resume(self, run_id: str, *, budget: str | list[Limit] | None = None) -> RunResult:
        """Continue a paused or crashed run from its last checkpoint, optionally with more budget
        (``budget="search=+5"`` adds five searches). Raises RunBusy while another process runs it."""
        await self._ensure_started()
        row = await self.get_run(run_id)
        if row.status == RunStatus.SUCCEEDED:
            return RunResult(run_id, row.status, row.result)
        opts = dict(row.options or {})
        limits = accounting.run_limits(budget, run_id, self._tools_for(opts.get("tools") or []).names())
        opts["scopes"] = sorted({*opts.get("scopes", []), *accounting.named_scopes(limits, run_id)})
        return await self._execute(workflows.get(row.workflow), run_id, row.task, opts, resume=True,
                                   backend=row.backend, limits=limits)

    def _context(self, wf: Workflow, run_id: str, backend: str, llm: LLMClient | None,
                 opts: dict[str, Any]) -> RuntimeContext:
        return RuntimeContext(
            self.store, self.ledger, self.pricing, run_id, wf.name, backend, llm,  # type: ignore[arg-type]
            self._tools_for(opts.get("tools") or []), [accounting.run_scope(run_id), *opts.get("scopes", [])],
            config={k: v for k, v in opts.items() if k not in ("backend_options", "scopes")})

    async def _execute(self, wf: Workflow, run_id: str, task: dict[str, Any], opts: dict[str, Any], *, resume: bool,
                       backend: str, llm: LLMClient | None = None, limits: list[Limit] | None = None) -> RunResult:
        # A resumed run rebuilds its client from the stored options (callables are not stored).
        ctx = self._context(wf, run_id, backend, llm or self.client(backend, **opts.get("backend_options", {})), opts)
        config: RunnableConfig = {"configurable": {"thread_id": run_id},
                                  "recursion_limit": int(opts.get("recursion_limit", 200))}
        metrics.RUNS_ACTIVE.labels(wf.name).inc()
        try:
            async with self._leases.hold(run_id, taken=not resume) as faults:
                try:
                    if resume:
                        await self._reopen(ctx, opts, limits or [])
                    graph = wf.build(ctx).compile(checkpointer=self._checkpointer)
                    state = await drive(wf, graph, task, config, fresh=not resume)
                    self.store.check_file()  # never "succeeded" into a database file that is gone
                except asyncio.CancelledError:
                    if faults:  # the lease heartbeat stopped the run: storage gone or lease lost
                        raise faults[0] from None
                    raise
            result, status, error, code = wf.result(state), RunStatus.SUCCEEDED, None, 0
        except RunBusy:
            raise  # another process owns the run: its row is not ours to write
        except Exception as exc:
            result, (status, error, code) = None, await self._failure(run_id, wf.name, exc)
        finally:
            metrics.RUNS_ACTIVE.labels(wf.name).dec()
        await self._finish(run_id, status, result, error, wf.name)
        return RunResult(run_id, status, result, error, code)

    async def _reopen(self, ctx: RuntimeContext, opts: dict[str, Any], limits: list[Limit]) -> None:
        """A resumed run, under its lease: new limits, running again, reservations a dead process
        held given back, and the journal of what the run consumed so far."""
        if limits:
            await self.ledger.set_limits(limits)
        async with self.store.session() as s:
            await s.execute(update(RunRow).where(RunRow.id == ctx.run_id)
                            .values(status=RunStatus.RUNNING, options=opts, error=None, worker=self.worker))
        await self.ledger.release_run(ctx.run_id)
        async with self.store.session() as s:
            ctx.load_journal(await calls.load_journal(s, ctx.run_id))

    async def _failure(self, run_id: str, workflow: str, exc: Exception) -> tuple[RunStatus, str, int]:
        """How a run that raised ``exc`` ends: paused on a budget, interrupted by storage, failed
        on any other QuotaFlowError; a bug in a workflow is recorded, then raised."""
        metrics.ERRORS.labels("run", type(exc).__name__).inc()
        if isinstance(exc, BudgetExhausted):
            return RunStatus.PAUSED, str(exc), exc.exit_code
        if (fault := storage_error(exc, self.store.db_url)) is not None:
            with contextlib.suppress(Exception):  # the store may be back already, or not
                await self.ledger.release_run(run_id)
            return RunStatus.INTERRUPTED, str(fault), fault.exit_code
        if isinstance(exc, QuotaFlowError):
            return RunStatus.FAILED, str(exc), exc.exit_code
        await self._finish(run_id, RunStatus.FAILED, None, f"{type(exc).__name__}: {exc}", workflow)
        raise exc

    async def _finish(self, run_id: str, status: RunStatus, result: dict[str, Any] | None, error: str | None,
                      workflow: str) -> None:
        metrics.RUNS.labels(workflow, status).inc()
        values = {"status": status, "result": result, "error": error}
        try:
            accounts = await self.store.transact(
                lambda conn: runs.finish_run(conn, run_id, values, accounting.run_scope(run_id)))
        except Exception:
            if status != RunStatus.INTERRUPTED:
                raise
            return  # the store is still down: the expired lease shows the run as interrupted
        for account in accounts:
            if account.remaining is not None:
                metrics.BUDGET_REMAINING.labels(account.resource).set(account.remaining)

    async def run_many(
        self,
        workflow: str | Workflow,
        tasks: list[dict[str, Any]],
        *,
        concurrency: int = 4,
        on_done: Callable[[RunResult], None] | None = None,
        executor: Executor | str | None = None,
        **kwargs: Any,
    ) -> list[RunResult]:
        """Run one program per task, ``concurrency`` at a time (per worker); results in task order.
        ``executor``: where they run (:mod:`orchestrator.executors`): this process (None, "local")
        or Ray workers on this runtime's database ("ray", or a ``RayExecutor``)."""
        return await executors.run_many(self, workflow, tasks, executor=executor, concurrency=concurrency,
                                        on_done=on_done, **kwargs)

    async def run_dataset(
        self,
        workflow: str | Workflow,
        tasks: list[dict[str, Any]],
        *,
        source: str,
        skipped: Iterable[str] = (),
        backend: str = "local",
        **kwargs: Any,
    ) -> RunResult:
        """Run one program per task under a parent run that records the dataset (``source``), the
        skipped lines and the item runs; it succeeds when every item did. Refused options: one error, none stored."""
        await self._ensure_started()
        wf = workflows.checked(workflow, kwargs.get("options") or {})
        parent = new_run_id()
        async with self.store.session() as s:
            s.add(RunRow(id=parent, workflow=wf.name, status=RunStatus.RUNNING, backend=backend,
                         task={"dataset": source}, options={"items": len(tasks), "skipped_lines": list(skipped)}))
        results = await self.run_many(wf, tasks, parent_id=parent, backend=backend, **kwargs)
        succeeded = sum(r.status == RunStatus.SUCCEEDED for r in results)
        status = (RunStatus.SUCCEEDED if succeeded == len(results)
                  else RunStatus.FAILED if succeeded == 0 else RunStatus.PARTIAL)
        result = {"runs": [r.run_id for r in results]}
        async with self.store.session() as s:
            await s.execute(update(RunRow).where(RunRow.id == parent).values(status=status, result=result))
        return RunResult(parent, status, result)

    # -- reading ---------------------------------------------------------------------------------
    async def get_run(self, run_id: str) -> RunRow:
        await self.store.ensure_schema()
        async with self.store.session() as s:
            row = await s.get(RunRow, run_id)
        if row is None:
            raise RunNotFound(run_id)
        return row

    async def get_state(self, run_id: str) -> dict[str, Any]:
        """The run's graph state at its latest checkpoint."""
        await self._ensure_started()
        row = await self.get_run(run_id)
        wf = workflows.get(row.workflow)
        graph = wf.build(self._context(wf, run_id, row.backend, None, row.options or {}))
        snapshot = await graph.compile(checkpointer=self._checkpointer).aget_state(
            {"configurable": {"thread_id": run_id}})
        return dict(snapshot.values)

    # -- sync facade -------------------------------------------------------------------------------
    def run_sync(self, workflow: str | Workflow, task: dict[str, Any], **kwargs: Any) -> RunResult:
        """``run`` for code without an event loop (closes the runtime afterwards)."""

        async def go() -> RunResult:
            try:
                return await self.run(workflow, task, **kwargs)
            finally:
                await self.aclose()

        return asyncio.run(go())


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    """Backend options as stored with the run (callables of scripted clients are not stored)."""
    return {k: v for k, v in options.items() if isinstance(v, (str, int, float, bool, list, dict, type(None)))}
