"""Text a database refuses (U+0000, lone surrogates, bytes that were not UTF-8) in model replies
and tool results: runs complete, everything is read back exactly, the ledger settles, and a run
killed mid-run resumes with the same text; on SQLite and PostgreSQL, with the scripted backend
and the loopback OpenAI server.

Run as ``python -m tests.orchestrator.test_text_safety DB_URL RUN_ID BACKEND [BASE_URL MODEL]``
this module is the worker the crash test kills inside its ``tripwire`` tool.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from sqlalchemy import insert, text
from sqlalchemy import select as sql_select

from budget.tables import BudgetAccountRow
from orchestrator.context import RunContext
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from orchestrator.store import calls
from orchestrator.store.checkpointer import (
    ESCAPED_TYPE_PREFIX,
    TextSafeSerializer,
    open_checkpointer,
)
from orchestrator.store.db import Store
from orchestrator.store.models import LLMCallRow, RunRow, StepRow, ToolCallRow
from orchestrator.store.safe_text import escape
from orchestrator.testing import ChatRequest, LoopbackServer, ScriptedClient, ScriptedConfig
from orchestrator.tools.base import Tool, ToolResult, ToolSpec
from orchestrator.tools.registry import ToolRegistry
from orchestrator.types import Message
from orchestrator.workflow import Workflow, register
from tests.orchestrator.fakes import fake_search_registry

ROOT = Path(__file__).resolve().parents[2]

WEIRD = ("nul\x00 high\ud800 low\udfff pair-halves\ud83d\ude00 escape-char\ue000 escape-lookalike\ue0000041 "
         "not-utf8" + b"\xff\xfe".decode("utf-8", "surrogateescape"))
"""Every code point the store must escape, and text that looks like an escape."""
REPLIES = (f"first {WEIRD}", f"second {WEIRD}")
KEY = "notes"


def echoed(text: str) -> str:
    return f"echo [{text}] {WEIRD}"


# -- the probe workflow: one reply into a tool, a second reply, then a tripwire ----------------------

class _State(TypedDict, total=False):
    question: str
    reply: str
    observation: str
    second: str
    notes: dict[str, Any]


def _build(ctx: RunContext) -> StateGraph:
    async def ask(state: _State) -> dict[str, Any]:
        reply = await ctx.chat([Message("user", "Say something strange.")])
        await ctx.record_step("ask", {"reply": reply.text, WEIRD: [reply.text]})
        return {"reply": reply.text}

    async def look(state: _State) -> dict[str, Any]:
        seen = await ctx.call_tool("echo", {"text": state["reply"], WEIRD: WEIRD})
        second = await ctx.chat([Message("user", "Anything to add?")])
        await ctx.call_tool("tripwire", {})  # the crash test's worker dies in here
        notes = {WEIRD: [seen.content, second.text], "question": state["question"]}
        await ctx.record_step("look", notes)
        await ctx.put_record("text_safety", KEY, notes)
        return {"observation": seen.content, "second": second.text, "notes": notes}

    graph = StateGraph(_State)
    graph.add_node("ask", ask)
    graph.add_node("look", look)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", "look")
    graph.add_edge("look", END)
    return graph


PROBE = register(Workflow(name="text_safety_probe", build=_build,
                          initial_state=lambda task: {"question": task["question"]},
                          result=lambda state: dict(state)))


def _expected_state(replies: tuple[str, ...]) -> dict[str, Any]:
    """The probe's final state when the model replied ``replies``."""
    notes = {WEIRD: [echoed(replies[0]), replies[1]], "question": WEIRD}
    return {"question": WEIRD, "reply": replies[0], "observation": echoed(replies[0]), "second": replies[1],
            "notes": notes}


def _tools(ran: list[str], *, block: bool = False) -> ToolRegistry:
    """``echo`` (its result holds WEIRD) and ``tripwire`` (with ``block``: tells the test on stdout
    that it has started, then never returns)."""

    async def echo(args: dict[str, Any]) -> ToolResult:
        ran.append("echo")
        return ToolResult(echoed(args["text"]))

    async def tripwire(args: dict[str, Any]) -> ToolResult:
        ran.append("tripwire")
        if block:
            print("in tripwire", flush=True)
            await asyncio.Event().wait()
        return ToolResult("passed")

    anything = {"type": "object"}
    return ToolRegistry([Tool(ToolSpec("echo", "repeat the text", anything), echo),
                         Tool(ToolSpec("tripwire", "a step the crash test kills", anything), tripwire)])


def _reply_for(request: ChatRequest) -> str:
    """The loopback server's script: the reply to each of the probe's two prompts."""
    return REPLIES[0] if "strange" in request.messages[-1]["content"] else REPLIES[1]


def _run_kwargs(backend: str, base_url: str = "", model: str = "") -> dict[str, Any]:
    options = ({"responses": list(REPLIES)} if backend == "scripted"
               else {"base_urls": [base_url], "model": model, "max_retries": 0})
    return {"backend": "scripted" if backend == "scripted" else "openai", "backend_options": options,
            "tools": ["echo", "tripwire"], "budget": "echo=5,tripwire=5,tokens=100000"}


