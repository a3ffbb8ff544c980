"""Statements over a run's row on the hot path of every run: created with its limits at the start,
its outcome written at the end. Functions over a sync ``Connection``, for ``Store.transact`` (one
group-committed transaction each, no ORM session)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from budget.ledger import AccountView, upsert_limits
from budget.limits import Limit
from budget.tables import BudgetAccountRow
from orchestrator.store.leases import LEASE_TTL
from orchestrator.store.models import RunRow

__all__ = ["create_run", "finish_run"]

# Built once (SQLAlchemy caches their compiled form); the values go in as parameters.
_INSERT_RUN = insert(RunRow)
_FINISH = (update(RunRow).where(RunRow.id == bindparam("b_id"))
           .values(status=bindparam("b_status"), result=bindparam("b_result"), error=bindparam("b_error")))
_SCOPE_ACCOUNTS = (select(BudgetAccountRow.scope, BudgetAccountRow.resource, BudgetAccountRow.limit_amount,
                          BudgetAccountRow.reserved, BudgetAccountRow.spent)
                   .where(BudgetAccountRow.scope == bindparam("b_scope")).order_by(BudgetAccountRow.id))


def create_run(conn: Connection, row: dict[str, Any], limits: list[Limit], lease_owner: str | None = None) -> None:
    """Insert the run's row and set its limits, in one transaction; with ``lease_owner``, the
    row is inserted holding that owner's lease (``LeaseKeeper.hold(..., taken=True)``)."""
    if lease_owner is not None:
        row = {**row, "lease_owner": lease_owner, "lease_expires_at": datetime.now(UTC) + LEASE_TTL}
    conn.execute(_INSERT_RUN, row)
    if limits:
        upsert_limits(conn, limits)


def finish_run(conn: Connection, run_id: str, values: dict[str, Any], scope: str) -> list[AccountView]:
    """Write the run's outcome (``status``, ``result``, ``error``); returns the accounts of its
    scope (for the metrics)."""
    conn.execute(_FINISH, {"b_id": run_id, "b_status": values["status"], "b_result": values["result"],
                           "b_error": values["error"]})
    return [AccountView(*r) for r in conn.execute(_SCOPE_ACCOUNTS, {"b_scope": scope})]
