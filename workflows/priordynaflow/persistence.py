"""Q-tables in the database: one row per saved version of a family's table.

Thin adapter over SQLAlchemy 2 (the ``qtables`` table: id, family, version, data JSON, frozen,
created_at). The caller owns the session and its transaction: these methods execute and flush,
the caller commits. :class:`QTableRepository` takes a sync ``Session``,
:class:`AsyncQTableRepository` an ``AsyncSession``; both build the same statements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, delete, func, insert, select, update

from orchestrator.errors import ConfigError
from workflows.priordynaflow.qtable import QTable

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session
    from sqlalchemy.sql import Delete, Insert, Select, Update

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class StoredTable:
    """One saved version of a family's Q-table."""

    family: str
    version: int
    table: QTable
    frozen: bool
    created_at: datetime | None

    def export(self) -> dict[str, Any]:
        """JSON-ready form (what ``quotaflow qtable export`` writes)."""
        return {
            "family": self.family,
            "version": self.version,
            "frozen": self.frozen,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "data": self.table.to_dict(),
        }


def _resolve_table(model: Any) -> Table:
    if model is None:
        try:
            from orchestrator.store.models import QTableRow  # type: ignore[import-not-found]
        except ImportError as exc:
            raise ConfigError(
                "the store has no QTableRow model yet; pass model= (a Table or ORM class with "
                "columns id, family, version, data, frozen, created_at)"
            ) from exc
        model = QTableRow
    return getattr(model, "__table__", model)


class _Statements:
    """The SQL both repositories run."""

    def __init__(self, model: Any, clock: Clock) -> None:
        self.t = _resolve_table(model)
        self.clock = clock

    def latest(self, family: str, version: int | None = None) -> Select[Any]:
        t = self.t
        stmt = select(t.c.family, t.c.version, t.c.data, t.c.frozen, t.c.created_at).where(t.c.family == family)
        if version is not None:
            stmt = stmt.where(t.c.version == version)
        return stmt.order_by(t.c.version.desc()).limit(1)

    def max_version(self, family: str) -> Select[Any]:
        return select(func.coalesce(func.max(self.t.c.version), 0)).where(self.t.c.family == family)

    def insert(self, family: str, version: int, table: QTable, frozen: bool) -> Insert:
        return insert(self.t).values(
            family=family, version=version, data=table.to_dict(), frozen=frozen, created_at=self.clock()
        )

    def set_frozen(self, family: str, version: int, frozen: bool) -> Update:
        t = self.t
        return update(t).where(t.c.family == family, t.c.version == version).values(frozen=frozen)

    def delete(self, family: str) -> Delete:
        return delete(self.t).where(self.t.c.family == family)

    def families(self) -> Select[Any]:
        t = self.t
        return select(t.c.family, func.max(t.c.version), func.count()).group_by(t.c.family).order_by(t.c.family)

    @staticmethod
    def to_stored(row: Any) -> StoredTable | None:
        if row is None:
            return None
        return StoredTable(row.family, int(row.version), QTable.from_dict(row.data), bool(row.frozen), row.created_at)


class QTableRepository:
    """Versioned Q-tables per task family over a sync SQLAlchemy ``Session``."""

    def __init__(self, session: Session, model: Any = None, clock: Clock = _utc_now) -> None:
        self.session = session
        self._sql = _Statements(model, clock)

    def load_latest(self, family: str, version: int | None = None) -> StoredTable | None:
        """The newest version of ``family`` (or ``version``), None when nothing was saved."""
        return self._sql.to_stored(self.session.execute(self._sql.latest(family, version)).first())

    def save(self, family: str, table: QTable, *, frozen: bool = False) -> int:
        """Store ``table`` as the next version of ``family``; returns that version (1, 2, ...)."""
        version = int(self.session.execute(self._sql.max_version(family)).scalar_one()) + 1
        self.session.execute(self._sql.insert(family, version, table, frozen))
        self.session.flush()
        return version

    def freeze(self, family: str, frozen: bool = True) -> int | None:
        """Mark the newest version frozen (evaluation only) or not; returns its version."""
        latest = self.load_latest(family)
        if latest is None:
            return None
        self.session.execute(self._sql.set_frozen(family, latest.version, frozen))
        self.session.flush()
        return latest.version

    def reset(self, family: str) -> int:
        """Delete every version of ``family`` (the next run starts cold); returns rows deleted."""
        result = self.session.execute(self._sql.delete(family))
        self.session.flush()
        return int(getattr(result, "rowcount", 0) or 0)

    def export(self, family: str, version: int | None = None) -> dict[str, Any] | None:
        stored = self.load_latest(family, version)
        return stored.export() if stored else None

    def families(self) -> list[tuple[str, int, int]]:
        """(family, newest version, number of versions) for every stored family."""
        return [(r[0], int(r[1]), int(r[2])) for r in self.session.execute(self._sql.families()).all()]


class AsyncQTableRepository:
    """The same operations as :class:`QTableRepository` over an ``AsyncSession``."""

    def __init__(self, session: AsyncSession, model: Any = None, clock: Clock = _utc_now) -> None:
        self.session = session
        self._sql = _Statements(model, clock)

    async def load_latest(self, family: str, version: int | None = None) -> StoredTable | None:
        result = await self.session.execute(self._sql.latest(family, version))
        return self._sql.to_stored(result.first())

    async def save(self, family: str, table: QTable, *, frozen: bool = False) -> int:
        version = int((await self.session.execute(self._sql.max_version(family))).scalar_one()) + 1
        await self.session.execute(self._sql.insert(family, version, table, frozen))
        await self.session.flush()
        return version

    async def freeze(self, family: str, frozen: bool = True) -> int | None:
        latest = await self.load_latest(family)
        if latest is None:
            return None
        await self.session.execute(self._sql.set_frozen(family, latest.version, frozen))
        await self.session.flush()
        return latest.version

    async def reset(self, family: str) -> int:
        result = await self.session.execute(self._sql.delete(family))
        await self.session.flush()
        return int(getattr(result, "rowcount", 0) or 0)

    async def export(self, family: str, version: int | None = None) -> dict[str, Any] | None:
        stored = await self.load_latest(family, version)
        return stored.export() if stored else None

    async def families(self) -> list[tuple[str, int, int]]:
        rows = (await self.session.execute(self._sql.families())).all()
        return [(r[0], int(r[1]), int(r[2])) for r in rows]
