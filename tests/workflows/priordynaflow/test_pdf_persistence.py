"""Versioned Q-tables in the store's ``qtables`` table (sync and async sessions), and learners
that continue from the newest saved version."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from orchestrator.store.models import Base
from workflows.priordynaflow.config import END, RouterConfig
from workflows.priordynaflow.learner import LearnerPool, SessionTableStore
from workflows.priordynaflow.persistence import AsyncQTableRepository, QTableRepository
from workflows.priordynaflow.qtable import QTable, Transition


def trained(value: float) -> QTable:
    table = QTable.empty(("solver", "inspector"))
    table.set_value("solver", "inspector", value)
    table.num_steps = 7
    return table


@pytest.fixture
def sync_sessions(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'q.db'}")
    Base.metadata.create_all(engine)
    yield sessionmaker(engine)
    engine.dispose()


def test_save_load_versions_freeze_export_reset(sync_sessions):
    with sync_sessions() as session:
        repo = QTableRepository(session)
        assert repo.load_latest("math") is None
        assert repo.save("math", trained(1.0)) == 1
        assert repo.save("math", trained(2.0)) == 2
        assert repo.save("code", trained(9.0)) == 1
        session.commit()

    with sync_sessions() as session:
        repo = QTableRepository(session)
        latest = repo.load_latest("math")
        assert latest is not None and latest.version == 2 and not latest.frozen
        assert latest.table.value("solver", "inspector") == 2.0 and latest.table.num_steps == 7
        assert repo.load_latest("math", version=1).table.value("solver", "inspector") == 1.0
        assert repo.families() == [("code", 1, 1), ("math", 2, 2)]

        assert repo.freeze("math") == 2
        exported = repo.export("math")
        assert exported["frozen"] is True and exported["version"] == 2
        assert exported["data"]["v"] == 1 and exported["data"]["q"]["solver"]["inspector"] == 2.0
        assert exported["created_at"] is not None

        assert repo.reset("math") == 2
        assert repo.load_latest("math") is None
        assert repo.load_latest("code") is not None  # other families untouched
        session.commit()


def test_async_repository_against_the_store_model(tmp_path):
    async def go() -> None:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessions = async_sessionmaker(engine)
        async with sessions() as session, session.begin():
            repo = AsyncQTableRepository(session)
            assert await repo.save("math", trained(3.0)) == 1
            assert await repo.save("math", trained(4.0)) == 2
        async with sessions() as session, session.begin():
            repo = AsyncQTableRepository(session)
            latest = await repo.load_latest("math")
            assert latest.version == 2 and latest.table.value("solver", "inspector") == 4.0
            assert await repo.freeze("math") == 2
            assert (await repo.load_latest("math")).frozen
            assert await repo.reset("math") == 2
            assert await repo.export("math") is None
        await engine.dispose()

    asyncio.run(go())


def test_learner_pool_continues_from_the_saved_table_and_saves_new_versions(sync_sessions):
    cfg = RouterConfig(num_explore_steps=0)
    store = SessionTableStore(sync_sessions)

    async def go() -> None:
        first = LearnerPool(store, config=cfg, save_every=1)
        learner = await first.get("math", ("solver", "inspector"))
        assert learner.version is None and learner.table.num_steps == 0  # cold start
        assert learner.learn([Transition("solver", END, 100.0)], ["solver"], True, cfg)
        await first.after_episode(learner)
        assert learner.version == 1 and learner.num_unsaved == 0

        # A new process: the table and its schedule come back from the database.
        second = LearnerPool(store, config=cfg)
        again = await second.get("math", ("solver", "inspector", "analyst"))
        assert again.version == 1
        assert again.table.value("solver", END) == learner.table.value("solver", END) > 0
        assert again.table.num_steps == 1 and again.table.num_episodes == 1
        assert "analyst" in again.table.agents  # newly registered agent added

    asyncio.run(go())


def test_frozen_table_is_not_updated(sync_sessions):
    with sync_sessions() as session:
        QTableRepository(session).save("math", trained(5.0), frozen=True)
        session.commit()

    async def go() -> None:
        pool = LearnerPool(SessionTableStore(sync_sessions))
        learner = await pool.get("math", ("solver", "inspector"))
        config = learner.run_config()
        assert learner.frozen and config.frozen
        assert not learner.learn([Transition("solver", "inspector", -50.0)], ["solver"], False, config)
        assert learner.table.value("solver", "inspector") == 5.0

    asyncio.run(go())


def test_an_episode_is_learned_once_across_processes(sync_sessions):
    # The learned episode's key is saved with the version that includes it: a resumed run that ends
    # the same episode again (another process, the table already saved) finds it and what it left.
    cfg = RouterConfig(num_explore_steps=0)
    store = SessionTableStore(sync_sessions)
    episode, other = ("run1", "task-a"), ("run1", "task-b")

    async def go() -> None:
        first = LearnerPool(store, config=cfg, save_every=1)
        learner = await first.get("math", ("solver", "inspector"))
        assert await first.learned(learner, episode) is None
        assert learner.learn([Transition("solver", END, 100.0)], ["solver"], True, cfg, episode)
        mark = await first.learned(learner, episode)  # unsaved: the learner's own
        assert mark is not None and mark.num_learned_steps == 1 and mark.epsilon == learner.table.epsilon
        await first.after_episode(learner)
        assert learner.unsaved == {} and learner.version == 1

        second = LearnerPool(store, config=cfg)
        again = await second.get("math", ("solver", "inspector"))
        assert await second.learned(again, episode) == mark
        assert await second.learned(again, other) is None
        assert await second.learned(again, ("run2", "task-a")) is None

    asyncio.run(go())


def test_a_failed_save_keeps_the_episodes_for_the_next(sync_sessions):
    cfg = RouterConfig(num_explore_steps=0)

    class Failing(SessionTableStore):
        fail = True

        async def save(self, family, table, learned):
            if self.fail:
                raise OSError("disk full")
            return await super().save(family, table, learned)

    store = Failing(sync_sessions)

    async def go() -> None:
        pool = LearnerPool(store, config=cfg, save_every=1)
        learner = await pool.get("math", ("solver", "inspector"))
        learner.learn([Transition("solver", END, 100.0)], ["solver"], True, cfg, ("run1", "t"))
        with pytest.raises(OSError):
            await pool.after_episode(learner)
        assert learner.num_unsaved == 1 and ("run1", "t") in learner.unsaved
        store.fail = False
        await pool.after_episode(learner)
        assert learner.num_unsaved == 0 and learner.unsaved == {}
        assert await LearnerPool(store, config=cfg).learned(learner, ("run1", "t")) is not None

    asyncio.run(go())


def test_a_pool_without_a_store_remembers_learned_episodes():
    cfg = RouterConfig(num_explore_steps=0)

    async def go() -> None:
        pool = LearnerPool(config=cfg)
        learner = await pool.get("math", ("solver", "inspector"))
        learner.learn([Transition("solver", END, 100.0)], ["solver"], True, cfg, ("run1", "t"))
        await pool.after_episode(learner)
        assert learner.unsaved == {}
        mark = await pool.learned(learner, ("run1", "t"))
        assert mark is not None and mark.num_learned_steps == 1

    asyncio.run(go())
