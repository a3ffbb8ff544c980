"""The store's hot-path engine on PostgreSQL pings only connections idle for a while
(``orchestrator.store.db.PING_AFTER_IDLE_S``): one the server dropped while idle is replaced
before the next transaction, and a connection in steady use is not pinged."""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

import psycopg
import pytest

from orchestrator.store import db
from orchestrator.store.db import Store, plain_postgres_dsn
from tests import pg

pytestmark = pytest.mark.postgres


_names = itertools.count()


@pytest.fixture
def pg_url(pg_server: pg.PgServer) -> str:
    """A fresh database on the suite's PostgreSQL server (this test has no SQLite case)."""
    return pg_server.create_db(f"qf_idle_ping_{os.getpid()}_{next(_names)}")


def _select_one(conn) -> int:  # type: ignore[no-untyped-def]
    return int(conn.exec_driver_sql("SELECT 1").scalar_one())


def _backend_pid(conn) -> int:  # type: ignore[no-untyped-def]
    return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def test_a_connection_dropped_while_idle_is_replaced(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        store = Store(pg_url)
        try:
            pid = await store.transact(_backend_pid)
            with psycopg.connect(plain_postgres_dsn(pg_url), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)
            await asyncio.sleep(0.05)
            assert await store.transact(_backend_pid) != pid
        finally:
            await store.aclose()

    asyncio.run(main())


def test_a_connection_in_steady_use_is_not_pinged(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        store = Store(pg_url)
        pings: list[Any] = []
        dialect = store.sync_engine.dialect
        do_ping = dialect.do_ping

        def counted_ping(conn: Any) -> bool:
            pings.append(conn)
            return bool(do_ping(conn))

        monkeypatch.setattr(dialect, "do_ping", counted_ping)
        try:
            for _ in range(5):
                assert await store.transact(_select_one) == 1
            assert pings == []
            monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)
            await asyncio.sleep(0.01)
            assert await store.transact(_select_one) == 1
            assert len(pings) == 1
        finally:
            await store.aclose()

    asyncio.run(main())
