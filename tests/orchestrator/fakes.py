"""Control-flow test doubles (never the source of a quality figure)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from orchestrator.tools.base import Tool, ToolResult, ToolSpec
from orchestrator.tools.registry import ToolRegistry
from orchestrator.types import LLMRequest, LLMResponse, Usage


class RuleClient:
    """Answers by a pure function of the conversation, so a resumed run sees the same replies."""

    model = "rule-model"

    def __init__(self, rule: Callable[[LLMRequest], str]) -> None:
        self.rule = rule
        self.requests: list[LLMRequest] = []

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        text = self.rule(request)
        n_in = sum(len(m.content.split()) for m in request.messages)
        return LLMResponse(text=text, usage=Usage(n_in, 0, len(text.split())), model=self.model)

    async def stream(self, request: LLMRequest) -> AsyncIterator[str | LLMResponse]:
        response = await self.complete(request)
        yield response.text
        yield response

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def aclose(self) -> None:
        return None


def searches_then_answers(n_searches: int, answer: str = "Paris") -> Callable[[LLMRequest], str]:
    def rule(request: LLMRequest) -> str:
        # Observations of this task only: prompts may open with a worked example.
        start = max(i for i, m in enumerate(request.messages) if m.role == "user" and "Question:" in m.content)
        observations = sum(1 for m in request.messages[start:] if m.role == "tool")
        if observations < n_searches:
            return f"search: query number {observations}"
        return f"answer: {answer}"

    return rule


def fake_search_registry(calls: list[str] | None = None) -> ToolRegistry:
    async def search(args: dict) -> ToolResult:  # type: ignore[type-arg]
        if calls is not None:
            calls.append(args["query"])
        return ToolResult(f"1. Paris (wiki://Paris): capital of France. [{args['query']}]")

    spec = ToolSpec("search", "search the corpus", {"type": "object", "properties": {"query": {"type": "string"}},
                                                    "required": ["query"]}, unit="query")
    return ToolRegistry([Tool(spec, search)])
