"""The runtime: runs registered workflows as checkpointed LangGraph graphs.

One run = one program: a row in the store, a LangGraph thread (thread id = run id) in the
checkpointer of the same database, budget accounts in the ``run:<id>`` scope, and a
:class:`RunContext` through which every LLM and tool call is reserved, dispatched, settled,
recorded and journaled. ``resume`` continues a paused or crashed run from its last checkpoint;
calls that had completed are replayed from the journal, never charged twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from sqlalchemy import delete, insert, select, update

import workflows
from budget.costs import PriceTable, load_price_table
from budget.ledger import Charge, Ledger
from budget.limits import DOLLARS, Limit, parse_budget, tool_resource
from orchestrator import metrics
from orchestrator.context import StepJournal, ToolBudgetView
from orchestrator.errors import (
    BadInputError,
    BudgetExhausted,
    EngineError,
    QuotaFlowError,
    RunNotFound,
    ToolError,
)
from orchestrator.llm.base import LLMClient
from orchestrator.settings import Settings
from orchestrator.store.db import Store, plain_postgres_dsn
from orchestrator.store.models import LLMCallRow, RunRow, StepRow, ToolCallRow, VoteRow
from orchestrator.tools.base import ToolResult
from orchestrator.tools.registry import ToolRegistry
from orchestrator.types import (
    LLMRequest,
    LLMResponse,
    Message,
    ProgramHints,
    SamplingOptions,
    Usage,
)
from workflows.base import Workflow

__all__ = ["RunResult", "RunStatus", "Runtime"]


class RunStatus:
    RUNNING = "running"
    PAUSED = "paused"  # a budget ran out: resumable with more budget
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: str
    result: dict[str, Any] | None = None
    error: str | None = None
    exit_code: int = 0
    """For command lines: 0 succeeded, 3 paused on a budget, else the error's code (4: engine)."""


def _run_scope(run_id: str) -> str:
    return f"run:{run_id}"


def _new_run_id() -> str:
    return uuid.uuid4().hex[:16]


# Token reservations must be upper bounds. Without the model's tokenizer, a character count
# over this ratio over-estimates real tokenizers on English and code; the ledger settles the
# real count the server reports.
_CHARS_PER_TOKEN_BOUND = 2.0
_TOKENS_PER_MESSAGE = 8