def _worker(db_url: str, run_id: str, backend: str, base_url: str = "", model: str = "") -> None:
    async def go() -> None:
        rt = Runtime(Settings(db_url=db_url), tools=_tools([], block=True))
        await rt.run(PROBE.name, {"question": WEIRD}, run_id=run_id, **_run_kwargs(backend, base_url, model))

    asyncio.run(go())


# -- what the store holds -----------------------------------------------------------------------------

async def _ledger(rt: Runtime, run_id: str) -> dict[str, tuple[float, float]]:
    """(spent, reserved) per resource of the run's scope."""
    async with rt.store.session() as s:
        rows = await s.execute(sql_select(BudgetAccountRow.resource, BudgetAccountRow.spent,
                                          BudgetAccountRow.reserved)
                               .where(BudgetAccountRow.scope == f"run:{run_id}"))
        return {resource: (spent, reserved) for resource, spent, reserved in rows}


def _assert_settled(ledger: dict[str, tuple[float, float]]) -> None:
    assert ledger["tokens"][0] > 0, ledger
    assert all(reserved == 0 for _, reserved in ledger.values()), f"reservations held: {ledger}"


async def _rows(rt: Runtime, run_id: str) -> dict[str, Any]:
    async with rt.store.session() as s:
        llm = (await s.execute(sql_select(LLMCallRow).where(LLMCallRow.run_id == run_id)
                               .order_by(LLMCallRow.id))).scalars().all()
        tools = (await s.execute(sql_select(ToolCallRow).where(ToolCallRow.run_id == run_id)
                                 .order_by(ToolCallRow.id))).scalars().all()
        steps = (await s.execute(sql_select(StepRow.node, StepRow.data).where(StepRow.run_id == run_id)
                                 .order_by(StepRow.id))).all()
        record = await calls.read_record(s, run_id, "text_safety", KEY)
    return {"llm": llm, "tools": tools, "steps": [tuple(row) for row in steps], "record": record}


@pytest.mark.parametrize("backend", ["scripted", "loopback"])
def test_weird_text_survives_a_crash_and_resume(db_url: str, backend: str) -> None:
    if backend == "scripted":
        _crash_and_resume(db_url, backend, None)
        return
    with LoopbackServer(_reply_for) as server:
        _crash_and_resume(db_url, backend, server)


def _crash_and_resume(db_url: str, backend: str, server: LoopbackServer | None) -> None:
    run_id = f"weird-{backend}"
    extra = [server.base_url, server.model] if server else []
    with subprocess.Popen([sys.executable, "-m", "tests.orchestrator.test_text_safety", db_url, run_id, backend,
                           *extra], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], 120)
        line = proc.stdout.readline() if readable else ""
        proc.send_signal(signal.SIGKILL)
    assert line == "in tripwire\n", f"the worker ({backend}) died or hung before its tripwire"

    async def go() -> None:
        ran: list[str] = []
        idle = ScriptedClient(ScriptedConfig([]))  # resumed calls come from the journal, not the model
        rt = Runtime(Settings(db_url=db_url), tools=_tools(ran),
                     clients={"scripted": idle} if backend == "scripted" else None)
        resumed = await rt.resume(run_id)
        assert resumed.status == "succeeded", resumed.error
        assert ran == ["tripwire"] and idle.requests == []  # echo and both replies replayed
        if server:
            assert len(server.chat_bodies) == 2

        # JSON has no lone surrogate pair: the client reads "\ud83d\ude00" as one code point.
        replies = REPLIES if server is None else tuple(json.loads(json.dumps(r)) for r in REPLIES)
        expected = _expected_state(replies)
        assert resumed.result == expected
        assert (await rt.get_run(run_id)).result == expected
        assert (await rt.get_run(run_id)).task == {"question": WEIRD}
        assert await rt.get_state(run_id) == expected
        rows = await _rows(rt, run_id)
        assert [r.response for r in rows["llm"]] == list(replies)
        echo, _ = rows["tools"]
        assert echo.arguments == {"text": replies[0], WEIRD: WEIRD} and echo.result == echoed(replies[0])
        assert rows["steps"] == [("ask", {"reply": replies[0], WEIRD: [replies[0]]}), ("look", expected["notes"])]
        assert rows["record"] == expected["notes"]
        _assert_settled(await _ledger(rt, run_id))
        await rt.aclose()

    asyncio.run(go())


# -- the same text through the prompts of a multi-turn agent ----------------------------------------

