"""Read-side views of the store: run lists and run reports (trajectory, ledger, cost)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select

from budget.costs import unified_cost
from budget.tables import BudgetAccountRow
from orchestrator.errors import RunNotFound
from orchestrator.runtime import Runtime
from orchestrator.store.leases import effective_status
from orchestrator.store.models import LLMCallRow, RunRow, StepRow, ToolCallRow, as_utc
from orchestrator.types import Usage


async def list_runs(rt: Runtime, *, limit: int = 20, workflow: str | None = None,
                    status: str | None = None) -> list[dict[str, Any]]:
    """The newest runs, with their status as users should see it (a "running" run whose process
    is gone shows as "interrupted"; ``status`` filters by that)."""
    await rt.store.ensure_schema()
    q = select(RunRow).order_by(RunRow.created_at.desc())
    if workflow:
        q = q.where(RunRow.workflow == workflow)
    if status in ("running", "interrupted"):
        q = q.where(RunRow.status.in_(["running", "interrupted"]))
    elif status:
        q = q.where(RunRow.status == status)
    out: list[dict[str, Any]] = []
    async with rt.store.session() as s:
        async for r in await s.stream_scalars(q.execution_options(yield_per=200)):
            shown = _status(r)
            if status and shown != status:
                continue
            out.append({"run_id": r.id, "workflow": r.workflow, "status": shown, "backend": r.backend,
                        "model": r.model, "parent_id": r.parent_id, "worker": r.worker,
                        "created_at": _utc_iso(r.created_at), "answer": (r.result or {}).get("answer")})
            if len(out) >= limit:
                break
    return out


def _utc_iso(when: datetime) -> str:
    """ISO 8601 with its time zone."""
    return as_utc(when).isoformat()


def _status(run: RunRow) -> str:
    return effective_status(run.status, run.lease_owner, run.lease_expires_at)


def _declared_limits(rt: Runtime, tool: str) -> dict[str, Any]:
    """What the tool declares it enforces per call (``ToolSpec.limits``), as registered now."""
    return dict(rt.tools.get(tool).spec.limits) if tool in rt.tools else {}


async def run_report(rt: Runtime, run_id: str) -> dict[str, Any]:
    """Everything about one run; for a dataset run (a parent), totals over its item runs."""
    await rt.store.ensure_schema()
    async with rt.store.session() as s:
        run = await s.get(RunRow, run_id)
        if run is None:
            raise RunNotFound(run_id)
        children = (await s.execute(
            select(RunRow.id, RunRow.status, RunRow.result, RunRow.error, RunRow.worker)
            .where(RunRow.parent_id == run_id).order_by(RunRow.created_at, RunRow.id)
        )).all()
        ids = [run_id] + [c.id for c in children]
        steps = (await s.execute(select(StepRow).where(StepRow.run_id == run_id).order_by(StepRow.id))).scalars().all()
        llm = (await s.execute(
            select(LLMCallRow.model, func.count(), func.sum(LLMCallRow.input_tokens),
                   func.sum(LLMCallRow.cached_input_tokens), func.sum(LLMCallRow.output_tokens),
                   func.sum(LLMCallRow.reasoning_tokens), func.sum(LLMCallRow.latency_s))
            .where(LLMCallRow.run_id.in_(ids)).group_by(LLMCallRow.model)
        )).all()
        tools = (await s.execute(
            select(ToolCallRow.tool, func.count(), func.sum(ToolCallRow.units), func.sum(ToolCallRow.duration_s),
                   func.sum(case((ToolCallRow.is_error, 1), else_=0)),
                   func.sum(case((ToolCallRow.refused, 1), else_=0)))
            .where(ToolCallRow.run_id.in_(ids)).group_by(ToolCallRow.tool)
        )).all()
        accounts = (await s.execute(
            select(BudgetAccountRow).where(BudgetAccountRow.scope.in_([f"run:{i}" for i in ids]))
            .order_by(BudgetAccountRow.id)
        )).scalars().all()
    usage_by_model = {m or "?": Usage(int(i or 0), int(c or 0), int(o or 0), int(r or 0))
                      for m, _, i, c, o, r, _ in llm}
    tool_units = {t: float(u or 0) for t, _, u, _, _, _ in tools}
    cost = unified_cost(usage_by_model, tool_units, rt.pricing)
    statuses: dict[str, int] = {}
    for c in children:
        statuses[c.status] = statuses.get(c.status, 0) + 1
    return {
        "run_id": run.id,
        "workflow": run.workflow,
        "status": _status(run),
        "backend": run.backend,
        "model": run.model,
        "worker": run.worker,
        "task": run.task,
        "result": run.result,
        "error": run.error,
        "created_at": _utc_iso(run.created_at),
        "items": {"count": len(children), "by_status": statuses} if children else None,
        "item_runs": [{"run_id": c.id, "status": c.status, "answer": (c.result or {}).get("answer"),
                       "error": c.error, "worker": c.worker} for c in children],
        "trajectory": [{"node": st.node, **st.data} for st in steps],
        "llm": [
            {"model": m, "calls": n, "input_tokens": int(i or 0), "cached_input_tokens": int(c or 0),
             "output_tokens": int(o or 0), "reasoning_tokens": int(r or 0), "latency_s": float(lat or 0)}
            for m, n, i, c, o, r, lat in llm
        ],
        "tools": [
            {"tool": t, "calls": n, "units": float(u or 0), "duration_s": float(d or 0), "errors": int(e or 0),
             "refused": int(rf or 0), "limits": _declared_limits(rt, t)}
            for t, n, u, d, e, rf in tools
        ],
        "ledger": [
            {"scope": a.scope, "resource": a.resource, "limit": a.limit_amount, "spent": a.spent,
             "reserved": a.reserved,
             "remaining": None if a.limit_amount is None else max(a.limit_amount - a.spent - a.reserved, 0.0)}
            for a in accounts
        ],
        "cost": cost.to_dict(),
    }
