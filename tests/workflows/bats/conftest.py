"""BATS's graph tests run on the kit's FakeRunContext: the scripted LLM answers by purpose, the
corpus tools are fakes of two pages, and the context enforces per-tool limits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from orchestrator.testing import FakeRunContext, ScriptedClient, ScriptedConfig
from orchestrator.tools.base import Tool, ToolResult, ToolSpec
from orchestrator.tools.registry import ToolRegistry
from orchestrator.types import Message

PAGES = {
    "wiki://Gustave Eiffel": "Gustave Eiffel was a French engineer born in Dijon.",
    "wiki://Eiffel Tower": "The Eiffel Tower was designed by the company of Gustave Eiffel.",
}


def corpus_tools() -> ToolRegistry:
    async def search(args: dict[str, Any]) -> ToolResult:
        return ToolResult(f"Results for {args['query']!r}:\n  1. Eiffel Tower <wiki://Eiffel Tower>\n"
                          "  2. Gustave Eiffel <wiki://Gustave Eiffel>")

    async def browse(args: dict[str, Any]) -> ToolResult:
        return ToolResult(PAGES.get(args["url"], f"No page at {args['url']!r}."))

    def schema(name: str) -> dict[str, Any]:
        return {"type": "object", "properties": {name: {"type": "string"}}, "required": [name]}

    return ToolRegistry([
        Tool(ToolSpec("search", "search", schema("query"), unit="query"), search),
        Tool(ToolSpec("browse", "browse", schema("url"), unit="url"), browse),
    ])


@pytest.fixture
def make_ctx() -> Callable[..., FakeRunContext]:
    """``make_ctx(reply, limits, **config)``: ``reply(purpose, messages)`` scripts the LLM;
    ``limits`` are units per tool (default five searches and five pages). The loop's tests take
    the agent's answer line (``answer_from="agent"``); with ``read=True`` the attempts' answers
    are read from their tool results (the default) and ``reply`` scripts the reading calls too."""

    def make(reply: Callable[[str, list[Message]], str], limits: dict[str, float | None] | None = None,
             *, read: bool = False, **config: Any) -> FakeRunContext:
        # Graph tests read the task at messages[1]: no demo exchange unless a test asks for it.
        config.setdefault("demo", False)
        if not read:
            config.setdefault("answer_from", "agent")
        ctx = FakeRunContext(tools=corpus_tools(), config=config,
                             tool_limits=limits if limits is not None else {"search": 5, "browse": 5})

        def script(messages: Sequence[Message]) -> str:
            return reply(ctx.calls[-1].purpose, list(messages))

        ctx.llm = ScriptedClient(ScriptedConfig(responses=script))
        return ctx

    return make