@pytest.mark.parametrize("backend", ["scripted", "loopback"])
def test_react_sends_and_stores_weird_text_in_its_prompts(db_url: str, backend: str) -> None:
    replies = [f"search: {WEIRD}", f"answer: {WEIRD}", "Paris"]  # the last: the reading call's answer

    async def go(server: LoopbackServer | None) -> None:
        # Over HTTP the reply is JSON, where two surrogate halves in a row are one character:
        # what the client receives (and what must be stored) is the decoded JSON.
        received = replies if server is None else [json.loads(json.dumps(r)) for r in replies]
        queries: list[str] = []
        rt = Runtime(Settings(db_url=db_url), tools=fake_search_registry(queries))
        options = ({"responses": replies} if server is None
                   else {"base_urls": [server.base_url], "model": server.model, "max_retries": 0})
        try:
            run = await rt.run("react", {"question": WEIRD}, backend="scripted" if server is None else "openai",
                               backend_options=options, tools=["search"], budget="search=3,tokens=100000")
            assert run.status == "succeeded", run.error
            rows = await _rows(rt, run.run_id)
            ledger = await _ledger(rt, run.run_id)
        finally:
            await rt.aclose()
        assert [r.response for r in rows["llm"]] == received
        search = rows["tools"][0]
        assert search.arguments == {"query": queries[0]} and received[0].removeprefix("search: ") in queries[0]
        assert search.result == f"1. Paris (wiki://Paris): capital of France. [{queries[0]}]"
        # The second prompt carries the first reply and the observation, as they were sent.
        assert {"role": "assistant", "content": received[0]} in rows["llm"][1].prompt
        assert any(search.result in m["content"] for m in rows["llm"][1].prompt)
        assert any(search.result in m["content"] for m in rows["llm"][2].prompt)  # the reading call's
        assert rows["steps"][0][1]["output"] == received[0]
        _assert_settled(ledger)

    if backend == "scripted":
        asyncio.run(go(None))
        return
    responses = iter(replies)
    with LoopbackServer(lambda _request: next(responses)) as server:
        asyncio.run(go(server))


# -- the stored form ------------------------------------------------------------------------------------

def test_the_store_holds_the_documented_escape(db_url: str) -> None:
    prompt = [{"role": "user", "content": WEIRD}]

    async def go() -> None:
        store = Store(db_url)
        await store.ensure_schema()
        async with store.session() as s:
            s.add(RunRow(id="r", workflow="w", status="running", backend="b", task={WEIRD: WEIRD}))
        row = {"run_id": "r", "key": "r:llm:0", "prompt": prompt, "response": WEIRD}
        await store.transact(lambda conn: conn.execute(insert(LLMCallRow), row))  # a Core insert
        async with store.session() as s:
            raw = (await s.execute(text("SELECT response FROM llm_calls"))).scalar_one()
            assert raw == escape(WEIRD)  # what any other reader of the table sees
            assert (await s.execute(sql_select(LLMCallRow.response, LLMCallRow.prompt))).one() == (WEIRD, prompt)
            assert (await s.get(RunRow, "r")).task == {WEIRD: WEIRD}
        await store.aclose()

    asyncio.run(go())


# -- the checkpoint savers directly ---------------------------------------------------------------------

def test_checkpoints_give_back_the_text_they_were_given(db_url: str) -> None:
    values = {"text": WEIRD, "clean": "plain text", "nested": {WEIRD: [WEIRD, 1, None, {"k": WEIRD}]},
              "messages": [Message("user", WEIRD)]}
    writes = [("text", WEIRD), ("clean", "plain text"), ("__pregel_tasks", Send("node", {"arg": WEIRD}))]

    async def go() -> None:
        store = Store(db_url)
        await store.ensure_schema()
        async with AsyncExitStack() as stack:
            saver = await open_checkpointer(store, stack)
            checkpoint = empty_checkpoint()
            versions = {name: saver.get_next_version(None, None) for name in values}
            checkpoint["channel_values"] = dict(values)
            checkpoint["channel_versions"] = dict(versions)
            config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
            saved = await saver.aput(config, checkpoint, {"source": "input", "step": -1, "parents": {}}, versions)
            await saver.aput_writes(saved, writes, "task-1")
            await saver.aflush("t")  # kept until the next checkpoint, else
            loaded = await saver.aget_tuple(saved)
        assert loaded is not None and loaded.checkpoint["channel_values"] == values
        assert [(channel, value) for _, channel, value in loaded.pending_writes] == writes
        # Values without such text are stored as LangGraph stores them.
        table = "writes" if store.is_sqlite else "checkpoint_writes"
        async with store.session() as s:
            types = {channel: type_ for channel, type_ in await s.execute(text(f"SELECT channel, type FROM {table}"))}
        assert types["clean"] == "msgpack" and types["text"] == ESCAPED_TYPE_PREFIX + "msgpack"
        await store.aclose()

    asyncio.run(go())


@pytest.mark.parametrize(("value", "escaped"), [
    ("nul\x00 escape-char\ue000", False),  # msgpack keeps these: stored as LangGraph stores them
    ({"k": ["\ud800"]}, True),
    ({"\udfff": 1}, True),
    ([Message("user", "\udcff")], True),
    ({"\ud800", "plain"}, True),
    (Send("node", {"arg": "\ud800"}), True),
])
def test_serializer_escapes_only_values_with_lone_surrogates(value: Any, escaped: bool) -> None:
    serde = TextSafeSerializer()
    type_, data = serde.dumps_typed(value)
    assert type_ == (ESCAPED_TYPE_PREFIX + "msgpack" if escaped else "msgpack")
    assert serde.loads_typed((type_, data)) == value


if __name__ == "__main__":
    _worker(*sys.argv[1:])
