"""LangGraph checkpoint savers on the store's database (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

from orchestrator.store.db import Store, plain_postgres_dsn


def _serialised_saver(base: type, lock: asyncio.Lock) -> type:
    """``base`` (LangGraph's AsyncSqliteSaver) with its writes queued on the store's write lock."""

    class SerialisedSaver(base):  # type: ignore[misc,valid-type]
        async def aput(self, *args: Any, **kwargs: Any) -> Any:
            async with lock:
                return await super().aput(*args, **kwargs)

        async def aput_writes(self, *args: Any, **kwargs: Any) -> Any:
            async with lock:
                return await super().aput_writes(*args, **kwargs)

    return SerialisedSaver


async def open_checkpointer(store: Store, stack: AsyncExitStack) -> Any:
    """A set-up saver on ``store``'s database; its connections close with ``stack``.

    SQLite: LangGraph's AsyncSqliteSaver on its own connection, its writes queued behind the
    store's write lock (one writer per file). PostgreSQL: AsyncPostgresSaver on a pool.
    """
    if store.is_sqlite:
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        conn = await aiosqlite.connect(store.sync_url.removeprefix("sqlite:///"))
        stack.push_async_callback(conn.close)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA busy_timeout=60000")
        assert store.write_lock is not None
        saver = _serialised_saver(AsyncSqliteSaver, store.write_lock)(conn)
    else:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            plain_postgres_dsn(store.db_url), min_size=1, max_size=20, open=False,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        )
        await pool.open()
        stack.push_async_callback(pool.close)
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
    await saver.setup()
    return saver