@dataclass
class _Context:
    """The RunContext implementation handed to a workflow's graph."""

    runtime: Runtime
    run_id: str
    workflow: str
    backend: str
    llm: LLMClient
    tools: ToolRegistry
    scopes: list[str]
    config: dict[str, Any] = field(default_factory=dict)
    journal: dict[str, LLMCallRow | ToolCallRow] = field(default_factory=dict)
    _counters: dict[str, StepJournal] = field(default_factory=dict)
    _turn: int = 0

    @property
    def store(self) -> Store:
        """The run's store, for workflows that persist their own rows (e.g. Q-tables)."""
        return self.runtime.store

    # -- idempotency keys -------------------------------------------------------------------
    def _key(self, kind: str) -> str:
        """A key that is the same when a resumed run re-executes the same call."""
        try:
            from langgraph.config import get_config

            meta = get_config().get("metadata", {})
            prefix = f"{self.run_id}:{meta.get('langgraph_step', 0)}:{meta.get('langgraph_node', '')}"
        except RuntimeError:  # called outside a graph node
            prefix = f"{self.run_id}:-"
        journal = self._counters.setdefault(prefix, StepJournal(prefix))
        return journal.next_key(kind)

    # -- LLM ---------------------------------------------------------------------------------
    async def chat(
        self,
        messages: list[Message] | tuple[Message, ...],
        *,
        sampling: SamplingOptions | None = None,
        tool_name: str | None = None,
        is_last_step: bool = False,
        scope: str | None = None,
        purpose: str = "agent",
    ) -> LLMResponse:
        key = self._key("llm")
        if isinstance(done := self.journal.get(key), LLMCallRow):
            self._turn += 1
            return _response_from_row(done)
        sampling = sampling or SamplingOptions()
        scopes = self.scopes + ([scope] if scope else [])
        model = getattr(self.llm, "model", "") or ""
        est_in = self._estimate_input_tokens(messages)
        charges = self.runtime._token_charges(scopes, model, est_in, 0, sampling.max_tokens)
        rt = self.runtime
        try:
            reservation = await rt.ledger.reserve(key, charges, self.run_id)
        except BudgetExhausted as exc:
            metrics.BUDGET_REFUSALS.labels(exc.resource).inc()
            raise
        hints = ProgramHints(program_id=self.run_id, turn=self._turn, is_last_step=is_last_step, tool_name=tool_name)
        request = LLMRequest(messages=tuple(messages), sampling=sampling, hints=hints)
        t0 = time.perf_counter()
        try:
            response = await self.llm.complete(request)
        except EngineError as exc:
            await rt.ledger.release(reservation)
            metrics.LLM_CALLS.labels(self.backend, "error").inc()
            metrics.ERRORS.labels("llm", type(exc).__name__).inc()
            raise
        latency = time.perf_counter() - t0
        self._turn += 1
        u = response.usage
        cost = rt.pricing.price_for(response.model or model).cost(u)
        actual = rt._token_charges(scopes, model, u.input_tokens, u.output_tokens, 0, cost=cost, cached=u.cached_input_tokens,
                                   reasoning=u.reasoning_tokens)
        row = {
            "run_id": self.run_id, "key": key, "purpose": purpose, "model": response.model or model,
            "endpoint": response.endpoint, "input_tokens": u.input_tokens,
            "cached_input_tokens": u.cached_input_tokens, "output_tokens": u.output_tokens,
            "reasoning_tokens": u.reasoning_tokens, "latency_s": response.latency_s or latency,
            "finish_reason": response.finish_reason, "cost_usd": cost,
            "prompt": [m.to_wire() for m in messages], "response": response.text,
        }
        await rt.store.transact(
            lambda s: (rt.ledger.settle(reservation, actual, s), s.execute(insert(LLMCallRow).values(**row))))
        metrics.LLM_CALLS.labels(self.backend, "ok").inc()
        metrics.LLM_LATENCY.labels(self.backend).observe(latency)
        for kind, n in (("input", u.input_tokens), ("cached_input", u.cached_input_tokens),
                        ("output", u.output_tokens), ("reasoning", u.reasoning_tokens)):
            if n:
                metrics.LLM_TOKENS.labels(self.backend, kind).inc(n)
        metrics.COST_USD.labels(self.workflow).inc(cost)
        rt._observe_spend(actual)
        return response

    def _estimate_input_tokens(self, messages: list[Message] | tuple[Message, ...]) -> int:
        counter = getattr(self.llm, "exact_token_count", None)
        text = "".join(m.content for m in messages)
        if counter is not None:
            return int(counter(text)) + _TOKENS_PER_MESSAGE * len(messages)
        return int(len(text) / _CHARS_PER_TOKEN_BOUND) + _TOKENS_PER_MESSAGE * (len(messages) + 1)

    # -- tools -------------------------------------------------------------------------------
    async def call_tool(self, name: str, args: dict[str, Any], *, scope: str | None = None) -> ToolResult:
        key = self._key("tool")
        if isinstance(done := self.journal.get(key), ToolCallRow):
            return ToolResult(done.result, is_error=done.is_error, metadata={"refused": done.refused, "replayed": True})
        rt = self.runtime
        try:
            tool, args = self.tools.prepare(name, args)
        except (ToolError, BadInputError):
            # Not dispatched and not charged; the agent sees why and how to call it right.
            problem = await self.tools.invoke(name, args)
            metrics.TOOL_CALLS.labels(name if name in self.tools else "unknown", "bad_call").inc()
            await self._record_tool(key, name, _as_dict(args), problem, units=0, duration=0.0, cost=0.0)
            return problem
        units = float(tool.spec.units(args))
        cost = rt.pricing.tool_price(name) * units
        scopes = self.scopes + ([scope] if scope else [])
        charges = [Charge(sc, tool_resource(name), units) for sc in scopes] + [Charge(sc, DOLLARS, cost) for sc in scopes]
        try:
            reservation = await rt.ledger.reserve(key, charges, self.run_id)
        except BudgetExhausted as exc:
            metrics.BUDGET_REFUSALS.labels(exc.resource).inc()
            metrics.TOOL_CALLS.labels(name, "refused").inc()
            refusal = ToolResult(
                f"Refused: the {name} budget is exhausted ({exc.used:g} of {exc.limit:g} {tool.spec.unit}s used). "
                "Answer with what you have.",
                is_error=True,
                metadata={"refused": True, "resource": exc.resource},
            )
            await self._record_tool(key, name, args, refusal, units=0, duration=0.0, cost=0.0, refused=True)
            return refusal
        t0 = time.perf_counter()
        result = await self.tools.invoke(name, args)
        duration = time.perf_counter() - t0
        row = self._tool_row(key, name, args, result, units, duration, cost)
        await rt.store.transact(
            lambda s: (rt.ledger.settle(reservation, charges, s), s.execute(insert(ToolCallRow).values(**row))))
        metrics.TOOL_CALLS.labels(name, "error" if result.is_error else "ok").inc()
        metrics.TOOL_DURATION.labels(name).observe(duration)
        metrics.COST_USD.labels(self.workflow).inc(cost)
        rt._observe_spend(charges)
        return result

    def _tool_row(self, key: str, name: str, args: dict[str, Any], result: ToolResult, units: float,
                  duration: float, cost: float, refused: bool = False) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "key": key, "tool": name, "arguments": args, "result": result.content,
            "result_size": len(result.content), "is_error": result.is_error, "refused": refused, "units": units,
            "duration_s": duration, "cost_usd": cost,
        }

    async def _record_tool(self, key: str, name: str, args: dict[str, Any], result: ToolResult, *, units: float,
                           duration: float, cost: float, refused: bool = False) -> None:
        row = self._tool_row(key, name, args, result, units, duration, cost, refused)
        await self.runtime.store.transact(lambda s: s.execute(insert(ToolCallRow).values(**row)))

    async def tool_budgets(self) -> list[ToolBudgetView]:
        rt = self.runtime
        accounts = {(a.scope, a.resource): a for a in await rt.ledger.accounts(self.scopes)}
        async with rt.store.session() as s:
            rows = (await s.execute(
                select(ToolCallRow.tool, ToolCallRow.units).where(ToolCallRow.run_id == self.run_id)
            )).all()
        used: dict[str, float] = {}
        for tool, units in rows:
            used[tool] = used.get(tool, 0.0) + units
        views = []
        for spec in self.tools.specs():
            acct = accounts.get((_run_scope(self.run_id), tool_resource(spec.name)))
            views.append(ToolBudgetView(tool=spec.name, unit=spec.unit, used=used.get(spec.name, 0.0),
                                        limit=acct.limit if acct else None))
        return views

    async def record_step(self, node: str, data: dict[str, Any]) -> None:
        key = self._key("step")
        row = {"run_id": self.run_id, "key": key, "node": node, "data": data}

        def insert_once(s: Any) -> None:
            # A resumed run re-executes the node: its steps are already there.
            if s.execute(select(StepRow.id).where(StepRow.key == key)).first() is None:
                s.execute(insert(StepRow).values(**row))

        await self.runtime.store.transact(insert_once)

    async def record_votes(self, round_index: int, votes: dict[str, tuple[str | None, bool]]) -> None:
        async with self.runtime.store.session() as s:
            await s.execute(delete(VoteRow).where(VoteRow.run_id == self.run_id, VoteRow.round == round_index))
            s.add_all(VoteRow(run_id=self.run_id, item_id=str(item)[:100], round=round_index, answer=answer,
                              confident=bool(confident)) for item, (answer, confident) in votes.items())


