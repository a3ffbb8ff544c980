"""What a run's calls leave in the store: LLM and tool call rows (the resume journal), steps,
and run-scoped records. Functions over a sync ``Connection`` run inside ``Store.transact``
(one transaction with the ledger's settle); the async ones read."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from orchestrator.journal import Entry, Journal
from orchestrator.store import records
from orchestrator.store.models import LLMCallRow, ObservationRow, StepRow, ToolCallRow

# Built once: a statement built per call (``insert(...).values(**row)``) cost more to build and
# to key for SQLAlchemy's compiled cache than to execute; the row goes in as parameters.
_INSERT_TOOL_CALL = insert(ToolCallRow)
_INSERT_OBSERVATION = insert(ObservationRow)


def insert_tool_call(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(_INSERT_TOOL_CALL, row)


def insert_observation(conn: Connection, row: dict[str, Any], *, once: bool = False) -> None:
    """Journal an observation; with ``once``, unless its key is there already (a resumed run)."""
    if once and conn.execute(select(ObservationRow.id).where(ObservationRow.key == row["key"])).first():
        return
    conn.execute(_INSERT_OBSERVATION, row)


def insert_step_once(conn: Connection, row: dict[str, Any]) -> None:
    """Insert a trajectory step unless its key is there (a resumed run re-executes the node)."""
    if conn.execute(select(StepRow.id).where(StepRow.key == row["key"])).first() is None:
        conn.execute(insert(StepRow).values(**row))


def replace_record(conn: Connection, run_id: str, namespace: str, key: str, data: Any) -> None:
    """Store ``data`` as the only version of a run-scoped record."""
    conn.execute(records.delete_key(namespace, key, run_id=run_id))
    conn.execute(records.insert_version(namespace, key, 1, data, run_id=run_id))


async def read_record(session: AsyncSession, run_id: str, namespace: str, key: str) -> Any | None:
    row = (await session.execute(records.latest(namespace, key, run_id=run_id))).first()
    return None if row is None else row.data


async def load_journal(session: AsyncSession, run_id: str) -> Journal:
    """Every input run ``run_id`` consumed so far: LLM calls, tool calls, observations."""
    llm_rows = (await session.execute(select(LLMCallRow).where(LLMCallRow.run_id == run_id))).scalars().all()
    tool_rows = (await session.execute(select(ToolCallRow).where(ToolCallRow.run_id == run_id))).scalars().all()
    observed = (await session.execute(select(ObservationRow).where(ObservationRow.run_id == run_id))).scalars().all()
    entries = [Entry(r.key, "llm", {"messages": r.prompt}, r, r.created_at - timedelta(seconds=r.latency_s),
                     r.created_at) for r in llm_rows]
    entries += [Entry(r.key, "tool", {"tool": r.tool, "args": r.arguments}, r,
                      r.created_at - timedelta(seconds=r.duration_s), r.created_at) for r in tool_rows]
    entries += [Entry(r.key, r.kind, r.kind, r.data, r.created_at, r.created_at) for r in observed]
    return Journal.load(run_id, entries)


def tool_units_used_in(conn: Connection, run_id: str) -> dict[str, float]:
    """Units charged per tool so far in run ``run_id``, read in the caller's transaction."""
    used: dict[str, float] = defaultdict(float)
    for tool, units in conn.execute(select(ToolCallRow.tool, ToolCallRow.units).where(ToolCallRow.run_id == run_id)):
        used[tool] += units
    return dict(used)
