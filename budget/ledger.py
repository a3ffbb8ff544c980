"""The budget ledger: reserve before dispatch, settle after, never overspend.

Each (scope, resource) with a limit is an account row holding ``limit_amount``, ``reserved``
(calls in flight) and ``spent``. A reservation raises ``reserved`` with a single conditional
UPDATE per account (``... WHERE spent + reserved + amount <= limit``) inside one transaction, so
concurrent callers on SQLite or PostgreSQL can never take an account past its limit: the
database serialises the updates and the loser sees ``rowcount == 0``. Accounts are updated in id
order, so two reservations never wait on each other in opposite orders.

Every reservation is keyed (the call's idempotency key): a process that crashed between reserve
and settle left an entry behind, and the resumed call adopts it instead of reserving twice.

On PostgreSQL a reservation is first tried as one statement outside a transaction (one round
trip where the transaction takes five): it locks the accounts in id order, and holds the amounts
and writes the entries only when every account has room (:data:`_HOLD_ALL`). What it cannot hold
goes the transactional way, which sizes the call by the accounts and names the binding limit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import Table, bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from budget.errors import LimitReached
from budget.limits import Limit
from budget.tables import BudgetAccountRow, LedgerEntryRow

T = TypeVar("T")

# Float sums of dollar amounts drift in the last bits; a limit is met, not exceeded, within this.
_EPS = 1e-9

# The hot path's statements, built once (SQLAlchemy caches their compiled form; building a
# statement anew per call cost more than executing it). Executed with one parameter set per
# account (``executemany``).
_ACCOUNTS = (select(BudgetAccountRow.id, BudgetAccountRow.scope, BudgetAccountRow.resource,
                    BudgetAccountRow.limit_amount, BudgetAccountRow.reserved, BudgetAccountRow.spent)
             .where(BudgetAccountRow.scope.in_(bindparam("scopes", expanding=True)))
             .order_by(BudgetAccountRow.id))
_ADD_ENTRY = insert(LedgerEntryRow)
_HOLD = (update(BudgetAccountRow)
         .where(BudgetAccountRow.id == bindparam("b_id"),
                or_(BudgetAccountRow.limit_amount.is_(None),
                    BudgetAccountRow.spent + BudgetAccountRow.reserved + bindparam("b_amount")
                    <= BudgetAccountRow.limit_amount + _EPS))
         .values(reserved=BudgetAccountRow.reserved + bindparam("b_amount")))
_SETTLE_ENTRY = (update(LedgerEntryRow)
                 .where(LedgerEntryRow.key == bindparam("b_key"), LedgerEntryRow.account_id == bindparam("b_id"),
                        LedgerEntryRow.status == "reserved")
                 .values(status=bindparam("b_status"), settled_amount=bindparam("b_used"),
                         settled_at=bindparam("b_at")))
# PostgreSQL: the whole reservation in one statement (see the module docstring). ``held`` locks
# the limited accounts charged, in id order (as the transaction's updates take them); ``room`` is
# whether all of them fit, as locked; the update and the entries happen only then. Returns the
# parts, each with that verdict. A key reserved before fails on the entries' unique constraint,
# as the transaction's insert does.
_HOLD_ALL = text(f"""
WITH want AS (
    SELECT * FROM unnest(CAST(:scopes AS text[]), CAST(:resources AS text[]),
                         CAST(:amounts AS double precision[])) AS w(scope, resource, amount)
    WHERE w.amount > 0),
held AS (
    SELECT a.id, a.scope, a.resource, w.amount, a.limit_amount, a.spent, a.reserved
    FROM budget_accounts a JOIN want w ON a.scope = w.scope AND a.resource = w.resource
    WHERE a.limit_amount IS NOT NULL ORDER BY a.id FOR UPDATE OF a),
room AS (
    SELECT coalesce(bool_and(spent + reserved + amount <= limit_amount + {_EPS!r}), true) AS fits FROM held),
hold AS (
    UPDATE budget_accounts a SET reserved = a.reserved + h.amount FROM held h, room
    WHERE a.id = h.id AND room.fits RETURNING a.id),
entries AS (
    INSERT INTO ledger_entries (key, account_id, run_id, status, reserved_amount, settled_amount, created_at)
    SELECT :key, h.id, :run_id, 'reserved', h.amount, 0.0, :now FROM held h, room WHERE room.fits
    RETURNING account_id)
