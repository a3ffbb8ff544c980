"""The budget ledger: reserve before dispatch, settle after, never overspend.

Each (scope, resource) with a limit is an account row holding ``limit_amount``, ``reserved``
(calls in flight) and ``spent``. A reservation raises ``reserved`` with a single conditional
UPDATE per account (``... WHERE spent + reserved + amount <= limit``) inside one transaction, so
concurrent callers on SQLite or PostgreSQL can never take an account past its limit: the
database serialises the updates and the loser sees ``rowcount == 0``. Accounts are updated in id
order, so two reservations never wait on each other in opposite orders.

Every reservation is keyed (the call's idempotency key): a process that crashed between reserve
and settle left an entry behind, and the resumed call adopts it instead of reserving twice.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from budget.errors import LimitReached
from budget.limits import Limit
from budget.tables import BudgetAccountRow, LedgerEntryRow

T = TypeVar("T")

# Float sums of dollar amounts drift in the last bits; a limit is met, not exceeded, within this.
_EPS = 1e-9


@dataclass(frozen=True)
class Charge:
    scope: str
    resource: str
    amount: float


@dataclass(frozen=True)
class AccountView:
    scope: str
    resource: str
    limit: float | None
    reserved: float
    spent: float

    @property
    def remaining(self) -> float | None:
        return None if self.limit is None else max(self.limit - self.spent - self.reserved, 0.0)


@dataclass(frozen=True)
class Reservation:
    key: str
    run_id: str | None
    # (account id, scope, resource, amount), in account-id order
    parts: tuple[tuple[int, str, str, float], ...]
    adopted: bool = False


class Database(Protocol):
    """What the ledger needs of a store (``orchestrator.store.db.Store`` is one)."""

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """An async session inside a transaction, committed on success."""
        ...

    async def transact(self, fn: Callable[[Connection], T]) -> T:
        """``fn(connection)`` in one transaction."""
        ...


class Ledger:
    """Budget accounts and reservations in the store."""

    def __init__(self, store: Database) -> None:
        self.store = store
        # (scope, resource) -> account id, for accounts known to exist (ids never change).
        self._ids: dict[tuple[str, str], int] = {}
        # scope -> resources with a limit there; only those are charged.
        self._limited: dict[str, set[str]] = {}

    async def set_limits(self, limits: list[Limit]) -> None:
        """Create or change limits. Relative limits add to the current limit."""
        async with self.store.session() as s:
            for lim in limits:
                row = (
                    await s.execute(
                        select(BudgetAccountRow).where(
                            BudgetAccountRow.scope == lim.scope, BudgetAccountRow.resource == lim.resource
                        )
                    )
                ).scalar_one_or_none()
                if row is None:
                    row = BudgetAccountRow(scope=lim.scope, resource=lim.resource, reserved=0.0, spent=0.0,
                                           limit_amount=lim.amount)
                    s.add(row)
                elif lim.relative:
                    row.limit_amount = (row.limit_amount or 0.0) + lim.amount
                else:
                    row.limit_amount = lim.amount
                await s.flush()
                self._ids[(lim.scope, lim.resource)] = row.id
                self._limited.setdefault(lim.scope, set()).add(lim.resource)

    async def load_scopes(self, scopes: list[str]) -> None:
        """Learn the limited accounts of ``scopes`` (after a restart)."""
        async with self.store.session() as s:
            rows = (
                await s.execute(
                    select(BudgetAccountRow).where(
                        BudgetAccountRow.scope.in_(scopes), BudgetAccountRow.limit_amount.is_not(None)
                    )
                )
            ).scalars()
            for row in rows:
                self._ids[(row.scope, row.resource)] = row.id
                self._limited.setdefault(row.scope, set()).add(row.resource)

    def limited(self, charges: list[Charge]) -> list[Charge]:
        """The charges that hit an account with a limit (the others need no reservation)."""
        return [c for c in charges if c.resource in self._limited.get(c.scope, ())]

    async def reserve(self, key: str, charges: list[Charge], run_id: str | None = None) -> Reservation:
        """Reserve ``charges`` atomically, or raise LimitReached and reserve nothing."""
        parts = tuple(
            sorted(
                (self._ids[(c.scope, c.resource)], c.scope, c.resource, c.amount)
                for c in self.limited(charges)
                if c.amount > 0
            )
        )
        if not parts:
            return Reservation(key, run_id, ())

        def reserve_tx(s: Connection) -> None:
            s.execute(insert(LedgerEntryRow), [
                {"key": key, "account_id": aid, "run_id": run_id, "status": "reserved", "reserved_amount": amount}
                for aid, _, _, amount in parts
            ])
            for aid, scope, resource, amount in parts:
                res = s.execute(
                    update(BudgetAccountRow)
                    .where(
                        BudgetAccountRow.id == aid,
                        or_(
                            BudgetAccountRow.limit_amount.is_(None),
                            BudgetAccountRow.spent + BudgetAccountRow.reserved + amount
                            <= BudgetAccountRow.limit_amount + _EPS,
                        ),
                    )
                    .values(reserved=BudgetAccountRow.reserved + amount)
                )
                if res.rowcount != 1:  # type: ignore[attr-defined]
                    limit, spent, held = s.execute(
                        select(BudgetAccountRow.limit_amount, BudgetAccountRow.spent, BudgetAccountRow.reserved)
                        .where(BudgetAccountRow.id == aid)
                    ).one()
                    raise LimitReached(scope, resource, limit or 0.0, spent + held, amount)

        try:
            await self.store.transact(reserve_tx)
        except IntegrityError:
            return await self._adopt(key, run_id, parts)
        return Reservation(key, run_id, parts)

    async def _adopt(self, key: str, run_id: str | None, parts: tuple[tuple[int, str, str, float], ...]) -> Reservation:
        async with self.store.session() as s:
            entries = (await s.execute(select(LedgerEntryRow).where(LedgerEntryRow.key == key))).scalars().all()
        by_account = {e.account_id: e for e in entries}
        adopted = tuple(
            (aid, scope, resource, by_account[aid].reserved_amount)
            for aid, scope, resource, _ in parts
            if aid in by_account and by_account[aid].status == "reserved"
        )
        return Reservation(key, run_id, adopted, adopted=True)

    def settle(self, reservation: Reservation, actual: list[Charge], session: Connection) -> None:
        """Turn a reservation into spending inside the caller's transaction (``Store.transact``),
        so the call record and the ledger commit together. Resources not reserved are not charged."""
        spent = {(c.scope, c.resource): c.amount for c in actual}
        now = datetime.now(UTC)
        for aid, scope, resource, amount in reservation.parts:
            used = spent.get((scope, resource), 0.0)
            res = session.execute(
                update(LedgerEntryRow)
                .where(and_(LedgerEntryRow.key == reservation.key, LedgerEntryRow.account_id == aid,
                            LedgerEntryRow.status == "reserved"))
                .values(status="settled" if actual else "released", settled_amount=used, settled_at=now)
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                continue  # already settled by an earlier attempt of the same call
            session.execute(
                update(BudgetAccountRow)
                .where(BudgetAccountRow.id == aid)
                .values(reserved=BudgetAccountRow.reserved - amount, spent=BudgetAccountRow.spent + used)
            )

    async def release(self, reservation: Reservation) -> None:
        """Give a reservation back unspent (the call never happened)."""
        if reservation.parts:
            await self.store.transact(lambda s: self.settle(reservation, [], s))

    async def accounts(self, scopes: list[str]) -> list[AccountView]:
        async with self.store.session() as s:
            rows = (
                await s.execute(
                    select(BudgetAccountRow).where(BudgetAccountRow.scope.in_(scopes)).order_by(BudgetAccountRow.id)
                )
            ).scalars()
            return [AccountView(r.scope, r.resource, r.limit_amount, r.reserved, r.spent) for r in rows]
