"""LangGraph checkpoint savers on the store's database (SQLite or PostgreSQL).

A checkpoint gives back exactly the text it was given. LangGraph's msgpack turns a lone surrogate
into ``"?"``, and its PostgreSQL saver keeps string channels inline in a ``jsonb`` column, which
refuses U+0000 and lone surrogates. So :class:`TextSafeSerializer` stores a value that holds a lone
surrogate with all its strings escaped (:mod:`orchestrator.store.safe_text`), under the type
``escaped+<LangGraph's type>``, and unescapes it on load; other values (U+0000 is fine in msgpack)
are stored as LangGraph stores them. The PostgreSQL saver moves strings that ``jsonb`` refuses from
the inline column to the blobs table, through that serializer.

Both savers write a task's writes with the next checkpoint, not on their own (one database
round trip per graph step where LangGraph makes two): :class:`DeferredWrites` keeps them until
the checkpoint that applies them is put, or until :meth:`DeferredWrites.aflush` (the runtime calls it when a
graph stops, by an error or an interrupt). A process that dies in between loses the writes of the
step that was ending, which is the state a process killed inside the step's last task leaves: the
tasks run again on resume and the runtime's journal gives them the LLM replies and tool results
they had, charged once.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from typing import Any

import ormsgpack
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from orchestrator.store.db import SCHEMA_LOCK_ID, Store, plain_postgres_dsn
from orchestrator.store.safe_text import escape, has_unstorable, map_strings, unescape

__all__ = ["ESCAPED_TYPE_PREFIX", "DeferredWrites", "TextSafeSerializer", "open_checkpointer"]

ESCAPED_TYPE_PREFIX = "escaped+"
"""Type tag prefix of a value stored with its strings escaped."""


def _langgraph_objects(value: Any, walk: Any) -> Any:
    """The strings in the LangGraph objects a checkpoint holds that are not dataclasses."""
    from langgraph.types import Send

    if isinstance(value, Send):
        node, arg = walk(value.node), walk(value.arg)
        return value if node is value.node and arg is value.arg else Send(node, arg, timeout=value.timeout)
    return value


def _probe_contents(value: Any) -> Any:
    """What :func:`_has_lone_surrogate` packs for a value msgpack has no type for."""
    if isinstance(value, (set, frozenset)):
        return list(value)
    from langgraph.types import Send

    return [value.node, value.arg] if isinstance(value, Send) else None


_PROBE_OPTIONS = ormsgpack.OPT_NON_STR_KEYS | ormsgpack.OPT_SERIALIZE_PYDANTIC


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a string :func:`map_strings` reaches in ``value`` holds a lone surrogate.

    Packed strictly (without LangGraph's OPT_REPLACE_SURROGATES), ormsgpack refuses one: a check at
    msgpack's speed, where walking every checkpoint in Python would cost ~20 times more. Any other
    refusal (an int over 64 bits) errs on the safe side: the value is escaped.
    """
    try:
        ormsgpack.packb(value, default=_probe_contents, option=_PROBE_OPTIONS)
    except ormsgpack.MsgpackEncodeError:
        return True
    return False


class TextSafeSerializer(JsonPlusSerializer):
    """LangGraph's serializer, keeping every string exactly (module docstring)."""

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        if not _has_lone_surrogate(obj):
            return super().dumps_typed(obj)
        type_, data = super().dumps_typed(map_strings(obj, escape, _langgraph_objects))
        return ESCAPED_TYPE_PREFIX + type_, data

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        type_, payload = data
        if type_.startswith(ESCAPED_TYPE_PREFIX):
            value = super().loads_typed((type_.removeprefix(ESCAPED_TYPE_PREFIX), payload))
            return map_strings(value, unescape, _langgraph_objects)
        return super().loads_typed(data)


_Deferred = tuple[Any, Any, str, str]
"""A task's writes, kept: (config, writes, task_id, task_path), as ``aput_writes`` took them."""