SELECT h.id, h.scope, h.resource, h.amount, room.fits, (SELECT count(*) FROM hold) + (SELECT count(*) FROM entries)
FROM held h, room ORDER BY h.id
""")

# PostgreSQL: a settlement with no overrun, and the call's record, in one statement. The accounts
# are locked first, in id order (the InitPlan ``locked`` runs before the entries are updated: the
# order reservations lock them in, so the two never wait on each other in opposite orders); only
# entries still reserved are settled, and only those are spent (an earlier attempt of the same
# call may have settled some). ``{record}``: the record's INSERT as one more CTE.
_SETTLE_ALL = """
WITH v AS (
    SELECT * FROM unnest(CAST(:ids AS integer[]), CAST(:used AS double precision[]), CAST(:statuses AS text[]))
        AS v(account_id, used, status)),
locked AS (SELECT a.id FROM budget_accounts a WHERE a.id = ANY(CAST(:ids AS integer[])) ORDER BY a.id FOR UPDATE),
settled AS (
    UPDATE ledger_entries e SET status = v.status, settled_amount = v.used, settled_at = :at
    FROM v WHERE e.key = :key AND e.account_id = v.account_id AND e.status = 'reserved'
        AND (SELECT count(*) FROM locked) >= 0
    RETURNING e.account_id, e.reserved_amount, v.used){record}
UPDATE budget_accounts a SET reserved = a.reserved - s.reserved_amount, spent = a.spent + s.used
FROM settled s WHERE a.id = s.account_id
"""


def _insert_sql(table: Table, row: dict[str, Any]) -> tuple[str, list[Any]]:
    """``INSERT INTO table`` of ``row`` as SQL with typed bind parameters (the columns' own types
    process the values, as an ORM or Core insert would), Python-side defaults filled in."""
    values = dict(row)
    for column in table.columns:
        default = column.default
        if column.name not in values and default is not None and not column.primary_key:
            values[column.name] = default.arg(None) if default.is_callable else default.arg  # type: ignore[attr-defined]
    names = list(values)
    sql = (f"INSERT INTO {table.name} ({', '.join(names)}) "
           f"VALUES ({', '.join(f':r_{n}' for n in names)})")
    return sql, [bindparam(f"r_{n}", values[n], type_=table.c[n].type) for n in names]


_SPEND = (update(BudgetAccountRow).where(BudgetAccountRow.id == bindparam("b_id"))
          .values(reserved=BudgetAccountRow.reserved - bindparam("b_amount"),
                  spent=BudgetAccountRow.spent + bindparam("b_used")))


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
class Overrun:
    """A settled call that used more of ``resource`` in ``scope`` than it had reserved."""

    scope: str
    resource: str
    reserved: float
    used: float
    limit: float | None


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

    async def autocommit(self, fn: Callable[[Connection], T]) -> T:
        """``fn(connection)`` outside a transaction: each statement commits on its own."""
        ...

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is SQLite (else PostgreSQL)."""
        ...


