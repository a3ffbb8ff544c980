"""The live Q-table of each task family, shared by the runs of one process.

A :class:`Learner` owns one family's table, its config and the injected random generator;
episodes that finish in training mode update it. A :class:`LearnerPool` hands out learners by
family, loading the newest saved version from a :class:`TableStore` (the database) on first use
and saving a new version every ``save_every`` learned episodes and on :meth:`LearnerPool.flush`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from workflows.priordynaflow.config import RouterConfig
from workflows.priordynaflow.persistence import AsyncQTableRepository, QTableRepository, StoredTable
from workflows.priordynaflow.qtable import QTable, Transition, is_learning, learn_episode

_NUM_SAVE_ATTEMPTS = 3


class TableStore(Protocol):
    """Where learners load and save their tables."""

    async def load(self, family: str) -> StoredTable | None: ...

    async def save(self, family: str, table: QTable) -> int: ...


class SessionTableStore:
    """A :class:`TableStore` over a SQLAlchemy ``sessionmaker`` or ``async_sessionmaker``; each
    operation runs in its own committed transaction."""

    def __init__(self, session_factory: Any) -> None:
        from sqlalchemy.ext.asyncio import async_sessionmaker

        self._factory = session_factory
        self._is_async = isinstance(session_factory, async_sessionmaker)

    async def load(self, family: str) -> StoredTable | None:
        if self._is_async:
            async with self._factory() as session:
                return await AsyncQTableRepository(session).load_latest(family)
        with self._factory() as session:
            return QTableRepository(session).load_latest(family)

    async def save(self, family: str, table: QTable) -> int:
        # Another process may take the same next version first (unique family+version): retry.
        from sqlalchemy.exc import IntegrityError

        for attempt in range(_NUM_SAVE_ATTEMPTS):
            try:
                if self._is_async:
                    async with self._factory() as session, session.begin():
                        return await AsyncQTableRepository(session).save(family, table)
                with self._factory() as session, session.begin():
                    return QTableRepository(session).save(family, table)
            except IntegrityError:
                if attempt == _NUM_SAVE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")


@dataclass
class Learner:
    """One family's table while runs use it.

    frozen: the stored version was frozen for evaluation (no run updates it).
    version: the stored version this table continues from (None: cold start).
    num_unsaved: learned episodes not yet saved.
    max_deltas: per learned episode, the largest |change| of a Q value (convergence trace).
    """

    family: str
    table: QTable
    config: RouterConfig
    rng: random.Random
    frozen: bool = False
    version: int | None = None
    num_unsaved: int = 0
    max_deltas: list[float] = field(default_factory=list)

    def run_config(self, override: RouterConfig | None = None, *, evaluate: bool = False) -> RouterConfig:
        """The config one run routes with: ``override`` or the learner's, frozen for evaluation
        runs and for frozen tables."""
        config = override or self.config
        return replace(config, frozen=True) if evaluate or self.frozen else config

    def learn(
        self, transitions: Sequence[Transition], path: Sequence[str], success: bool, config: RouterConfig
    ) -> bool:
        """Update the table from one finished episode; False when ``config`` does not learn
        (frozen, or past ``max_train_steps``)."""
        if not is_learning(self.table, config):
            return False
        before = self.table
        self.table = learn_episode(before, transitions, path, success, config)
        self.max_deltas.append(
            max((abs(self.table.value(t.state, t.action) - before.value(t.state, t.action)) for t in transitions),
                default=0.0)
        )
        self.num_unsaved += 1
        return True


class LearnerPool:
    """Learners by family, backed by an optional :class:`TableStore`.

    config: router config of learners created here.
    seed: seeds each learner's random generator (with the family name, so families differ).
    save_every: save a new version after this many learned episodes (and on ``flush``).
    """

    def __init__(
        self,
        store: TableStore | None = None,
        *,
        config: RouterConfig | None = None,
        seed: int = 0,
        save_every: int = 10,
    ) -> None:
        self.store = store
        self.config = config or RouterConfig()
        self.seed = seed
        self.save_every = save_every
        self._learners: dict[str, Learner] = {}
        self._lock = asyncio.Lock()

    async def get(self, family: str, agents: Iterable[str], config: RouterConfig | None = None) -> Learner:
        """The learner of ``family`` (created from the newest stored version, or cold)."""
        agents = tuple(agents)
        async with self._lock:
            learner = self._learners.get(family)
            if learner is None:
                cfg = config or self.config
                stored = await self.store.load(family) if self.store else None
                table = stored.table.with_agents(agents) if stored else QTable.empty(agents, cfg)
                learner = Learner(
                    family=family,
                    table=table,
                    config=cfg,
                    rng=random.Random(f"{self.seed}:{family}"),
                    frozen=bool(stored and stored.frozen),
                    version=stored.version if stored else None,
                )
                self._learners[family] = learner
            elif any(a not in learner.table.agents for a in agents):
                learner.table = learner.table.with_agents(agents)
            return learner

    def put(self, learner: Learner) -> None:
        """Install ``learner`` (e.g. a table from a file) for its family."""
        self._learners[learner.family] = learner

    async def after_episode(self, learner: Learner) -> None:
        if self.store is not None and learner.num_unsaved >= self.save_every:
            await self._save(learner)

    async def flush(self) -> None:
        """Save every learner with unsaved episodes."""
        for learner in list(self._learners.values()):
            if self.store is not None and learner.num_unsaved:
                await self._save(learner)

    async def _save(self, learner: Learner) -> None:
        assert self.store is not None
        learner.num_unsaved = 0
        learner.version = await self.store.save(learner.family, learner.table)


_default_pool = LearnerPool()
_store_pools: dict[str, LearnerPool] = {}


def default_pool() -> LearnerPool:
    """The pool runs use unless ``ctx.config["qtable_pool"]`` names another (in memory until
    :func:`set_default_pool` installs one backed by the database)."""
    return _default_pool


def set_default_pool(pool: LearnerPool) -> None:
    global _default_pool
    _default_pool = pool


def pool_for_store(store: Any) -> LearnerPool:
    """The pool of runs on the runtime's ``orchestrator.store.db.Store``: tables load from and
    save to its records (namespace ``priordynaflow.qtable``), a new version after every learned
    episode."""
    pool = _store_pools.get(store.db_url)
    if pool is None:
        pool = LearnerPool(SessionTableStore(store.sessions), save_every=1)
        _store_pools[store.db_url] = pool
    return pool