def _serialised_saver(base: type, lock: asyncio.Lock | None) -> type:
    """``base`` (LangGraph's AsyncSqliteSaver) with its writes queued on the store's write lock."""

    class SerialisedSaver(base):  # type: ignore[misc,valid-type]
        async def aput(self, *args: Any, **kwargs: Any) -> Any:
            async with lock:  # type: ignore[union-attr]
                return await super().aput(*args, **kwargs)

        async def aput_writes(self, *args: Any, **kwargs: Any) -> Any:
            async with lock:  # type: ignore[union-attr]
                return await super().aput_writes(*args, **kwargs)

    return SerialisedSaver


def _as_dict(args: Any) -> dict[str, Any]:
    return args if isinstance(args, dict) else {"input": args}


def _response_from_row(row: LLMCallRow) -> LLMResponse:
    return LLMResponse(
        text=row.response,
        usage=Usage(row.input_tokens, row.cached_input_tokens, row.output_tokens, row.reasoning_tokens),
        model=row.model, finish_reason=row.finish_reason, latency_s=row.latency_s, endpoint=row.endpoint,
    )


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
        self.pricing = pricing or load_price_table(self.settings.price_table)
        self._tools = tools
        self._corpus_error: BadInputError | None = None
        # Clients given by the caller, by backend name; others are created on first use.
        self._given: dict[str, LLMClient] = dict(clients or {})
        self._clients: dict[str, LLMClient] = {}
        self._stack: AsyncExitStack | None = None
        self._checkpointer: Any = None
        self._init_lock = asyncio.Lock()

    # -- set-up ------------------------------------------------------------------------------
    @property
    def tools(self) -> ToolRegistry:
        """The registry runs draw their tools from: the caller's, or the built-in tools. With no
        search corpus built yet, the built-ins leave out ``search`` and ``browse``; a run that
        names them then gets the error that says how to build one (see :meth:`_tools_for`)."""
        if self._tools is None:
            from orchestrator.tools.builtins import default_registry

            path = self.settings.corpus_path
            try:
                self._tools = default_registry(corpus_path=path)
            except BadInputError as exc:
                if path is None or Path(path).exists():  # a corpus that exists but does not open
                    raise
                self._corpus_error = exc
                self._tools = default_registry(corpus_path=None)
        return self._tools

    def _tools_for(self, names: list[str]) -> ToolRegistry:
        """The tools a run may call: the named ones, or every registered tool when it names none."""
        registry = self.tools
        if self._corpus_error is not None and {"search", "browse"} & (set(names) - set(registry.names())):
            raise self._corpus_error
        return registry.subset(names) if names else registry

    def client(self, backend: str, **options: Any) -> LLMClient:
        """The LLM client for ``backend`` (one per backend and options, shared by runs)."""
        if backend in self._given:
            return self._given[backend]
        key = backend + repr(sorted(options.items()))
        if key not in self._clients:
            if backend == "openai":
                options.setdefault("base_urls", list(self.settings.openai_base_urls))
                options.setdefault("api_key", self.settings.openai_api_key)
                if self.settings.model:
                    options.setdefault("model", self.settings.model)
            if backend == "local" and self.settings.local_model_path:
                options.setdefault("gguf_path", str(self.settings.local_model_path))
            from orchestrator.llm import create_client

            self._clients[key] = create_client(backend, **options)
        return self._clients[key]

    async def _ensure_started(self) -> None:
        if self._stack is not None:
            return
        async with self._init_lock:
            if self._stack is not None:
                return
            await self.store.ensure_schema()
            stack = AsyncExitStack()
            if self.store.is_sqlite:
                import aiosqlite
                from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

                path = self.store.sync_url.removeprefix("sqlite:///")
                conn = await aiosqlite.connect(path)
                stack.push_async_callback(conn.close)
                await conn.execute("PRAGMA journal_mode=WAL")
                await conn.execute("PRAGMA synchronous=NORMAL")
                await conn.execute("PRAGMA busy_timeout=60000")
                saver = _serialised_saver(AsyncSqliteSaver, self.store.write_lock)(conn)
            else:
                from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
                from psycopg.rows import dict_row
                from psycopg_pool import AsyncConnectionPool

                pool = AsyncConnectionPool(
                    plain_postgres_dsn(self.settings.db_url), min_size=1, max_size=20, open=False,
                    kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
                )
                await pool.open()
                stack.push_async_callback(pool.close)
                saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
            await saver.setup()
            self._checkpointer = saver
            self._stack = stack

    async def aclose(self) -> None:
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
        run_id = run_id or _new_run_id()
        backend_options = dict(backend_options or {})
        tool_names = list(tools) if tools is not None else list(wf.default_tools)
        self._tools_for(tool_names)  # unknown tools, or no corpus for search: fail before the run is stored
        opts = {"backend_options": _jsonable(backend_options), "tools": tool_names, "scopes": list(scopes),
                **(options or {})}
        llm = self.client(backend, **backend_options)
        async with self.store.session() as s:
            s.add(RunRow(id=run_id, parent_id=parent_id, workflow=wf.name, status=RunStatus.RUNNING, backend=backend,
                         model=getattr(llm, "model", "") or "", task=task, options=opts))
        limits = parse_budget(budget, _run_scope(run_id)) if isinstance(budget, str) else list(budget or [])
        limits = [lim if lim.scope != "run" else Limit(_run_scope(run_id), lim.resource, lim.amount, lim.relative)
                  for lim in limits]
        if limits:
            await self.ledger.set_limits(limits)
        return await self._execute(wf, run_id, task, opts, resume=False, llm=llm)

    async def resume(self, run_id: str, *, budget: str | list[Limit] | None = None) -> RunResult:
        """Continue a paused or crashed run from its last checkpoint, optionally with more budget
        (``budget="search=+5"`` adds five searches)."""
        await self._ensure_started()
        async with self.store.session() as s:
            row = await s.get(RunRow, run_id)
        if row is None:
            raise RunNotFound(run_id)
        if row.status == RunStatus.SUCCEEDED:
            return RunResult(run_id, row.status, row.result)
        if budget:
            limits = parse_budget(budget, _run_scope(run_id)) if isinstance(budget, str) else list(budget)
            await self.ledger.set_limits(limits)
        wf = workflows.get(row.workflow)
        return await self._execute(wf, run_id, row.task, row.options, resume=True, backend=row.backend)

    async def _execute(self, wf: Workflow, run_id: str, task: dict[str, Any], opts: dict[str, Any], *, resume: bool,
                       backend: str | None = None, llm: LLMClient | None = None) -> RunResult:
        async with self.store.session() as s:
            row = await s.get(RunRow, run_id)
            assert row is not None
            backend = backend or row.backend
            if resume:
                row.status = RunStatus.RUNNING
        scopes = [_run_scope(run_id), *opts.get("scopes", [])]
        await self.ledger.load_scopes(scopes)
        # A resumed run rebuilds its client from the stored options (callables are not stored).
        llm = llm or self.client(backend, **opts.get("backend_options", {}))
        ctx = _Context(self, run_id, wf.name, backend, llm, self._tools_for(opts.get("tools") or []),
                       scopes, config={k: v for k, v in opts.items() if k not in ("backend_options", "scopes")})
        if resume:
            ctx.journal = await self._load_journal(run_id)
        graph = wf.build(ctx).compile(checkpointer=self._checkpointer)
        config = {"configurable": {"thread_id": run_id}, "recursion_limit": int(opts.get("recursion_limit", 200))}
        metrics.RUNS_ACTIVE.labels(wf.name).inc()
        try:
            snapshot = await graph.aget_state(config) if resume else None
            if snapshot is None or not snapshot.values:
                state = await graph.ainvoke(wf.initial_state(task), config)
            elif snapshot.next:
                state = await graph.ainvoke(None, config)
            else:  # the graph had finished; the process died before the run row was updated
                state = snapshot.values
            result = wf.result(state)
            status, error, code = RunStatus.SUCCEEDED, None, 0
        except BudgetExhausted as exc:
            result, status, error, code = None, RunStatus.PAUSED, str(exc), exc.exit_code
        except QuotaFlowError as exc:
            result, status, error, code = None, RunStatus.FAILED, str(exc), exc.exit_code
            metrics.ERRORS.labels("run", type(exc).__name__).inc()
        except Exception as exc:  # a bug in a workflow: record it, then let it surface
            await self._finish(run_id, RunStatus.FAILED, None, f"{type(exc).__name__}: {exc}", wf.name)
            metrics.ERRORS.labels("run", type(exc).__name__).inc()
            raise
        finally:
            metrics.RUNS_ACTIVE.labels(wf.name).dec()
        await self._finish(run_id, status, result, error, wf.name)
        return RunResult(run_id, status, result, error, code)

    async def _finish(self, run_id: str, status: str, result: dict[str, Any] | None, error: str | None,
                      workflow: str) -> None:
        async with self.store.session() as s:
            await s.execute(update(RunRow).where(RunRow.id == run_id).values(status=status, result=result, error=error))
        metrics.RUNS.labels(workflow, status).inc()
        for account in await self.ledger.accounts([_run_scope(run_id)]):
            if account.remaining is not None:
                metrics.BUDGET_REMAINING.labels(account.resource).set(account.remaining)

    async def _load_journal(self, run_id: str) -> dict[str, LLMCallRow | ToolCallRow]:
        async with self.store.session() as s:
            llm_rows = (await s.execute(select(LLMCallRow).where(LLMCallRow.run_id == run_id))).scalars().all()
            tool_rows = (await s.execute(select(ToolCallRow).where(ToolCallRow.run_id == run_id))).scalars().all()
        journal: dict[str, LLMCallRow | ToolCallRow] = {r.key: r for r in llm_rows}
        journal.update({r.key: r for r in tool_rows})
        return journal

    async def run_many(
        self,
        workflow: str | Workflow,
        tasks: list[dict[str, Any]],
        *,
        concurrency: int = 4,
        on_done: Callable[[RunResult], None] | None = None,
        **kwargs: Any,
    ) -> list[RunResult]:
        """Run one program per task, ``concurrency`` at a time; results in task order."""
        sem = asyncio.Semaphore(max(1, concurrency))

        async def one(task: dict[str, Any]) -> RunResult:
            async with sem:
                try:
                    res = await self.run(workflow, task, **kwargs)
                except QuotaFlowError as exc:
                    res = RunResult("", RunStatus.FAILED, None, str(exc))
                if on_done is not None:
                    on_done(res)
                return res

        return list(await asyncio.gather(*(one(t) for t in tasks)))

    # -- budget helpers --------------------------------------------------------------------------
    def _token_charges(self, scopes: list[str], model: str, input_tokens: int, output_tokens: int, max_output: int,
                       *, cost: float | None = None, cached: int = 0, reasoning: int = 0) -> list[Charge]:
        """Charges of one LLM call; with ``max_output`` (a reservation) output is bounded by it."""
        out = output_tokens or max_output
        if cost is None:
            cost = self.pricing.price_for(model).cost(Usage(input_tokens, 0, out))
        amounts = {"tokens": input_tokens + out, "tokens:input": input_tokens, "tokens:output": out,
                   "tokens:cached_input": cached, "tokens:reasoning": reasoning if not max_output else out,
                   DOLLARS: cost}
        return [Charge(sc, res, amt) for sc in scopes for res, amt in amounts.items()]

    def _observe_spend(self, charges: list[Charge]) -> None:
        for c in charges:
            if c.amount and c.scope.startswith("run:"):
                metrics.BUDGET_SPENT.labels(c.resource).inc(c.amount)

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
        tools = self._tools_for((row.options or {}).get("tools") or [])
        graph = wf.build(_Context(self, run_id, wf.name, row.backend, None, tools, [])).compile(  # type: ignore[arg-type]
            checkpointer=self._checkpointer)
        snapshot = await graph.aget_state({"configurable": {"thread_id": run_id}})
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