class Ledger:
    """Budget accounts and reservations in the store.

    Which accounts have a limit is read from the database inside each reservation's
    transaction, so a limit another process or host set on a shared scope is enforced at once.
    """

    def __init__(self, store: Database) -> None:
        self.store = store

    async def set_limits(self, limits: list[Limit]) -> None:
        """Create or change limits in one transaction; relative limits add to the current limit.

        An upsert per account (``INSERT ... ON CONFLICT DO UPDATE`` on SQLite and PostgreSQL), so
        any number of runs and processes may set the limit of one shared scope at once."""
        if limits:
            await self.store.transact(lambda conn: upsert_limits(conn, limits))

    async def reserve(self, key: str, charges: list[Charge], run_id: str | None = None) -> Reservation:
        """Reserve ``charges`` atomically, or raise LimitReached and reserve nothing. Charges on
        accounts without a limit (or without an account) need no reservation."""
        wanted = [c for c in charges if c.amount > 0]
        if not wanted:
            return Reservation(key, run_id, ())
        scopes = sorted({c.scope for c in wanted})
        return await self._reserve(key, run_id, scopes, lambda _views: wanted)

    async def reserve_sized(self, key: str, scopes: list[str], size: Callable[[list[AccountView]], list[Charge]],
                            run_id: str | None = None) -> Reservation:
        """Reserve what ``size`` asks for, given the accounts of ``scopes`` as they stand, in one
        transaction: read, size and reserve. On SQLite the transaction holds the write lock from
        its start, so the accounts cannot change between the read and the reservation; on
        PostgreSQL they can (another process), and the conditional update still refuses what no
        longer fits (LimitReached: size again). ``size`` runs on the store's worker thread and
        may run more than once (it must be pure). ``size([])`` must be what the call takes where
        no account limits it: on PostgreSQL that is reserved first in one statement, and only
        where some account has no room for it is the call sized by the accounts."""
        return await self._reserve(key, run_id, scopes, size)

    async def _reserve(self, key: str, run_id: str | None, scopes: list[str],
                       size: Callable[[list[AccountView]], list[Charge]]) -> Reservation:
        def reserve_tx(s: Connection) -> tuple[tuple[int, str, str, float], ...]:
            rows = s.execute(_ACCOUNTS, {"scopes": scopes}).all()
            views = _views(rows)
            ids = {(sc, res): aid for aid, sc, res, lim, _, _ in rows if lim is not None}
            parts = tuple(sorted((ids[(c.scope, c.resource)], c.scope, c.resource, c.amount)
                                 for c in size(views) if c.amount > 0 and (c.scope, c.resource) in ids))
            if not parts:
                return parts
            s.execute(_ADD_ENTRY, [
                {"key": key, "account_id": aid, "run_id": run_id, "status": "reserved", "reserved_amount": amount}
                for aid, _, _, amount in parts
            ])
            held = s.execute(_HOLD, [{"b_id": aid, "b_amount": amount} for aid, _, _, amount in parts]).rowcount
            if held != len(parts):  # some account had no room: name it; the transaction rolls back
                raise _refusal(s, parts, {aid: (lim, held + spent) for aid, _, _, lim, held, spent in rows})
            return parts

        try:
            if not self.store.is_sqlite and (held := await self._hold_all(key, run_id, size([]))) is not None:
                return Reservation(key, run_id, held)
            parts = await self.store.transact(reserve_tx)
        except IntegrityError:
            return await self._adopt(key, run_id)
        return Reservation(key, run_id, parts)

    async def _hold_all(self, key: str, run_id: str | None,
                        charges: list[Charge]) -> tuple[tuple[int, str, str, float], ...] | None:
        """PostgreSQL: ``charges`` reserved in one statement, or None where some limited account
        has no room for its part (nothing reserved then). ``charges`` is what the call is sized
        to when nothing limits it (``size([])``): where every account has room, the call is sized
        so in the transaction too."""
        params = {"scopes": [c.scope for c in charges], "resources": [c.resource for c in charges],
                  "amounts": [float(c.amount) for c in charges], "key": key, "run_id": run_id, "now": datetime.now(UTC)}
        rows = await self.store.autocommit(lambda conn: conn.execute(_HOLD_ALL, params).all())
        if rows and not rows[0][4]:
            return None
        assert not rows or rows[0][5] == 2 * len(rows), "every locked account held, with its entry"
        return tuple((aid, scope, resource, amount) for aid, scope, resource, amount, *_ in rows)

    async def _adopt(self, key: str, run_id: str | None) -> Reservation:
        """The reservation an earlier attempt of the same call left behind (a crash between
        reserve and settle): its parts still held are this call's reservation."""
        async with self.store.session() as s:
            rows = (await s.execute(
                select(LedgerEntryRow.account_id, BudgetAccountRow.scope, BudgetAccountRow.resource,
                       LedgerEntryRow.reserved_amount)
                .join(BudgetAccountRow, BudgetAccountRow.id == LedgerEntryRow.account_id)
                .where(LedgerEntryRow.key == key, LedgerEntryRow.status == "reserved")
            )).all()
        return Reservation(key, run_id, tuple(sorted((aid, sc, res, amt) for aid, sc, res, amt in rows)), adopted=True)

    def settle(self, reservation: Reservation, actual: list[Charge], session: Connection) -> list[Overrun]:
        """Turn a reservation into spending inside the caller's transaction (``Store.transact``),
        so the call record and the ledger commit together. Resources not reserved are not charged.

        What was really used is charged even where it exceeds the reservation (a backend that
        reported more than it was allowed to use); such entries are settled with status
        ``overrun`` and returned, so the caller can stop the run."""
        now = datetime.now(UTC)
        rows = _settle_rows(reservation, actual, now)
        if not rows:
            return []
        if not _any_overrun(rows) and session.dialect.name == "postgresql":
            session.execute(_settle_all(reservation.key, rows, now))
            return []
        if not _any_overrun(rows):
            # Two statements for all accounts. Where an earlier attempt of the same call settled
            # some entries already, only those settled now (stamped ``now``) are spent.
            if session.execute(_SETTLE_ENTRY, rows).rowcount != len(rows):
                fresh = set(session.execute(select(LedgerEntryRow.account_id).where(
                    LedgerEntryRow.key == reservation.key, LedgerEntryRow.settled_at == now)).scalars())
                rows = [row for row in rows if row["b_id"] in fresh]
            if rows:
                session.execute(_SPEND, rows)
            return []
        overruns = []
        for (aid, scope, resource, amount), row in zip(reservation.parts, rows, strict=True):
            if session.execute(_SETTLE_ENTRY, row).rowcount != 1:
                continue  # already settled by an earlier attempt of the same call
            if row["b_status"] == "overrun":
                limit = session.execute(select(BudgetAccountRow.limit_amount)
                                        .where(BudgetAccountRow.id == aid)).scalar_one_or_none()
                overruns.append(Overrun(scope, resource, amount, row["b_used"], limit))
            session.execute(_SPEND, row)
        return overruns

    async def settle_recorded(self, reservation: Reservation, actual: list[Charge], table: Table,
                              record: dict[str, Any]) -> list[Overrun]:
        """:meth:`settle`, and ``record`` (the call's row) inserted into ``table``, atomically.
        On PostgreSQL, where no part overran, one statement outside a transaction (one round
        trip where the transaction takes four); otherwise one transaction."""
        now = datetime.now(UTC)
        rows = _settle_rows(reservation, actual, now)
        if not self.store.is_sqlite and not _any_overrun(rows):
            insert_sql, binds = _insert_sql(table, record)
            statement = (_settle_all(reservation.key, rows, now, (insert_sql, binds)) if rows
                         else text(insert_sql).bindparams(*binds))
            await self.store.autocommit(lambda conn: conn.execute(statement))
            return []

        def settle_tx(conn: Connection) -> list[Overrun]:
            overruns = self.settle(reservation, actual, conn)
            conn.execute(_insert_into(table), record)
            return overruns

        return await self.store.transact(settle_tx)

    async def release(self, reservation: Reservation) -> None:
        """Give a reservation back unspent (the call never happened) and forget it, so that the
        same call, retried later under the same key (a resumed run), reserves afresh."""

        def release_tx(s: Connection) -> None:
            for aid, _, _, amount in reservation.parts:
                gone = s.execute(delete(LedgerEntryRow).where(
                    LedgerEntryRow.key == reservation.key, LedgerEntryRow.account_id == aid,
                    LedgerEntryRow.status == "reserved")).rowcount
                if gone == 1:
                    s.execute(update(BudgetAccountRow).where(BudgetAccountRow.id == aid)
                              .values(reserved=BudgetAccountRow.reserved - amount))

        if reservation.parts:
            await self.store.transact(release_tx)

    async def release_run(self, run_id: str) -> int:
        """Give back every reservation run ``run_id`` still holds, and forget them (a process
        that died between reserve and settle left them; its calls run again on resume and reserve
        afresh). Only for a run no process is executing. Returns the entries released."""

        def release_tx(s: Connection) -> int:
            held = s.execute(select(LedgerEntryRow.id, LedgerEntryRow.account_id, LedgerEntryRow.reserved_amount)
                             .where(LedgerEntryRow.run_id == run_id, LedgerEntryRow.status == "reserved")).all()
            for entry_id, aid, amount in sorted(held, key=lambda row: row[1]):
                s.execute(update(BudgetAccountRow).where(BudgetAccountRow.id == aid)
                          .values(reserved=BudgetAccountRow.reserved - amount))
                s.execute(delete(LedgerEntryRow).where(LedgerEntryRow.id == entry_id))
            return len(held)

        return await self.store.transact(release_tx)

    @staticmethod
    def accounts_in(conn: Connection, scopes: list[str]) -> list[AccountView]:
        """The accounts of ``scopes`` read in the caller's transaction (``Store.transact``)."""
        return _views(conn.execute(_ACCOUNTS, {"scopes": scopes}))

    async def accounts(self, scopes: list[str]) -> list[AccountView]:
        async with self.store.session() as s:
            return _views(await s.execute(_ACCOUNTS, {"scopes": scopes}))


