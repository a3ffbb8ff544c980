"""Tool interface: a typed spec (JSON schema), a unit of account, a timeout."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolResult:
    """What a tool returns. ``content`` is what the agent sees; ``is_error`` marks failures
    (shown to the agent as an observation, never raised into the workflow)."""

    content: str
    is_error: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


UnitsFn = Callable[[dict[str, Any]], int]


def one_unit(_args: dict[str, Any]) -> int:
    return 1


@dataclass(frozen=True)
class ToolSpec:
    """A tool's contract.

    name: how agents call it.
    description: one line shown to the agent.
    parameters: JSON schema of the arguments (an object schema).
    unit: the unit of account the budget counts in (e.g. "query", "url", "call").
    units: how many units one call with these arguments costs (e.g. one per query string).
    timeout_s: wall-clock limit for one call; past it the agent sees a timeout observation.
    limits: what the tool declares it enforces on one call (CPU, memory, processes, isolation),
        shown in run reports.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    unit: str = "call"
    units: UnitsFn = one_unit
    timeout_s: float = 30.0
    limits: dict[str, Any] = field(default_factory=dict)


ToolFn = Callable[[dict[str, Any]], Awaitable[ToolResult]]


@dataclass(frozen=True)
class Tool:
    spec: ToolSpec
    fn: ToolFn

    @property
    def name(self) -> str:
        return self.spec.name
