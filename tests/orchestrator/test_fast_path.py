"""The fast path of issue 18: group commit, one-transaction reservations, the settle fast path,
the prompt's upper bound reserved where it does not bind, and the aiohttp transport."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from budget.errors import LimitReached
from budget.ledger import AccountView, Charge, Ledger
from budget.limits import Limit
from budget.tables import BudgetAccountRow, LedgerEntryRow
from orchestrator.llm.aiohttp_transport import AiohttpTransport
from orchestrator.llm.openai import OpenAIClient, OpenAIConfig
from orchestrator.store.db import Store
from orchestrator.testing import LoopbackServer, Reply
from orchestrator.types import LLMRequest, Message, SamplingOptions


async def _ledger(db_url: str) -> Ledger:
    store = Store(db_url)
    await store.ensure_schema()
    return Ledger(store)


def test_group_commit_isolates_a_failing_transaction(tmp_path: Path) -> None:
    """Concurrent transactions commit as one group; one that raises is rolled back alone and
    only its caller sees the error."""

    async def go() -> None:
        store = Store(f"sqlite:///{tmp_path}/g.db")
        await store.ensure_schema()
        await store.transact(lambda c: c.exec_driver_sql("CREATE TABLE t (v INTEGER UNIQUE)"))
        before = store.batches

        def insert(v: int):  # type: ignore[no-untyped-def]
            return lambda c: c.exec_driver_sql(f"INSERT INTO t VALUES ({v})").rowcount

        outcomes = await asyncio.gather(*(store.transact(insert(v)) for v in (1, 2, 2, 3, 4)),
                                        return_exceptions=True)
        assert [o if isinstance(o, int) else "error" for o in outcomes] == [1, 1, "error", 1, 1]
        rows = await store.transact(lambda c: [r[0] for r in c.exec_driver_sql("SELECT v FROM t ORDER BY v")])
        assert rows == [1, 2, 3, 4]
        assert store.batches - before <= 3  # grouped: not one commit per transaction
        await store.aclose()

    asyncio.run(go())


def test_multi_account_refusal_names_the_full_account_and_reserves_nothing(db_url: str) -> None:
    async def go() -> None:
        ledger = await _ledger(db_url)
        await ledger.set_limits([Limit("run:m", "tokens", 100), Limit("run:m", "usd", 1.0)])
        with pytest.raises(LimitReached) as exc:
            await ledger.reserve("k", [Charge("run:m", "tokens", 50), Charge("run:m", "usd", 2.0)], "m")
        assert (exc.value.resource, exc.value.limit, exc.value.requested) == ("usd", 1.0, 2.0)
        views = {v.resource: v for v in await ledger.accounts(["run:m"])}
        assert views["tokens"].reserved == 0.0 and views["usd"].reserved == 0.0
        async with ledger.store.session() as s:
            assert (await s.execute(select(LedgerEntryRow).where(LedgerEntryRow.key == "k"))).first() is None
        await ledger.store.aclose()

    asyncio.run(go())


def test_reserve_sized_reads_and_reserves_in_one_transaction(db_url: str) -> None:
    async def go() -> None:
        ledger = await _ledger(db_url)
        await ledger.set_limits([Limit("run:s", "tokens", 100)])
        seen: list[list[AccountView]] = []

        def size(views: list[AccountView]) -> list[Charge]:
            seen.append(views)
            room = (views[0].remaining or 0.0) if views else 70.0  # no accounts: nothing limits the call
            return [Charge("run:s", "tokens", min(room, 70))]

        first = await ledger.reserve_sized("a", ["run:s"], size, "s")
        second = await ledger.reserve_sized("b", ["run:s"], size, "s")
        assert [p[3] for p in first.parts] == [70] and [p[3] for p in second.parts] == [30]
        await ledger.store.transact(lambda c: ledger.settle(first, [Charge("run:s", "tokens", 60)], c))
        await ledger.store.transact(lambda c: ledger.settle(second, [Charge("run:s", "tokens", 30)], c))
        # Settling twice (a retried attempt) changes nothing.
        await ledger.store.transact(lambda c: ledger.settle(second, [Charge("run:s", "tokens", 30)], c))
        [acct] = await ledger.accounts(["run:s"])
        assert (acct.spent, acct.reserved) == (90.0, 0.0)
        await ledger.store.aclose()

    asyncio.run(go())


def test_concurrent_sized_reservations_never_overspend(db_url: str) -> None:
    async def go() -> None:
        ledger = await _ledger(db_url)
        await ledger.set_limits([Limit("run:c", "tokens", 1000)])

        def size(views: list[AccountView]) -> list[Charge]:
            return [Charge("run:c", "tokens", 7)]

        async def one(i: int) -> float:
            try:
                r = await ledger.reserve_sized(f"k{i}", ["run:c"], size, "c")
            except LimitReached:
                return 0.0
            await ledger.store.transact(lambda c: ledger.settle(r, [Charge("run:c", "tokens", 7)], c))
            return 7.0

        spent = sum(await asyncio.gather(*(one(i) for i in range(200))))
        async with ledger.store.session() as s:
            acct = (await s.execute(select(BudgetAccountRow).where(BudgetAccountRow.scope == "run:c"))).scalar_one()
        assert spent == acct.spent == 7 * (1000 // 7) and acct.reserved == 0.0
        await ledger.store.aclose()

    asyncio.run(go())


def test_aiohttp_transport_is_the_default_and_streams() -> None:
    async def go(server: LoopbackServer) -> None:
        client = OpenAIClient(OpenAIConfig(base_urls=[server.base_url], model=server.model, max_retries=0))
        assert isinstance(client._http._transport, AiohttpTransport)
        request = LLMRequest(messages=(Message("user", "hi"),), sampling=SamplingOptions(max_tokens=8))
        try:
            whole = await client.complete(request)
            streamed = [item async for item in client.stream(request)]
        finally:
            await client.aclose()
        assert whole.text == "answer: Paris" and whole.usage.output_tokens == 3
        assert "".join(x for x in streamed if isinstance(x, str)) == "answer: Paris"

    with LoopbackServer(lambda _r: Reply("answer: Paris", prompt_tokens=5, completion_tokens=3)) as server:
        asyncio.run(go(server))


def test_aiohttp_transport_maps_a_refused_connection_to_connect_error() -> None:
    async def go() -> None:
        async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get("http://127.0.0.1:9/v1/models")  # the discard port: nothing listens

    asyncio.run(go())


def test_prompt_counted_exactly_only_where_the_upper_bound_binds(tmp_path: Path) -> None:
    """With ample budget the runtime does not ask /tokenize (the bytes bound is reserved and the
    call is the same); near the limit it does, and clamps by the exact count."""
    from orchestrator.runtime import Runtime
    from orchestrator.settings import Settings

    async def go(server: LoopbackServer) -> tuple[int, int]:
        rt = Runtime(Settings(db_url=f"sqlite:///{tmp_path}/r.db", home=tmp_path))
        opts = {"base_urls": [server.base_url], "model": server.model}
        try:
            ample = await rt.run("react", {"question": "Capital of France?"}, budget="tokens=1000000",
                                 tools=["calculator"], backend="openai", backend_options=opts)
            counted_ample = sum(r.path.endswith("/tokenize") for r in server.requests)
            tight = await rt.run("react", {"question": "Capital of France?"}, budget="tokens=600",
                                 tools=["calculator"], backend="openai", backend_options=opts)
        finally:
            await rt.aclose()
        assert ample.status == "succeeded" and tight.status == "succeeded", (ample, tight)
        return counted_ample, sum(r.path.endswith("/tokenize") for r in server.requests) - counted_ample

    with LoopbackServer(lambda _r: "answer: Paris") as server:
        ample_counts, tight_counts = asyncio.run(go(server))
    assert ample_counts == 0 and tight_counts >= 1


def test_sqlite_checkpoints_are_written_through_the_store(tmp_path: Path) -> None:
    """The saver's writes land in the store's file through its group commit (one writer)."""
    from orchestrator.runtime import Runtime
    from orchestrator.settings import Settings

    async def go() -> int:
        rt = Runtime(Settings(db_url=f"sqlite:///{tmp_path}/c.db", home=tmp_path))
        try:
            result = await rt.run("react", {"question": "q"}, backend="scripted", tools=["calculator"],
                                  backend_options={"responses": ["answer: 4"]})
            assert result.status == "succeeded"
            return int(await rt.store.transact(
                lambda c: c.execute(text("SELECT count(*) FROM checkpoints")).scalar_one()))
        finally:
            await rt.aclose()

    assert asyncio.run(go()) >= 2


def test_task_writes_are_written_with_the_next_checkpoint(db_url: str) -> None:
    """A task's writes are kept (yet visible to this process) until the checkpoint that applies
    them is put, then land with it; what a stopped graph leaves is written by ``aflush``."""
    from contextlib import AsyncExitStack

    from langgraph.checkpoint.base import empty_checkpoint

    from orchestrator.store.checkpointer import open_checkpointer

    async def go() -> None:
        store = Store(db_url)
        await store.ensure_schema()
        table = "writes" if store.is_sqlite else "checkpoint_writes"

        async def stored() -> list[tuple[str, str]]:
            return [tuple(r) for r in await store.transact(  # type: ignore[misc]
                lambda c: c.execute(text(f"SELECT checkpoint_id, channel FROM {table} ORDER BY checkpoint_id, idx"))
                .all())]

        async with AsyncExitStack() as stack:
            saver = await open_checkpointer(store, stack)
            meta = {"source": "loop", "step": 0, "parents": {}}
            first = await saver.aput({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, empty_checkpoint(),
                                     meta, {})
            await saver.aput_writes(first, [("a", 1), ("b", 2)], "task-1")
            assert await stored() == []
            assert [(t, c, v) for t, c, v in (await saver.aget_tuple(first)).pending_writes] == [
                ("task-1", "a", 1), ("task-1", "b", 2)]
            second = await saver.aput(first, empty_checkpoint(), {**meta, "step": 1}, {})
            first_id = first["configurable"]["checkpoint_id"]
            assert await stored() == [(first_id, "a"), (first_id, "b")]
            await saver.aput_writes(second, [("c", 3)], "task-2")
            await saver.aput_writes({"configurable": {**second["configurable"], "thread_id": "other"}}, [("d", 4)],
                                    "task-3")
            await saver.aflush("t")  # this thread's only
            assert (await stored())[-1] == (second["configurable"]["checkpoint_id"], "c")
            assert len(await stored()) == 3
            await saver.aflush("other")
            assert len(await stored()) == 4
            # A cancelled graph's writes are dropped, not written and not kept.
            await saver.aput_writes(second, [("e", 5)], "task-4")
            assert [w[1] for w in saver.forget("t")] == [[("e", 5)]]
            assert (await saver.aget_tuple(second)).pending_writes == [("task-2", "c", 3)]
            await saver.aflush("t")
            assert len(await stored()) == 4
        await store.aclose()

    asyncio.run(go())


@pytest.mark.postgres
def test_postgres_checkpoints_are_stored_as_langgraphs_saver_stores_them(pg_server: Any) -> None:
    """The saver's own ``aput`` (serializing on the event loop) writes the rows LangGraph's
    writes, and LangGraph's saver reads them back."""
    from contextlib import AsyncExitStack

    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    from orchestrator.store.checkpointer import TextSafeSerializer, open_checkpointer
    from orchestrator.store.db import plain_postgres_dsn

    values = {"text": "plain", "n": 3, "x": 1.5, "flag": True, "none": None, "nested": {"a": [1, "b"]},
              "messages": [{"role": "user", "content": "hi"}]}

    async def rows(store: Store) -> list[Any]:
        return await store.transact(lambda c: [
            c.execute(text("SELECT checkpoint_id, parent_checkpoint_id, checkpoint, metadata FROM checkpoints "
                           "ORDER BY checkpoint_id")).all(),
            c.execute(text("SELECT channel, version, type, blob FROM checkpoint_blobs ORDER BY channel")).all()])

    versions = {name: f"0000000000000000000000000000000{i}.0.5" for i, name in enumerate(values, 1)}

    async def put(saver: Any) -> Any:
        checkpoint = empty_checkpoint()
        checkpoint["id"] = "1ef00000-0000-6000-8000-000000000001"
        checkpoint["ts"] = "2026-12-02T00:00:00+00:00"
        checkpoint["channel_values"], checkpoint["channel_versions"] = dict(values), dict(versions)
        return await saver.aput({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, checkpoint,
                                {"source": "loop", "step": 1, "parents": {}}, versions)

    async def go() -> None:
        ours, theirs = Store(pg_server.create_db("qf_ours")), Store(pg_server.create_db("qf_theirs"))
        for store in (ours, theirs):
            await store.ensure_schema()
        async with AsyncExitStack() as stack:
            config = await put(await open_checkpointer(ours, stack))
            pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                plain_postgres_dsn(theirs.db_url), open=False,
                kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row})
            await pool.open()
            stack.push_async_callback(pool.close)
            plain = AsyncPostgresSaver(pool, serde=TextSafeSerializer())  # type: ignore[arg-type]
            await plain.setup()
            await put(plain)
            assert await rows(ours) == await rows(theirs)
            ours_pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                plain_postgres_dsn(ours.db_url), open=False,
                kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row})
            await ours_pool.open()
            stack.push_async_callback(ours_pool.close)
            loaded = await AsyncPostgresSaver(ours_pool, serde=TextSafeSerializer()).aget_tuple(config)  # type: ignore[arg-type]
            assert loaded is not None and loaded.checkpoint["channel_values"] == values
        for store in (ours, theirs):
            await store.aclose()

    asyncio.run(go())
