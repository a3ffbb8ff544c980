"""The :class:`~orchestrator.context.RunContext` the runtime hands to a workflow's graph.

Each LLM and tool call is reserved against the ledger, dispatched, settled in the same
transaction as its call record, and counted in the metrics. Every input a node consumes (LLM
replies, tool results, budget views, clock readings) is journaled under a key from its place in
the graph (:mod:`orchestrator.journal`): a resumed run gets the journaled input back instead of
asking again, and is stopped if it asks for a different one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.engine import Connection

from budget.costs import PriceTable
from budget.errors import LimitReached
from budget.ledger import AccountView, Charge, Ledger, Overrun, Reservation
from budget.limits import tool_resource
from orchestrator import accounting, metrics
from orchestrator.context import ToolBudgetView
from orchestrator.errors import (
    BadInputError,
    BudgetExhausted,
    BudgetOverrun,
    EngineError,
    ToolError,
)
from orchestrator.journal import Entry, Journal, llm_request, task_of_current_node
from orchestrator.llm.base import LLMClient
from orchestrator.store import calls
from orchestrator.store.db import Store
from orchestrator.store.models import LLMCallRow, ToolCallRow
from orchestrator.tools.base import ToolResult
from orchestrator.tools.registry import ToolRegistry
from orchestrator.types import (
    LLMRequest,
    LLMResponse,
    Message,
    ProgramHints,
    SamplingOptions,
    TokenLogprob,
    Usage,
)

__all__ = ["RuntimeContext"]

_LLM_CALLS = cast(Table, LLMCallRow.__table__)
_TOOL_CALLS = cast(Table, ToolCallRow.__table__)
_RESERVE_ATTEMPTS = 3
_NEED_EXACT = -1  # the prompt's upper bound would clamp the call: count it exactly, then size again


@dataclass
class RuntimeContext:
    """One run's handle on the store, the ledger, its LLM client and its tools."""

    store: Store
    ledger: Ledger
    pricing: PriceTable
    run_id: str
    workflow: str
    backend: str
    llm: LLMClient
    tools: ToolRegistry
    scopes: list[str]
    config: dict[str, Any] = field(default_factory=dict)
    journal: Journal = field(init=False)
    _turn: int = 0
    _inflight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _marking: dict[str, asyncio.Future[None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.journal = Journal(self.run_id)

    # -- the journal ---------------------------------------------------------------------------
    def _replay(self, kind: str, request: Any) -> tuple[str, Entry | None]:
        """This input's journal key, and its journaled entry when a resumed run consumed it before."""
        task, node = task_of_current_node()
        key = self.journal.key(kind, request, task)
        return key, self.journal.replay(key, kind, request, task, node)

    @contextlib.asynccontextmanager
    async def _in_flight(self) -> AsyncIterator[None]:
        """Around a call that is sent: a task that has two calls in flight at once (``gather`` in
        a node) is journaled as concurrent, so that its resume matches calls by key, not order."""
        task, _ = task_of_current_node()
        if self._inflight[task] and not self.journal.is_concurrent(task):
            self.journal.mark_concurrent(task)
            row = {"run_id": self.run_id, "key": self.journal.concurrency_key(task), "kind": "concurrent",
                   "data": True}
            self._marking[task] = asyncio.ensure_future(
                self.store.transact(lambda conn: calls.insert_observation(conn, row, once=True)))
        marking = self._marking.get(task)
        if marking is not None:
            # Every call of the task waits until the marker is committed, not only the one that
            # wrote it: a third call journaled before the marker (transactions on a PostgreSQL
            # pool commit in any order) would be replayed by position after a crash in between.
            await asyncio.shield(marking)
        self._inflight[task] += 1
        try:
            yield
        finally:
            self._inflight[task] -= 1

    async def _reserve(self, key: str, charges: list[Charge]) -> Reservation:
        try:
            return await self.ledger.reserve(key, charges, self.run_id)
        except LimitReached as exc:
            raise _refused(exc) from None

    async def _release(self, reservation: Reservation) -> None:
        """Give a reservation back on a failure path; if the store fails too, the resume that
        follows releases what the run still holds (``Ledger.release_run``)."""
        with contextlib.suppress(Exception):
            await asyncio.shield(self.ledger.release(reservation))

    def _scopes(self, scope: str | None) -> list[str]:
        return self.scopes + ([scope] if scope else [])

    def load_journal(self, journal: Journal) -> None:
        """Inputs a crashed or paused run consumed: replayed instead of asked for again."""
        self.journal = journal
        self._turn = sum(entry.kind == "tool" for entry in journal.entries.values())

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
        sampling = sampling or SamplingOptions()
        wire = [m.to_wire() for m in messages]
        key, done = self._replay("llm", llm_request(wire, _sampling_fields(sampling)))
        if done is not None:
            return _response_from_row(done.result)
        async with self._in_flight():
            return await self._live_chat(key, messages, wire, sampling, tool_name, is_last_step, scope, purpose)

    async def _live_chat(self, key: str, messages: list[Message] | tuple[Message, ...], wire: list[dict[str, Any]],
                         sampling: SamplingOptions, tool_name: str | None, is_last_step: bool, scope: str | None,
                         purpose: str) -> LLMResponse:
        scopes = self._scopes(scope)
        model = getattr(self.llm, "model", "") or ""
        hints = ProgramHints(program_id=self.run_id, turn=self._turn, is_last_step=is_last_step, tool_name=tool_name)
        request = LLMRequest(messages=tuple(messages), sampling=sampling, hints=hints)
        reservation, request = await self._reserve_llm(key, scopes, model, request)
        t0 = time.perf_counter()
        try:
            response = await self.llm.complete(request)
        except BaseException as exc:
            await self._release(reservation)
            if isinstance(exc, EngineError):
                metrics.LLM_CALLS.labels(self.backend, "error").inc()
                metrics.ERRORS.labels("llm", type(exc).__name__).inc()
            raise
        latency = time.perf_counter() - t0
        u = response.usage
        cost = self.pricing.price_for(response.model or model).cost(u)
        actual = accounting.token_charges(scopes, self.pricing, model, u.input_tokens, u.output_tokens, 0, cost=cost,
                                          cached=u.cached_input_tokens, reasoning=u.reasoning_tokens)
        row = {
            "run_id": self.run_id, "key": key, "purpose": purpose, "model": response.model or model,
            "endpoint": response.endpoint, "input_tokens": u.input_tokens,
            "cached_input_tokens": u.cached_input_tokens, "output_tokens": u.output_tokens,
            "reasoning_tokens": u.reasoning_tokens, "latency_s": response.latency_s or latency,
            "finish_reason": response.finish_reason, "cost_usd": cost,
            "prompt": wire, "response": response.text, "logprobs": _logprobs_row(response.logprobs),
        }

        overruns = await self._settle(reservation, actual, _LLM_CALLS, row)
        metrics.observe_llm_call(self.backend, self.workflow, latency, u, cost)
        metrics.observe_spend(actual)
        self._stop_on_overrun(overruns)
        return response

    async def _reserve_llm(self, key: str, scopes: list[str], model: str,
                           request: LLMRequest) -> tuple[Reservation, LLMRequest]:
        """Reserve the call's prompt and as much output as every limit allows, ``max_tokens``
        clamped to it, so the reply cannot take the run past a limit. A call no output fits into
        is refused before dispatch.

        The prompt is reserved at its upper bound from its bytes while that leaves every limit
        room for all of ``max_tokens`` (the call is then the same whatever its exact size, and the
        reservation still covers it); only where the bound would clamp or refuse the call is the
        backend asked for the exact count (``count_prompt_tokens``: vLLM's ``/tokenize``, a round
        trip), and that is reserved instead."""
        counter = getattr(self.llm, "count_prompt_tokens", None)
        requested = request.sampling.max_tokens
        # A client that learns its model from the server's first reply reserves at the table's
        # highest prices until then: whatever model answers, the call is covered.
        price = self.pricing.price_for(model) if model else self.pricing.highest()
        prompt = {"tokens": accounting.input_tokens_upper_bound(request.messages), "exact": counter is None}
        sized: list[int] = []

        def size(views: list[AccountView]) -> list[Charge]:
            allowed = accounting.output_allowance({(v.scope, v.resource): v.remaining for v in views}, scopes,
                                                  price, prompt["tokens"], requested)
            if allowed < requested and not prompt["exact"]:
                sized[:] = [_NEED_EXACT, 0]
                return []  # nothing reserved: count the prompt exactly first
            # With no room, reserve what was asked: the ledger's refusal names the binding limit.
            max_out = allowed if allowed >= 1 else requested
            sized[:] = [allowed, max_out]
            return accounting.token_charges(scopes, self.pricing, model, prompt["tokens"], 0, max_out,
                                            cost=price.cost_of(prompt["tokens"], 0, max_out))

        attempt = 0
        while True:
            # One transaction reads the accounts, sizes the call and reserves it.
            try:
                reservation = await self.ledger.reserve_sized(key, scopes, size, self.run_id)
            except LimitReached as exc:
                attempt += 1
                if sized and sized[0] >= 1 and attempt < _RESERVE_ATTEMPTS:
                    continue  # a concurrent call took the room first: size the call again
                raise _refused(exc) from None
            if sized and sized[0] == _NEED_EXACT:
                exact = await counter(request) if counter is not None else None
                prompt = {"tokens": exact if exact is not None else prompt["tokens"], "exact": True}
                continue
            max_out = sized[1] if sized else requested
            return reservation, replace(request, sampling=replace(request.sampling, max_tokens=max_out))

    async def _settle(self, reservation: Reservation, actual: list[Charge], table: Table,
                      record: dict[str, Any]) -> list[Overrun]:
        """Settle ``reservation`` and store the call's ``record`` in one go; released on failure."""
        try:
            return await self.ledger.settle_recorded(reservation, actual, table, record)
        except BaseException:
            await self._release(reservation)
            raise

    @staticmethod
    def _stop_on_overrun(overruns: list[Overrun]) -> None:
        for o in overruns:
            metrics.BUDGET_OVERRUNS.labels(o.resource).inc()
        if overruns:
            first = overruns[0]
            raise BudgetOverrun(first.scope, first.resource, first.limit or 0.0, first.reserved, first.used)

    # -- tools -------------------------------------------------------------------------------
    async def call_tool(self, name: str, args: dict[str, Any], *, scope: str | None = None) -> ToolResult:
        key, done = self._replay("tool", {"tool": name, "args": args})
        if done is not None:
            row = done.result
            return ToolResult(row.result, is_error=row.is_error, metadata={"refused": row.refused, "replayed": True})
        async with self._in_flight():
            return await self._live_tool(key, name, args, scope)

    async def _live_tool(self, key: str, name: str, args: dict[str, Any], scope: str | None) -> ToolResult:
        self._turn += 1
        try:
            tool, args = self.tools.prepare(name, args)
        except (ToolError, BadInputError):
            # Not dispatched and not charged; the agent sees why and how to call it right.
            problem = await self.tools.invoke(name, args)
            metrics.TOOL_CALLS.labels(name if name in self.tools else "unknown", "bad_call").inc()
            await self._record_tool(key, name, _as_dict(args), problem, units=0, duration=0.0, cost=0.0)
            return problem
        units = float(tool.spec.units(args))
        cost = self.pricing.tool_price(name) * units
        charges = accounting.tool_charges(self._scopes(scope), name, units, cost)
        try:
            reservation = await self._reserve(key, charges)
        except BudgetExhausted as exc:
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
        try:
            result = await self.tools.invoke(name, args)
        except BaseException:
            await self._release(reservation)
            raise
        duration = time.perf_counter() - t0
        row = _tool_row(self.run_id, key, name, args, result, units, duration, cost)

        await self._settle(reservation, charges, _TOOL_CALLS, row)
        metrics.observe_tool_call(name, self.workflow, result.is_error, duration, cost)
        metrics.observe_spend(charges)
        return result

    async def _record_tool(self, key: str, name: str, args: dict[str, Any], result: ToolResult, *, units: float,
                           duration: float, cost: float, refused: bool = False) -> None:
        row = _tool_row(self.run_id, key, name, args, result, units, duration, cost, refused)
        await self.store.transact(lambda s: calls.insert_tool_call(s, row))

    async def tool_budgets(self) -> list[ToolBudgetView]:
        key, done = self._replay("budget", "tool_budgets")
        if done is not None:
            return [ToolBudgetView(**view) for view in done.result]

        def read_and_journal(conn: Connection) -> list[ToolBudgetView]:
            # One transaction reads the view and journals it (what a resumed run reads back).
            views = self._tool_budget_views(self.ledger.accounts_in(conn, self.scopes),
                                            calls.tool_units_used_in(conn, self.run_id))
            row = {"run_id": self.run_id, "key": key, "kind": "budget", "data": [asdict(v) for v in views]}
            calls.insert_observation(conn, row)
            return views

        return await self.store.transact(read_and_journal)

    async def now(self) -> float:
        key, done = self._replay("clock", "now")
        if done is not None:
            return float(done.result)
        reading = time.time()
        await self._observe(key, "clock", reading)
        return reading

    async def _observe(self, key: str, kind: str, data: Any) -> None:
        row = {"run_id": self.run_id, "key": key, "kind": kind, "data": data}
        await self.store.transact(lambda conn: calls.insert_observation(conn, row))

    def _tool_budget_views(self, accounts: list[AccountView], used: dict[str, float]) -> list[ToolBudgetView]:
        by_key = {(a.scope, a.resource): a for a in accounts}
        views = []
        for spec in self.tools.specs():
            acct = by_key.get((accounting.run_scope(self.run_id), tool_resource(spec.name)))
            views.append(ToolBudgetView(tool=spec.name, unit=spec.unit, used=used.get(spec.name, 0.0),
                                        limit=acct.limit if acct else None))
        return views

    # -- what workflows keep -----------------------------------------------------------------
    async def record_step(self, node: str, data: dict[str, Any]) -> None:
        key, _ = self._replay("step", {"node": node, "data": data})
        row = {"run_id": self.run_id, "key": key, "node": node, "data": data}
        await self.store.transact(lambda s: calls.insert_step_once(s, row))

    async def put_record(self, namespace: str, key: str, data: Any) -> None:
        await self.store.transact(lambda s: calls.replace_record(s, self.run_id, namespace, key, data))

    async def get_record(self, namespace: str, key: str) -> Any | None:
        async with self.store.session() as s:
            return await calls.read_record(s, self.run_id, namespace, key)


@functools.lru_cache(maxsize=256)
def _cached_fields(sampling: SamplingOptions) -> dict[str, Any]:
    return asdict(sampling)


def _sampling_fields(sampling: SamplingOptions) -> dict[str, Any]:
    """``asdict(sampling)`` (the journaled form), computed once per distinct options: a workflow
    sends the same few options on every turn, and ``asdict`` copies deeply (read-only result)."""
    try:
        return _cached_fields(sampling)
    except TypeError:  # unhashable (a json_schema of lists compared by value): not cached
        return asdict(sampling)


def _refused(exc: LimitReached) -> BudgetExhausted:
    """The ledger's refusal, counted, as the error that pauses the run."""
    metrics.BUDGET_REFUSALS.labels(exc.resource).inc()
    return accounting.budget_exhausted(exc)


def _as_dict(args: Any) -> dict[str, Any]:
    return args if isinstance(args, dict) else {"input": args}


def _tool_row(run_id: str, key: str, name: str, args: dict[str, Any], result: ToolResult, units: float,
              duration: float, cost: float, refused: bool = False) -> dict[str, Any]:
    return {
        "run_id": run_id, "key": key, "tool": name, "arguments": args, "result": result.content,
        "result_size": len(result.content), "is_error": result.is_error, "refused": refused, "units": units,
        "duration_s": duration, "cost_usd": cost,
    }


def _logprobs_row(logprobs: tuple[TokenLogprob, ...] | None) -> list[Any] | None:
    """A reply's log-probabilities as the journal stores them (``LLMCallRow.logprobs``)."""
    if logprobs is None:
        return None
    return [[t.token, t.logprob, [[alt, lp] for alt, lp in t.top_logprobs]] for t in logprobs]


def _response_from_row(row: LLMCallRow) -> LLMResponse:
    logprobs = None if row.logprobs is None else tuple(
        TokenLogprob(token, logprob, tuple((alt, lp) for alt, lp in top)) for token, logprob, top in row.logprobs)
    return LLMResponse(
        text=row.response,
        usage=Usage(row.input_tokens, row.cached_input_tokens, row.output_tokens, row.reasoning_tokens),
        model=row.model, finish_reason=row.finish_reason, latency_s=row.latency_s, endpoint=row.endpoint,
        logprobs=logprobs,
    )
