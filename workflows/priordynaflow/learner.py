"""The live Q-table of each task family, shared by the runs of one process.

A :class:`Learner` owns one family's table, its config and the injected random generator;
episodes that finish in training mode update it. A :class:`LearnerPool` hands out learners by
family, loading the newest saved version from a :class:`TableStore` (the database) on first use
and saving a new version every ``save_every`` learned episodes and on :meth:`LearnerPool.flush`.

Each episode is learned at most once, also across a crash: a learned episode's key (run id and
graph task) is saved with the first version that includes it, in the same transaction, and an
episode that ends again (its run resumed after the table was saved, before the END step's
checkpoint) finds it (:meth:`LearnerPool.learned`) and is not learned again. Episodes learned
but not yet saved (``save_every`` above 1) are lost with their process and learned once on resume.
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from workflows.priordynaflow.config import RouterConfig
from workflows.priordynaflow.persistence import (
    AsyncQTableRepository,
    EpisodeKey,
    Learned,
    QTableRepository,
    StoredTable,
)
from workflows.priordynaflow.qtable import QTable, Transition, is_learning, learn_episode

_NUM_SAVE_ATTEMPTS = 3
NUM_REMEMBERED = 4096
"""Learned episodes a pool without a store remembers (its tables live as long as its process)."""


class TableStore(Protocol):
    """Where learners load and save their tables, and the episodes each saved version learned."""

    async def load(self, family: str) -> StoredTable | None: ...

    async def save(self, family: str, table: QTable, learned: Mapping[EpisodeKey, Learned]) -> int: ...

    async def learned(self, episode: EpisodeKey) -> Learned | None: ...


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

    async def save(self, family: str, table: QTable, learned: Mapping[EpisodeKey, Learned]) -> int:
        # Another process may take the same next version first (unique family+version): retry.
        from sqlalchemy.exc import IntegrityError

        for attempt in range(_NUM_SAVE_ATTEMPTS):
            try:
                if self._is_async:
                    async with self._factory() as session, session.begin():
                        return await AsyncQTableRepository(session).save(family, table, learned=learned)
                with self._factory() as session, session.begin():
                    return QTableRepository(session).save(family, table, learned=learned)
            except IntegrityError:
                if attempt == _NUM_SAVE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def learned(self, episode: EpisodeKey) -> Learned | None:
        if self._is_async:
            async with self._factory() as session:
                return await AsyncQTableRepository(session).learned(episode)
        with self._factory() as session:
            return QTableRepository(session).learned(episode)


@dataclass
class Learner:
    """One family's table while runs use it.

    frozen: the stored version was frozen for evaluation (no run updates it).
    version: the stored version this table continues from (None: cold start).
    num_unsaved: learned episodes not yet saved.
    unsaved: those of them learned with a key, and what each left (saved with the next version).
    max_deltas: per learned episode, the largest |change| of a Q value (convergence trace).
    """

    family: str
    table: QTable
    config: RouterConfig
    rng: random.Random
    frozen: bool = False
    version: int | None = None
    num_unsaved: int = 0
    unsaved: dict[EpisodeKey, Learned] = field(default_factory=dict)
    max_deltas: list[float] = field(default_factory=list)

    def run_config(self, override: RouterConfig | None = None, *, evaluate: bool = False) -> RouterConfig:
        """The config one run routes with: ``override`` or the learner's, frozen for evaluation
        runs and for frozen tables."""
        config = override or self.config
        return replace(config, frozen=True) if evaluate or self.frozen else config

    def learn(
        self, transitions: Sequence[Transition], path: Sequence[str], success: bool, config: RouterConfig,
        episode: EpisodeKey | None = None,
    ) -> bool:
        """Update the table from one finished episode; False when ``config`` does not learn
        (frozen, or past ``max_train_steps``). ``episode``: its key, saved with the next version
        (:meth:`LearnerPool.learned`)."""
        if not is_learning(self.table, config):
            return False
        before = self.table
        self.table = learn_episode(before, transitions, path, success, config)
        self.max_deltas.append(
            max((abs(self.table.value(t.state, t.action) - before.value(t.state, t.action)) for t in transitions),
                default=0.0)
        )
        self.num_unsaved += 1
        if episode is not None:
            self.unsaved[episode] = Learned.of(self.table)
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
        self._remembered: OrderedDict[EpisodeKey, Learned] = OrderedDict()

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

    async def learned(self, learner: Learner, episode: EpisodeKey) -> Learned | None:
        """What ``learner``'s table learned from ``episode`` if it already did (in this process,
        or in a saved version), else None: an episode ends again when its run is resumed."""
        mark = learner.unsaved.get(episode) or self._remembered.get(episode)
        if mark is None and self.store is not None:
            mark = await self.store.learned(episode)
        return mark

    async def after_episode(self, learner: Learner) -> None:
        if self.store is None:  # nothing to save to: remember the episodes here
            self._remembered.update(learner.unsaved)
            learner.unsaved.clear()
            while len(self._remembered) > NUM_REMEMBERED:
                self._remembered.popitem(last=False)
        elif learner.num_unsaved >= self.save_every:
            await self._save(learner)

    async def flush(self) -> None:
        """Save every learner with unsaved episodes."""
        for learner in list(self._learners.values()):
            if self.store is not None and learner.num_unsaved:
                await self._save(learner)

    async def _save(self, learner: Learner) -> None:
        assert self.store is not None
        table, learned, num = learner.table, learner.unsaved, learner.num_unsaved
        learner.num_unsaved, learner.unsaved = 0, {}
        try:
            learner.version = await self.store.save(learner.family, table, learned)
        except BaseException:  # still unsaved: the next save takes them
            learner.num_unsaved, learner.unsaved = learner.num_unsaved + num, {**learned, **learner.unsaved}
            raise


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
