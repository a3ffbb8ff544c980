"""A minimal RunContext over one LLM client: no store, no ledger, no journal.

For benchmarks that drive a workflow's graph directly (DRQA's and PriorDynaFlow's), and for
machines that lack the runtime's database stack. A workflow's own budget arithmetic
still holds (DRQA takes every call's ``max_tokens`` out of the run's total); what is lost is the
ledger's record, so figures made this way say ``"via": "direct"``. Tools (when given a registry)
run without limits; records live in memory. It passes the RunContext conformance suite of
:mod:`orchestrator.testing` with ``ledger=False``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.context import ToolBudgetView
from orchestrator.llm.base import LLMClient
from orchestrator.tools.base import ToolResult
from orchestrator.tools.registry import ToolRegistry
from orchestrator.types import (
    LLMRequest,
    LLMResponse,
    Message,
    ProgramHints,
    SamplingOptions,
    Usage,
)

__all__ = ["DirectContext"]


@dataclass
class DirectContext:
    """:class:`~orchestrator.context.RunContext` without a ledger (passes its conformance suite
    with ``ledger=False``)."""

    llm: LLMClient
    run_id: str = "direct"
    config: dict[str, Any] = field(default_factory=dict)
    tools: ToolRegistry = field(default_factory=ToolRegistry)
    store: Any = None
    steps: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    num_calls: int = 0
    tool_units: dict[str, float] = field(default_factory=dict)
    records: dict[tuple[str, str], Any] = field(default_factory=dict)

    async def chat(
        self,
        messages: list[Message] | tuple[Message, ...],
        *,
        sampling: SamplingOptions | None = None,
        tool_name: str | None = None,
        is_last_step: bool = False,
        scope: str | None = None,
        purpose: str = "agent",
    ) -> LLMResponse:
        hints = ProgramHints(program_id=f"{self.run_id}-{self.num_calls}", is_last_step=is_last_step,
                             tool_name=tool_name)
        self.num_calls += 1
        response = await self.llm.complete(
            LLMRequest(messages=tuple(messages), sampling=sampling or SamplingOptions(), hints=hints)
        )
        self.usage = self.usage + response.usage
        return response

    async def call_tool(self, name: str, args: dict[str, Any], *, scope: str | None = None) -> ToolResult:
        self.tool_units[name] = self.tool_units.get(name, 0.0) + self.tools.units_for(name, args)
        return await self.tools.invoke(name, args)

    async def tool_budgets(self) -> list[ToolBudgetView]:
        return [ToolBudgetView(s.name, s.unit, self.tool_units.get(s.name, 0.0), None) for s in self.tools.specs()]

    async def record_step(self, node: str, data: dict[str, Any]) -> None:
        self.steps.append((node, data))

    async def put_record(self, namespace: str, key: str, data: Any) -> None:
        self.records[(namespace, key)] = data

    async def get_record(self, namespace: str, key: str) -> Any | None:
        return self.records.get((namespace, key))