def _settle_rows(reservation: Reservation, actual: list[Charge], now: datetime) -> list[dict[str, Any]]:
    """One parameter set per part of ``reservation``: what it held, what was used, its new status."""
    spent = {(c.scope, c.resource): c.amount for c in actual}
    rows: list[dict[str, Any]] = [
        {"b_key": reservation.key, "b_id": aid, "b_amount": amount, "b_used": spent.get((scope, resource), 0.0),
         "b_at": now} for aid, scope, resource, amount in reservation.parts]
    for row in rows:
        row["b_status"] = ("overrun" if row["b_used"] > row["b_amount"] + _EPS else "settled") if actual \
            else "released"
    return rows


def _any_overrun(rows: list[dict[str, Any]]) -> bool:
    """Whether some part of :func:`_settle_rows` was used past what it held."""
    return any(row["b_status"] == "overrun" for row in rows)


@functools.cache
def _insert_into(table: Table) -> Any:
    """``insert(table)``, built once per table (the hot path's statements are; see above)."""
    return insert(table)


def _settle_all(key: str, rows: list[dict[str, Any]], now: datetime,
                record: tuple[str, list[Any]] | None = None) -> Any:
    """:data:`_SETTLE_ALL` for ``rows`` (no overrun among them), with ``record`` (SQL and typed
    binds of an INSERT) as one more CTE."""
    sql = _SETTLE_ALL.format(record=f",\nrecord AS ({record[0]})" if record else "")
    return text(sql).bindparams(
        *(record[1] if record else ()),
        bindparam("ids", [int(r["b_id"]) for r in rows]), bindparam("used", [float(r["b_used"]) for r in rows]),
        bindparam("statuses", [r["b_status"] for r in rows]), bindparam("at", now), bindparam("key", key))


