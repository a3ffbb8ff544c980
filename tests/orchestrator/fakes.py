"""Scripts and tools for the runtime's control-flow tests (never the source of a quality figure).

The LLM is the kit's scripted client (:mod:`orchestrator.testing`); a script here is a pure
function of the conversation, so a resumed run sees the same replies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from orchestrator.testing import ScriptedClient, ScriptedConfig
from orchestrator.tools.base import Tool, ToolResult, ToolSpec
from orchestrator.tools.registry import ToolRegistry
from orchestrator.types import Message
from workflows.bats.prompts import READ_SYSTEM


def searches_then_answers(n_searches: int, answer: str = "Paris") -> Callable[[Sequence[Message]], str]:
    def rule(messages: Sequence[Message]) -> str:
        if messages[0].content == READ_SYSTEM:  # the reading call over the run's results
            return answer
        # Observations of this task only: prompts may open with a worked example.
        start = max(i for i, m in enumerate(messages) if m.role == "user" and "Question:" in m.content)
        observations = sum(1 for m in messages[start:] if m.role == "tool")
        if observations < n_searches:
            return f"search: query number {observations}"
        return f"answer: {answer}"

    return rule


def searching_client(n_searches: int, answer: str = "Paris") -> ScriptedClient:
    """The scripted LLM playing :func:`searches_then_answers`."""
    return ScriptedClient(ScriptedConfig(responses=searches_then_answers(n_searches, answer)))


def fake_search_registry(calls: list[str] | None = None) -> ToolRegistry:
    async def search(args: dict) -> ToolResult:  # type: ignore[type-arg]
        if calls is not None:
            calls.append(args["query"])
        return ToolResult(f"1. Paris (wiki://Paris): capital of France. [{args['query']}]")

    spec = ToolSpec("search", "search the corpus", {"type": "object", "properties": {"query": {"type": "string"}},
                                                    "required": ["query"]}, unit="query")
    return ToolRegistry([Tool(spec, search)])