class DeferredWrites:
    """Task writes kept until the checkpoint that applies them is put (module docstring).

    Keyed by (thread, namespace, checkpoint id): ``aput`` of a checkpoint takes the writes made
    on its parent, the id its config carries. :meth:`aflush` writes what is left of a thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # the LangGraph saver it is mixed into
        self._deferred: dict[tuple[str, str, str], list[_Deferred]] = {}

    @staticmethod
    def _key(config: Any) -> tuple[str, str, str]:
        conf = config["configurable"]
        return str(conf["thread_id"]), str(conf.get("checkpoint_ns", "")), str(conf.get("checkpoint_id") or "")

    async def aput_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        if writes:
            self._deferred.setdefault(self._key(config), []).append((config, list(writes), task_id, task_path))

    async def aget_tuple(self, config: Any) -> Any:
        """The saver's tuple, with the writes kept for its checkpoint among its pending writes
        (this process sees what it wrote)."""
        found = await super().aget_tuple(config)  # type: ignore[misc]
        if found is not None and (kept := self._deferred.get(self._key(found.config))):
            found = found._replace(pending_writes=[*(found.pending_writes or []), *(
                (task_id, channel, value) for _, writes, task_id, _ in kept for channel, value in writes)])
        return found

    def _take(self, config: Any) -> list[_Deferred]:
        """The writes made on the checkpoint ``config`` names (a put's parent), no longer kept."""
        return self._deferred.pop(self._key(config), []) if config["configurable"].get("checkpoint_id") else []

    async def aflush(self, thread_id: str) -> None:
        """Write every task write still kept for ``thread_id`` (its graph stopped)."""
        for deferred in self.forget(thread_id):
            await self._write_now(*deferred)

    def forget(self, thread_id: str) -> list[_Deferred]:
        """Stop keeping the writes of ``thread_id``; returns them (a graph that was cancelled
        leaves its writes unwritten: its tasks run again on resume)."""
        return [d for key in [k for k in self._deferred if k[0] == str(thread_id)] for d in self._deferred.pop(key)]

    async def _write_now(self, config: Any, writes: Any, task_id: str, task_path: str) -> None:
        raise NotImplementedError


_PUT_CHECKPOINT = ("INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
                   "parent_checkpoint_id, type, checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)")
_PUT_WRITES = ("INSERT OR {verb} INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, "
               "channel, type, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _group_committed_saver(base: type, store: Store) -> type:
    """``base`` (LangGraph's AsyncSqliteSaver) writing through the store's group commit.

    LangGraph's saver commits each checkpoint and each task's writes on its own aiosqlite
    connection: two commits and several thread hand-offs per graph step, queued behind the
    store's other writers. Here the same rows (the same statements as LangGraph's ``aput`` and
    ``aput_writes``, serialized the same way) are written by :meth:`Store.transact`, in one
    transaction with whatever else concurrent runs write at that moment; the call returns once
    that transaction committed, so a checkpoint is as durable as before when LangGraph goes on.
    Reads stay on the saver's own connection (WAL: readers see every committed write)."""
    from langgraph.checkpoint.base import WRITES_IDX_MAP, get_checkpoint_metadata

    class GroupCommittedSaver(DeferredWrites, base):  # type: ignore[misc,valid-type]
        async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
            await self.setup()
            conf = config["configurable"]
            type_, blob = self.serde.dumps_typed(checkpoint)
            meta = json.dumps(get_checkpoint_metadata(config, metadata), ensure_ascii=False).encode("utf-8", "ignore")
            params = (str(conf["thread_id"]), conf["checkpoint_ns"], checkpoint["id"], conf.get("checkpoint_id"),
                      type_, blob, meta)
            writes = [self._write_rows(*deferred) for deferred in self._take(config)]

            def put(conn: Any) -> None:
                conn.exec_driver_sql(_PUT_CHECKPOINT, params)
                for query, rows in writes:
                    conn.exec_driver_sql(query, rows)

            await store.transact(put)
            return {"configurable": {"thread_id": conf["thread_id"], "checkpoint_ns": conf["checkpoint_ns"],
                                     "checkpoint_id": checkpoint["id"]}}

        def _write_rows(self, config: Any, writes: Any, task_id: str, task_path: str) -> tuple[str, list[Any]]:
            """LangGraph's statement and rows for one task's writes."""
            conf = config["configurable"]
            query = _PUT_WRITES.format(verb="REPLACE" if all(w[0] in WRITES_IDX_MAP for w in writes) else "IGNORE")
            return query, [(str(conf["thread_id"]), str(conf["checkpoint_ns"]), str(conf["checkpoint_id"]), task_id,
                            task_path, WRITES_IDX_MAP.get(channel, idx), channel, *self.serde.dumps_typed(value))
                           for idx, (channel, value) in enumerate(writes)]

        async def _write_now(self, config: Any, writes: Any, task_id: str, task_path: str) -> None:
            await self.setup()
            query, rows = self._write_rows(config, writes, task_id, task_path)
            await store.transact(lambda conn: conn.exec_driver_sql(query, rows))  # type: ignore[arg-type]

    return GroupCommittedSaver


def _text_safe_postgres_saver(base: type) -> type:
    """``base`` (LangGraph's AsyncPostgresSaver) storing strings ``jsonb`` refuses as blobs.

    ``aput`` writes LangGraph's rows with LangGraph's statements (channel values that are not
    primitives, and strings ``jsonb`` refuses, in the blobs table; the rest inline), serialized on
    the event loop where LangGraph hands that to a worker thread (measured: one thread hop was
    ~0.4 ms of a turn at one program), with the task writes the checkpoint applies in the same
    pipeline (:class:`DeferredWrites`)."""
    from langgraph.checkpoint.base import WRITES_IDX_MAP, get_serializable_checkpoint_metadata
    from langgraph.checkpoint.serde.types import _DeltaSnapshot
    from psycopg.types.json import Jsonb

    def inline(value: Any) -> bool:
        return value is None or isinstance(value, (int, float, bool)) or (
            isinstance(value, str) and not has_unstorable(value))

    class TextSafePostgresSaver(DeferredWrites, base):  # type: ignore[misc,valid-type]
        def _write_rows(self, config: Any, writes: Any, task_id: str, task_path: str) -> tuple[str, list[Any]]:
            """LangGraph's statement and rows for one task's writes (serialized on the event loop)."""
            query = (self.UPSERT_CHECKPOINT_WRITES_SQL if all(w[0] in WRITES_IDX_MAP for w in writes)
                     else self.INSERT_CHECKPOINT_WRITES_SQL)
            conf = config["configurable"]
            return query, self._dump_writes(conf["thread_id"], conf["checkpoint_ns"], conf["checkpoint_id"], task_id,
                                            task_path, writes)

        async def _write_now(self, config: Any, writes: Any, task_id: str, task_path: str) -> None:
            query, params = self._write_rows(config, writes, task_id, task_path)
            async with self._cursor(pipeline=True) as cur:
                await cur.executemany(query, params)

        async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
            conf = config["configurable"]
            thread_id, ns = conf["thread_id"], conf["checkpoint_ns"]
            kept: dict[str, Any] = {}
            blobs: dict[str, Any] = {}
            for name, value in checkpoint["channel_values"].items():
                if isinstance(value, _DeltaSnapshot):  # stored as a blob, marked inline (as LangGraph does)
                    blobs[name], kept[name] = value, True
                elif inline(value):
                    kept[name] = value
                else:
                    blobs[name] = value
            blob_rows = self._dump_blobs(thread_id, ns, blobs, {k: v for k, v in new_versions.items() if k in blobs})
            writes = [self._write_rows(*deferred) for deferred in self._take(config)]
            row = (thread_id, ns, checkpoint["id"], conf.get("checkpoint_id"),
                   Jsonb({**checkpoint, "channel_values": kept}),
                   Jsonb(get_serializable_checkpoint_metadata(config, metadata)))
            async with self._cursor(pipeline=True) as cur:
                if blob_rows:
                    await cur.executemany(self.UPSERT_CHECKPOINT_BLOBS_SQL, blob_rows)
                await cur.execute(self.UPSERT_CHECKPOINTS_SQL, row)
                for query, params in writes:
                    await cur.executemany(query, params)
            return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}

    return TextSafePostgresSaver


async def open_checkpointer(store: Store, stack: AsyncExitStack) -> Any:
    """A set-up saver on ``store``'s database; its connections close with ``stack``.

    SQLite: LangGraph's AsyncSqliteSaver reading on its own connection and writing through the
    store's group commit (one writer per file). PostgreSQL: AsyncPostgresSaver on a pool. Both
    serialize through :class:`TextSafeSerializer`.
    """
    if store.is_sqlite:
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        conn = await aiosqlite.connect(store.sync_url.removeprefix("sqlite:///"))
        stack.push_async_callback(conn.close)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA busy_timeout=60000")
        saver = _group_committed_saver(AsyncSqliteSaver, store)(conn, serde=TextSafeSerializer())
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
        saver = _text_safe_postgres_saver(AsyncPostgresSaver)(pool, serde=TextSafeSerializer())
        async with pool.connection() as conn:  # runtimes starting on a fresh database take turns
            # Polled, not blocked on: see Store.upgrade (CREATE INDEX CONCURRENTLY waits for
            # every session inside a statement).
            poll = f"SELECT pg_try_advisory_lock({SCHEMA_LOCK_ID}) AS ok"
            while not (await (await conn.execute(poll)).fetchone())["ok"]:  # type: ignore[index]
                await asyncio.sleep(0.05)
            try:
                await saver.setup()
            finally:
                await conn.execute(f"SELECT pg_advisory_unlock({SCHEMA_LOCK_ID})")
        return saver
    await saver.setup()
    return saver
