"""Statements over a run's row on the hot path of every run: created with its limits at the start,
its outcome written at the end. Functions over a sync ``Connection``, for ``Store.transact`` (one
group-committed transaction each, no ORM session)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from budget.ledger import AccountView, upsert_limits
from budget.limits import Limit
from budget.tables import BudgetAccountRow
from orchestrator.store.models import RunRow

__all__ = ["create_run", "finish_run"]


def create_run(conn: Connection, row: dict[str, Any], limits: list[Limit]) -> None:
    """Insert the run's row and set its limits, in one transaction."""
    conn.execute(insert(RunRow).values(**row))
    if limits:
        upsert_limits(conn, limits)


def finish_run(conn: Connection, run_id: str, values: dict[str, Any], scope: str) -> list[AccountView]:
    """Write the run's outcome; returns the accounts of its scope (for the metrics)."""
    conn.execute(update(RunRow).where(RunRow.id == run_id).values(**values))
    rows = conn.execute(select(BudgetAccountRow.scope, BudgetAccountRow.resource, BudgetAccountRow.limit_amount,
                               BudgetAccountRow.reserved, BudgetAccountRow.spent)
                        .where(BudgetAccountRow.scope == scope).order_by(BudgetAccountRow.id))
    return [AccountView(*r) for r in rows]