def _views(rows: Iterable[Any]) -> list[AccountView]:
    """Rows of ``_ACCOUNTS`` (id first) as account views."""
    return [AccountView(sc, res, lim, held, spent) for _, sc, res, lim, held, spent in rows]


def _refusal(s: Connection, parts: tuple[tuple[int, str, str, float], ...],
             seen: dict[int, tuple[float | None, float]]) -> LimitReached:
    """The refusal of a reservation some account of ``parts`` had no room for: the first that
    had none as the transaction read them (``seen``: id -> (limit, used)); where none looked full
    (PostgreSQL: another process reserved since), the one with the least room now."""
    for aid, scope, resource, amount in parts:
        limit, used = seen[aid]
        if limit is not None and used + amount > limit + _EPS:
            return LimitReached(scope, resource, limit, used, amount)
    now = {aid: (limit, spent + held) for aid, limit, spent, held in s.execute(
        select(BudgetAccountRow.id, BudgetAccountRow.limit_amount, BudgetAccountRow.spent, BudgetAccountRow.reserved)
        .where(BudgetAccountRow.id.in_([p[0] for p in parts])))}
    aid, scope, resource, amount = min(parts, key=lambda p: (now[p[0]][0] or 0.0) - now[p[0]][1] - p[3])
    limit, used = now[aid]
    return LimitReached(scope, resource, limit or 0.0, used, amount)


def _limited_accounts(s: Connection, scopes: set[str]) -> dict[tuple[str, str], int]:
    """(scope, resource) -> account id of the accounts of ``scopes`` that have a limit."""
    rows = s.execute(select(BudgetAccountRow.scope, BudgetAccountRow.resource, BudgetAccountRow.id)
                     .where(BudgetAccountRow.scope.in_(scopes), BudgetAccountRow.limit_amount.is_not(None)))
    return {(scope, resource): aid for scope, resource, aid in rows}


_UPSERTS: dict[tuple[str, bool], Any] = {}


def _upsert_statement(dialect: str, relative: bool) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE of one limit (built once per dialect and kind)."""
    key = (dialect, relative)
    if key not in _UPSERTS:
        from sqlalchemy.dialects import postgresql, sqlite

        # Both dialects' INSERT ... ON CONFLICT DO UPDATE take the same arguments.
        dialect_insert: Callable[[Table], postgresql.Insert | sqlite.Insert] = (
            postgresql.insert if dialect == "postgresql" else sqlite.insert
        )
        table = cast(Table, BudgetAccountRow.__table__)
        stmt = dialect_insert(table).values(scope=bindparam("b_scope"), resource=bindparam("b_resource"),
                                            limit_amount=bindparam("b_amount"), reserved=0.0, spent=0.0)
        current = func.coalesce(table.c.limit_amount, 0.0)
        new_limit = current + stmt.excluded.limit_amount if relative else stmt.excluded.limit_amount
        _UPSERTS[key] = stmt.on_conflict_do_update(index_elements=["scope", "resource"],
                                                   set_={"limit_amount": new_limit})
    return _UPSERTS[key]


def upsert_limits(s: Connection, limits: list[Limit]) -> None:
    """Create or change ``limits`` in the caller's transaction (see ``Ledger.set_limits``)."""
    for lim in sorted(limits, key=lambda lim: (lim.scope, lim.resource)):  # one lock order for every writer
        s.execute(_upsert_statement(s.dialect.name, lim.relative),
                  {"b_scope": lim.scope, "b_resource": lim.resource, "b_amount": lim.amount})
