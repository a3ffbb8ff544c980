"""The store: an async SQLAlchemy engine on SQLite (default) or PostgreSQL, and migrations."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from orchestrator.errors import ConfigError, StorageError

_MIGRATIONS = Path(__file__).parent / "migrations"

SCHEMA_LOCK_ID = 0x51F1_0001
"""PostgreSQL advisory lock held while one process creates or migrates tables (QuotaFlow's own
and the checkpointer's): two runtimes starting on a fresh database must not race on CREATE TABLE."""

T = TypeVar("T")


def _driver_urls(db_url: str) -> tuple[str, str]:
    """(async URL, sync URL) for SQLAlchemy from a user-facing URL."""
    try:
        url = make_url(db_url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a terse message
        raise ConfigError(f"database URL {db_url!r} is not valid: {exc}") from exc
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        return (
            url.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False),
            url.set(drivername="sqlite").render_as_string(hide_password=False),
        )
    if backend == "postgresql":
        u = url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        return u, u
    raise ConfigError(f"database URL {db_url!r}: expected sqlite:///PATH or postgresql://...")


def plain_postgres_dsn(db_url: str) -> str:
    """libpq connection string (what psycopg and LangGraph's Postgres saver take)."""
    return make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers proceed beside the writer; NORMAL sync is durable across process crashes
    # (only an OS crash can lose the last transactions). busy_timeout makes writers queue.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Store:
    """Engine, sessions and schema management for one database URL."""

    def __init__(self, db_url: str, *, pool_size: int = 20) -> None:
        self.db_url = db_url
        self.async_url, self.sync_url = _driver_urls(db_url)
        self.is_sqlite = self.async_url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if not self.is_sqlite:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_timeout=120, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(self.async_url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            # Writers must take SQLite's write lock up front: a deferred transaction that reads
            # and then writes can fail with SQLITE_BUSY without waiting (lock-upgrade deadlock).
            event.listen(self.engine.sync_engine, "connect", _no_autobegin)
            event.listen(self.engine.sync_engine, "begin", _begin_immediate)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # The hot path (ledger reservations, call records) runs each transaction as one plain
        # function on a worker thread: one thread hand-off per transaction instead of several per
        # statement through the async driver (measured: ~9 ms -> see bench/NOTEBOOK.md).
        if self.is_sqlite:
            self.sync_engine = create_engine(self.sync_url, **kwargs)
        else:
            # PostgreSQL: a connection used within the last second is not pinged (a SELECT 1 round
            # trip on every transaction of the hot path); one idle longer is (see _ping_idle_connections).
            self.sync_engine = create_engine(self.sync_url, **{**kwargs, "pool_pre_ping": False})
            _ping_idle_connections(self.sync_engine)
        if self.is_sqlite:
            event.listen(self.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.sync_engine, "connect", _no_autobegin)
            event.listen(self.sync_engine, "begin", _begin_immediate)
        self._upgraded = False
        self._identity: tuple[int, int] | None = None
        self._lock = asyncio.Lock()
        # SQLite has one writer at a time. Queueing this process's writers here (the store's hot
        # path and the checkpointer) avoids SQLite's busy handler, which sleeps in 1-100 ms steps.
        self.write_lock: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None
        # Group commit (SQLite): the transactions queued while one commits run next as one
        # transaction on the one writer thread (see ``transact``).
        self._pending: list[tuple[Callable[[Connection], Any], asyncio.Future[Any]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="quotaflow-sqlite-writer") if self.is_sqlite else None
        self.batches = 0
        """Group commits made (SQLite), for the benchmark: transactions per commit = calls / batches."""

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on error. Raises
        StorageError when the SQLite file this store opened is gone (a new connection would
        open an empty database in its place)."""
        self.check_file()
        async with self.sessions() as s, s.begin():
            yield s

    async def transact(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(connection)`` (Core statements) in one transaction on a worker thread:
        committed on success, rolled back on error (the error is re-raised here).

        On SQLite, transactions of concurrent callers are committed in groups: while one group
        commits, the next queues, and then runs as one transaction on the writer thread (one
        thread hand-off, one lock and one commit for all of them, where each used to take its own).
        Each caller's result is handed back only after its group committed. When any function of
        a group raises (a refused reservation), or the commit fails, the group is rolled back and
        each function runs again alone in its own transaction, so one caller's failure is never
        another's: every ``fn`` must therefore be safe to run again after a rollback (all of the
        store's and the ledger's are: they only execute statements). A caller cancelled before
        its group started is dropped, as a caller cancelled while waiting for the lock was."""
        if self.write_lock is None:

            def work() -> T:
                with self.sync_engine.begin() as conn:
                    return fn(conn)

            return await asyncio.to_thread(work)
        loop = asyncio.get_running_loop()
        if self._committer is not None and self._committer.get_loop() is not loop:  # a store used by a new loop
            self._committer, self._pending = None, [p for p in self._pending if p[1].get_loop() is loop]
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((fn, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_groups())
        return await future

    async def autocommit(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(connection)`` outside a transaction, on a worker thread: each statement
        commits on its own (PostgreSQL: one round trip for a one-statement ``fn``, where a
        transaction adds BEGIN and COMMIT). SQLite: as :meth:`transact`."""
        if self.is_sqlite:
            return await self.transact(fn)

        def work() -> T:
            with self.sync_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                return fn(conn)

        return await asyncio.to_thread(work)

    async def _commit_groups(self) -> None:
        assert self.write_lock is not None
        loop = asyncio.get_running_loop()
        while self._pending:
            group = [(fn, fut) for fn, fut in self._pending if not fut.done()]
            self._pending = []
            if not group:
                continue
            try:
                async with self.write_lock:
                    outcomes = await loop.run_in_executor(self._writer, self._run_group, [fn for fn, _ in group])
            except BaseException as exc:  # the executor is gone (shut down): every caller hears it
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
                if not isinstance(exc, Exception):
                    raise
                continue
            self.batches += 1
            for (_, fut), (ok, value) in zip(group, outcomes, strict=True):
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

    def _run_group(self, fns: list[Callable[[Connection], Any]]) -> list[tuple[bool, Any]]:
        """On the writer thread: every function in one transaction, else each alone."""
        if len(fns) > 1:
            try:
                with self.sync_engine.begin() as conn:
                    return [(True, fn(conn)) for fn in fns]
            except Exception:
                pass  # rolled back: each runs alone below, and only its own failure reaches it
        outcomes: list[tuple[bool, Any]] = []
        for fn in fns:
            try:
                with self.sync_engine.begin() as conn:
                    value = fn(conn)
            except Exception as exc:  # raised by fn, or by the commit
                outcomes.append((False, exc))
            else:
                outcomes.append((True, value))
        return outcomes

    def upgrade(self) -> str:
        """Bring the schema to the newest migration (``quotaflow db upgrade``). Returns the head."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.sync_url.replace("%", "%%"))
        if self.is_sqlite:  # SQLite's write lock already serialises migrating processes
            command.upgrade(cfg, "head")
        else:
            eng = create_engine(self.sync_url)
            try:
                # Processes starting on a fresh database take turns. The lock is polled from an idle
                # autocommit session: a session blocked inside pg_advisory_lock() would stall the
                # other process's CREATE INDEX CONCURRENTLY (LangGraph's), which waits for it.
                with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    while not conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({SCHEMA_LOCK_ID})").scalar():
                        time.sleep(0.05)
                    try:
                        command.upgrade(cfg, "head")
                    finally:
                        conn.exec_driver_sql(f"SELECT pg_advisory_unlock({SCHEMA_LOCK_ID})")
            finally:
                eng.dispose()
        return self.current_revision() or ""

    def current_revision(self) -> str | None:
        eng = create_engine(self.sync_url)
        try:
            with eng.connect() as conn:
                if not inspect(conn).has_table("alembic_version"):
                    return None
                return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        finally:
            eng.dispose()

    async def ensure_schema(self) -> None:
        """Run pending migrations once per process (runs work on a fresh database). A database
        that cannot be opened or written raises StorageError."""
        if self._upgraded:
            return
        async with self._lock:
            if not self._upgraded:
                try:
                    await asyncio.to_thread(self.upgrade)
                except Exception as exc:
                    raise storage_error(exc, self.db_url) or exc from None
                self._identity = self._file_identity()
                self._upgraded = True

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file (None for PostgreSQL and in-memory databases)."""
        if not self.is_sqlite:
            return None
        database = make_url(self.sync_url).database
        return Path(database) if database and database != ":memory:" else None

    def _file_identity(self) -> tuple[int, int] | None:
        path = self.sqlite_path
        if path is None:
            return None
        stat = path.stat()
        return stat.st_dev, stat.st_ino

    def check_file(self) -> None:
        """Raise StorageError when the SQLite file this store opened was deleted or replaced
        (its connections would go on writing to a file no one can read again)."""
        if self._identity is None:
            return
        try:
            current = self._file_identity()
        except OSError:
            current = None
        if current != self._identity:
            raise StorageError(f"database file {self.sqlite_path} was deleted or replaced while in use; "
                               "restore it (or point QUOTAFLOW_DB_URL at it) and resume the run")

    async def aclose(self) -> None:
        if self._committer is not None and not self._committer.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._committer)  # the groups already queued commit first
        await self.engine.dispose()
        self.sync_engine.dispose()


PING_AFTER_IDLE_S = 1.0
"""A pooled PostgreSQL connection of the store's hot path idle longer than this is pinged before use."""


def _ping_idle_connections(engine: Engine) -> None:
    """SQLAlchemy's pessimistic disconnect handling (``pool_pre_ping``), for connections idle more
    than :data:`PING_AFTER_IDLE_S`: a dead one (server restarted, connection dropped while idle)
    is replaced by a fresh one before the transaction starts. A connection handed back less than
    that ago is used at once: a turn makes two transactions in a few milliseconds, and the ping
    was one more round trip each time. A connection that dies within that second fails its
    transaction, as one that died just after its ping did before."""

    def stamp(_dbapi_conn: Any, record: Any) -> None:
        record.info["qf_idle_since"] = time.monotonic()

    def ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("qf_idle_since", 0.0) <= PING_AFTER_IDLE_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError(f"pinging an idle connection failed: {exc}") from exc
        if not alive:
            raise DisconnectionError("an idle connection did not answer a ping")

    event.listen(engine, "connect", stamp)
    event.listen(engine, "checkin", stamp)
    event.listen(engine, "checkout", ping_if_idle)


def _no_autobegin(dbapi_conn: Any, _record: Any) -> None:
    # aiosqlite's adapter exposes the sqlite3 connection's isolation_level; None hands
    # transaction control to SQLAlchemy's "begin" event below.
    dbapi_conn.isolation_level = None


def _begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EIO, errno.EACCES, errno.EDQUOT})


def storage_error(exc: BaseException, db_url: str) -> StorageError | None:
    """``exc`` as a StorageError when it says the database cannot be used (driver errors of
    SQLite and PostgreSQL about the file or the server, a full or read-only disk), else None.
    Constraint violations and programming errors are not storage faults."""
    if isinstance(exc, StorageError):
        return exc
    import sqlite3

    from sqlalchemy.exc import DBAPIError, OperationalError

    orig = getattr(exc, "orig", None) or exc
    fault = (isinstance(exc, OperationalError) or isinstance(orig, sqlite3.OperationalError)
             # sqlite3.DatabaseError itself (not a subclass such as IntegrityError): "file is
             # not a database", "database disk image is malformed"
             or type(orig) is sqlite3.DatabaseError
             or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
             or (isinstance(orig, OSError) and orig.errno in _STORAGE_ERRNOS))
    if not fault:
        try:
            import psycopg
        except ImportError:
            return None
        if not isinstance(orig, psycopg.OperationalError):
            return None
    detail = str(orig).strip().splitlines()[0][:300] if str(orig).strip() else type(orig).__name__
    where = make_url(db_url).render_as_string(hide_password=True)
    return StorageError(f"database {where} cannot be used: {detail}; fix the storage and try again "
                        "(an interrupted run continues with quotaflow resume)")
