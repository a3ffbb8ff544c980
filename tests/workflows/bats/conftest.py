"""A fake RunContext for BATS's graph tests: scripted replies, fake corpus tools, a tiny ledger."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from orchestrator.context import ToolBudgetView
from orchestrator.tools.base import Tool, ToolResult, ToolSpec
from orchestrator.tools.registry import ToolRegistry
from orchestrator.types import LLMResponse, Message, SamplingOptions, Usage

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


@dataclass
class Call:
    purpose: str
    messages: list[Message]
    sampling: SamplingOptions
    is_last_step: bool


@dataclass
class FakeContext:
    """RunContext double. ``reply(purpose, messages)`` scripts the LLM; ``limits`` per tool."""

    reply: Callable[[str, list[Message]], str]
    limits: dict[str, float | None]
    config: dict[str, Any] = field(default_factory=dict)
    run_id: str = "run-test"
    tools: ToolRegistry = field(default_factory=corpus_tools)
    llm: Any = None
    used: dict[str, float] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    tool_calls: list[tuple[str, dict[str, Any], bool]] = field(default_factory=list)
    steps: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def chat(self, messages, *, sampling=None, tool_name=None, is_last_step=False, scope=None,
                   purpose="agent") -> LLMResponse:
        messages = list(messages)
        self.calls.append(Call(purpose, messages, sampling or SamplingOptions(), is_last_step))
        text = self.reply(purpose, messages)
        return LLMResponse(text=text, usage=Usage(10, 0, 5), model="fake")

    async def call_tool(self, name, args, *, scope=None) -> ToolResult:
        units = self.tools.units_for(name, args)
        limit = self.limits.get(name)
        used = self.used.get(name, 0.0)
        if limit is not None and used + units > limit:
            self.tool_calls.append((name, args, True))
            return ToolResult(f"Refused: the {name} budget is exhausted.", is_error=True, metadata={"refused": True})
        self.used[name] = used + units
        self.tool_calls.append((name, args, False))
        return await self.tools.invoke(name, args)

    async def tool_budgets(self) -> list[ToolBudgetView]:
        return [ToolBudgetView(s.name, s.unit, self.used.get(s.name, 0.0), self.limits.get(s.name))
                for s in self.tools.specs()]

    async def record_step(self, node, data) -> None:
        self.steps.append((node, data))

    def purposes(self) -> list[str]:
        return [c.purpose for c in self.calls]


@pytest.fixture
def make_ctx() -> Callable[..., FakeContext]:
    def make(reply: Callable[[str, list[Message]], str], limits: dict[str, float | None] | None = None,
             **config: Any) -> FakeContext:
        # Graph tests read the task at messages[1]: no demo exchange unless a test asks for it.
        config.setdefault("demo", False)
        return FakeContext(reply=reply, limits=limits if limits is not None else {"search": 5, "browse": 5},
                           config=config)

    return make

