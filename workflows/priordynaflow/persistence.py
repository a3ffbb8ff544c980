"""Q-tables in the database: every saved version of a family's table is kept.

Thin adapter over the store's namespaced records (``orchestrator.store.records``, namespace
``priordynaflow.qtable``, key = family, value = ``{"table": ..., "frozen": ...}``). A version saved
after learned episodes carries, in the same transaction, one run-scoped record per episode
(namespace ``priordynaflow.learned``, key = the episode's graph task): a resumed episode finds it
and is not learned twice. The caller owns the session and its transaction: these methods execute
and flush, the caller commits.
:class:`QTableRepository` takes a sync ``Session``, :class:`AsyncQTableRepository` an
``AsyncSession``; both run the same statements.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from orchestrator.store import records
from workflows.priordynaflow.qtable import QTable

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

NAMESPACE = "priordynaflow.qtable"
LEARNED_NAMESPACE = "priordynaflow.learned"

EpisodeKey = tuple[str, str]
"""(run id, the episode's graph task): where one episode ends, the same when it is resumed."""


@dataclass(frozen=True)
class Learned:
    """What learning one episode left: the table's schedule right after it (its END record)."""

    epsilon: float
    num_learned_steps: int

    @classmethod
    def of(cls, table: QTable) -> Learned:
        return cls(table.epsilon, table.num_steps)


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


def _stored(family: str, row: Any) -> StoredTable | None:
    if row is None:
        return None
    return StoredTable(family, int(row.version), QTable.from_dict(row.data["table"]), bool(row.data["frozen"]),
                       row.created_at)


def _value(table: QTable, frozen: bool) -> dict[str, Any]:
    return {"table": table.to_dict(), "frozen": frozen}


def _marks(family: str, version: int, learned: Mapping[EpisodeKey, Learned]) -> list[Any]:
    return [records.insert_version(LEARNED_NAMESPACE, task, 1, {"family": family, "version": version, **asdict(mark)},
                                   run_id=run_id) for (run_id, task), mark in learned.items()]


def _learned(row: Any) -> Learned | None:
    return None if row is None else Learned(float(row.data["epsilon"]), int(row.data["num_learned_steps"]))


class QTableRepository:
    """Versioned Q-tables per task family over a sync SQLAlchemy ``Session``."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def load_latest(self, family: str, version: int | None = None) -> StoredTable | None:
        """The newest version of ``family`` (or ``version``), None when nothing was saved."""
        return _stored(family, self.session.execute(records.latest(NAMESPACE, family, version=version)).first())

    def save(self, family: str, table: QTable, *, frozen: bool = False,
             learned: Mapping[EpisodeKey, Learned] | None = None) -> int:
        """Store ``table`` as the next version of ``family`` and mark the episodes it ``learned``
        (since the version before); returns that version (1, 2, ...)."""
        version = int(self.session.execute(records.next_version(NAMESPACE, family)).scalar_one())
        self.session.execute(records.insert_version(NAMESPACE, family, version, _value(table, frozen)))
        for stmt in _marks(family, version, learned or {}):
            self.session.execute(stmt)
        self.session.flush()
        return version

    def learned(self, episode: EpisodeKey) -> Learned | None:
        """What the saved tables learned from ``episode`` (None: no saved version learned it)."""
        run_id, task = episode
        return _learned(self.session.execute(records.latest(LEARNED_NAMESPACE, task, run_id=run_id)).first())

    def freeze(self, family: str, frozen: bool = True) -> int | None:
        """Mark the newest version frozen (evaluation only) or not; returns its version."""
        latest = self.load_latest(family)
        if latest is None:
            return None
        self.session.execute(records.set_data(NAMESPACE, family, latest.version, _value(latest.table, frozen)))
        self.session.flush()
        return latest.version

    def reset(self, family: str) -> int:
        """Delete every version of ``family`` (the next run starts cold); returns rows deleted."""
        result = self.session.execute(records.delete_key(NAMESPACE, family))
        self.session.flush()
        return int(getattr(result, "rowcount", 0) or 0)

    def export(self, family: str, version: int | None = None) -> dict[str, Any] | None:
        stored = self.load_latest(family, version)
        return stored.export() if stored else None

    def families(self) -> list[tuple[str, int, int]]:
        """(family, newest version, number of versions) for every stored family."""
        return [(r[0], int(r[1]), int(r[2])) for r in self.session.execute(records.keys(NAMESPACE)).all()]


class AsyncQTableRepository:
    """The same operations as :class:`QTableRepository` over an ``AsyncSession``."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def load_latest(self, family: str, version: int | None = None) -> StoredTable | None:
        result = await self.session.execute(records.latest(NAMESPACE, family, version=version))
        return _stored(family, result.first())

    async def save(self, family: str, table: QTable, *, frozen: bool = False,
                   learned: Mapping[EpisodeKey, Learned] | None = None) -> int:
        version = int((await self.session.execute(records.next_version(NAMESPACE, family))).scalar_one())
        await self.session.execute(records.insert_version(NAMESPACE, family, version, _value(table, frozen)))
        for stmt in _marks(family, version, learned or {}):
            await self.session.execute(stmt)
        await self.session.flush()
        return version

    async def learned(self, episode: EpisodeKey) -> Learned | None:
        run_id, task = episode
        return _learned((await self.session.execute(records.latest(LEARNED_NAMESPACE, task, run_id=run_id))).first())

    async def freeze(self, family: str, frozen: bool = True) -> int | None:
        latest = await self.load_latest(family)
        if latest is None:
            return None
        await self.session.execute(records.set_data(NAMESPACE, family, latest.version, _value(latest.table, frozen)))
        await self.session.flush()
        return latest.version

    async def reset(self, family: str) -> int:
        result = await self.session.execute(records.delete_key(NAMESPACE, family))
        await self.session.flush()
        return int(getattr(result, "rowcount", 0) or 0)

    async def export(self, family: str, version: int | None = None) -> dict[str, Any] | None:
        stored = await self.load_latest(family, version)
        return stored.export() if stored else None

    async def families(self) -> list[tuple[str, int, int]]:
        rows = (await self.session.execute(records.keys(NAMESPACE))).all()
        return [(r[0], int(r[1]), int(r[2])) for r in rows]
