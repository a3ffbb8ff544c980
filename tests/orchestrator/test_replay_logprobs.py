"""A resumed run gets back the log-probabilities its journaled replies had (a workflow that scores
by them, as BatchPrompt's ``label_scoring=logprob`` and DRQA's ``difficulty_signal=logprob`` do,
takes the path it took), on SQLite and PostgreSQL, through the OpenAI client on loopback."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from orchestrator.context import RunContext
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from orchestrator.testing import LoopbackServer, Reply
from orchestrator.tools.registry import ToolRegistry
from orchestrator.types import Message, SamplingOptions
from orchestrator.workflow import Workflow, register

LOGPROBS = [("Par", -0.25), ("is", -1.5), ("\x00\ud800", -3.0)]  # text that needs the store's escape too
FAIL_ONCE: dict[str, bool] = {}


class _State(TypedDict, total=False):
    scored: list[Any]


def _build(ctx: RunContext) -> StateGraph:
    async def score(state: _State) -> dict[str, Any]:
        reply = await ctx.chat([Message("user", "Capital of France?")],
                               sampling=SamplingOptions(max_tokens=4, logprobs=True, top_logprobs=1))
        assert reply.logprobs is not None
        scored = [[t.token, t.logprob, [list(p) for p in t.top_logprobs]] for t in reply.logprobs]
        if FAIL_ONCE.pop(ctx.run_id, False):
            raise RuntimeError("the node fails after its call, once")
        return {"scored": scored}

    graph = StateGraph(_State)
    graph.add_node("score", score)
    graph.add_edge(START, "score")
    graph.add_edge("score", END)
    return graph


WORKFLOW = register(Workflow(name="logprob_probe", build=_build, initial_state=lambda task: {},
                             result=lambda state: {"scored": state.get("scored")}))


def test_a_replayed_reply_has_its_logprobs(db_url: str) -> None:
    with LoopbackServer(lambda _r: Reply("Paris", logprobs=LOGPROBS), model="m") as server:
        async def go() -> None:
            rt = Runtime(Settings(db_url=db_url), tools=ToolRegistry([]))
            opts = {"base_urls": [server.base_url], "model": "m"}
            try:
                FAIL_ONCE["lp0000000000000001"] = True
                with pytest.raises(RuntimeError, match="once"):
                    await rt.run(WORKFLOW, {}, backend="openai", backend_options=opts, tools=[],
                                 run_id="lp0000000000000001")
                assert (await rt.get_run("lp0000000000000001")).status == "failed"
                sent = len(server.chat_bodies)
                resumed = await rt.resume("lp0000000000000001")
                assert len(server.chat_bodies) == sent  # replayed from the journal, not asked again
                direct = await rt.run(WORKFLOW, {}, backend="openai", backend_options=opts, tools=[])
            finally:
                await rt.aclose()
            want = [[token, lp, [[token, lp]]] for token, lp in LOGPROBS]
            assert direct.result == {"scored": want}
            assert resumed.status == "succeeded" and resumed.result == direct.result

        asyncio.run(go())
