"""How a workflow plugs into the runtime.

A workflow is a LangGraph ``StateGraph`` built against a :class:`~orchestrator.context.RunContext`.
The runtime compiles it with the checkpointer of the configured database, so runs resume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from langgraph.graph import StateGraph

    from orchestrator.context import RunContext


@dataclass(frozen=True)
class Workflow:
    """A registered workflow.

    name: what `quotaflow run NAME` takes.
    build: returns the (uncompiled) graph, its nodes closing over the run's context.
    initial_state: turns one task (a dataset row, or {"question": ...}) into the graph's input.
    result: extracts {"answer": ..., ...} from the final state for the store and the CLI.
    mode: "per_item" runs one program per dataset row; "dataset" hands all rows to one run
        (e.g. BatchPrompt, which packs many rows into each call).
    default_tools: tools enabled when the user names none.
    """

    name: str
    build: Callable[[RunContext], StateGraph]
    initial_state: Callable[[dict[str, Any]], dict[str, Any]]
    result: Callable[[dict[str, Any]], dict[str, Any]]
    mode: Literal["per_item", "dataset"] = "per_item"
    default_tools: tuple[str, ...] = ()
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
