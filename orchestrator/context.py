"""What a workflow's graph nodes use to reach the outside world during a run.

Every LLM call and tool call of a workflow goes through :class:`RunContext`, which
1. reserves the call against the budget ledger before dispatch (a call that would overspend
   raises :class:`~orchestrator.errors.BudgetExhausted` for LLM calls, or returns a refusal
   observation for tool calls),
2. dispatches it (LLM client / tool registry) with program hints,
3. settles the ledger with what was really used, records the call in the store and updates the
   Prometheus metrics,
4. journals the result under a key from the call's place in the graph (``orchestrator.journal``),
   so a resumed run replays a call that already completed instead of paying for it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.tools.base import ToolResult
from orchestrator.types import LLMResponse, Message, SamplingOptions

if TYPE_CHECKING:
    from orchestrator.llm.base import LLMClient
    from orchestrator.store.db import Store
    from orchestrator.tools.registry import ToolRegistry


@dataclass(frozen=True)
class ToolBudgetView:
    """Per-tool budget as the agent should see it (BATS's Budget Tracker reads this)."""

    tool: str
    unit: str
    used: float
    limit: float | None

    @property
    def remaining(self) -> float | None:
        return None if self.limit is None else max(self.limit - self.used, 0.0)


class RunContext(Protocol):
    """The handle a workflow gets for one run (``orchestrator.run_context.RuntimeContext`` in a run;
    ``orchestrator.testing.FakeRunContext`` in tests)."""

    run_id: str
    llm: LLMClient
    tools: ToolRegistry
    config: dict[str, Any]
    store: Store

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
        """One LLM call through ledger, store, metrics and the journal.

        ``tool_name`` is the tool the program will wait on after this turn, when known (a hint
        for the serving patch). ``scope`` charges an additional user-named budget scope (e.g. a
        thread). ``purpose`` labels the call in the store (agent, verifier, judge, probe...).
        Raises BudgetExhausted when the token or dollar budget cannot cover the call.
        """
        ...

    async def call_tool(self, name: str, args: dict[str, Any], *, scope: str | None = None) -> ToolResult:
        """One tool call through ledger, store, metrics and the journal.

        Never raises for tool failures, unknown tools, bad arguments or a depleted budget: the
        agent gets an error observation (``ToolResult.is_error``), and ``metadata["refused"]``
        is true when the ledger refused it.
        """
        ...

    async def tool_budgets(self) -> list[ToolBudgetView]:
        """Used and remaining units per tool for this run (journaled: a resumed run sees what the
        original saw at the same point)."""
        ...

    async def now(self) -> float:
        """Seconds since the epoch (journaled like :meth:`tool_budgets`); read the clock through
        this, not ``time.time()``, in code whose path depends on it."""
        ...

    async def record_step(self, node: str, data: dict[str, Any]) -> None:
        """Store a workflow step (trajectory entry) for ``quotaflow runs show``."""
        ...

    async def put_record(self, namespace: str, key: str, data: Any) -> None:
        """Keep a JSON value of this run under (``namespace``, ``key``), e.g. BatchPrompt's votes
        per round; writing the same key again (a resumed run) replaces it."""
        ...

    async def get_record(self, namespace: str, key: str) -> Any | None:
        """The value :meth:`put_record` kept, or None."""
        ...
