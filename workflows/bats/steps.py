"""The data of the agent loop's steps: its fixed setup, its state, what it observes and what it
asks for (data only; :mod:`workflows.bats.decide` holds the rules, :mod:`workflows.bats.agent`
performs the actions)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from orchestrator.context import ToolBudgetView
from orchestrator.types import Message, SamplingOptions
from workflows.actions import Action
from workflows.bats.config import AgentConfig, LoopMode
from workflows.bats.trajectory import Entry

__all__ = [
    "AttemptResult",
    "AttemptSetup",
    "CallLLM",
    "CallTools",
    "Finish",
    "LoopAction",
    "LoopState",
    "Observation",
    "Phase",
    "Replied",
    "Started",
    "ToolCall",
    "ToolOutput",
    "ToolsRan",
    "attempt_stats",
]

Phase = Literal["start", "turn", "tools", "final", "read", "extract", "done"]
"""What the loop waits for: the budgets at the start, the reply of a turn, the results of a
turn's tool calls, the reply of the final turn, the reply of the reading call, the reply of the
extraction call, nothing."""


@dataclass(frozen=True)
class AttemptSetup:
    """What one attempt is given and keeps for its whole length."""

    question: str
    config: AgentConfig
    mode: LoopMode
    tools: tuple[str, ...]
    """Names of the tools the agent may call (action lines of other keywords are skipped)."""
    arg_names: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Per tool, the parameter an action line's value goes to (``input`` when absent)."""
    extra_system: str = ""
    """Appended to the system prompt (BATS's planning section)."""
    head_notes: str = ""
    """Follows the question in the first user message (the plan, summaries of earlier attempts)."""
    observed_before: str = ""
    """What tool results of earlier attempts showed, as far as the example-copy guard reads it
    (their example words). The head notes do not count: the plan and the summaries are the
    model's own text, and a planner that copied the example must not make copying it fair."""
    seed: int | None = None
    """Sampling seed of the agent turns."""
    purpose: str = "agent"
    """Purpose of the attempt's LLM calls (and the name of its recorded step)."""


@dataclass(frozen=True)
class LoopState:
    """Everything an attempt has seen and decided so far."""

    phase: Phase = "start"
    first_views: tuple[ToolBudgetView, ...] = ()
    """The tool budgets as observed when the attempt started (policy prompt, turn cap)."""
    views: tuple[ToolBudgetView, ...] = ()
    """The tool budgets as last observed (at the start, then after each turn's tool calls)."""
    entries: tuple[Entry, ...] = ()
    """The trajectory (entries are never changed once added)."""
    done: frozenset[tuple[str, str]] = frozenset()
    """Tool actions run in this attempt (kind, normalised value): a repeat is not run again."""
    pending: tuple[tuple[Action, bool], ...] = ()
    """The tool actions of the turn being run, each with whether it is a repeat."""
    last_tool: str | None = None
    """The tool of the latest action (a hint for the serving layer)."""
    answer: str = ""
    """The answer candidate (the latest one given; after extraction, the answer to score)."""
    raw_answer: str = ""
    """The answer as given (read, or the agent's), before cleaning and extraction."""
    agent_answer: str = ""
    """The agent's own answer line (what the reading call may replace)."""
    results: tuple[str, ...] = ()
    """The tool results the attempt saw, each with its action and cut as the agent saw it (no
    repeats, no refusals, no tracker block): what the reading call reads."""
    num_reads: int = 0
    """Reading calls made (0 or 1)."""
    stop: str = "max_turns"
    """Why the loop ended: ``answered``, ``exhausted``, ``stale`` or ``max_turns``."""
    num_turns: int = 0
    num_format_errors: int = 0
    num_forcing: int = 0
    num_refused: int = 0
    num_repeated: int = 0
    num_extractions: int = 0
    num_cut_replies: int = 0
    """Replies cut at ``max_tokens``: a limit below what the prompt makes the model write."""
    num_format_errors_in_a_row: int = 0
    num_idle_turns: int = 0
    """Consecutive turns without a tool call (budget forcing stops at ``max_idle_turns``)."""
    num_stale_turns: int = 0
    """Consecutive turns whose tool actions were all repeats."""
    num_example_copies: int = 0
    """Actions that copied the worked example (``workflows.actions.copies_example``): not run."""
    asked_again: bool = False
    """The final answer copied the worked example and was asked for once more."""


@dataclass(frozen=True)
class Started:
    """The attempt begins; the tool budgets as they are now."""

    views: tuple[ToolBudgetView, ...]


@dataclass(frozen=True)
class Replied:
    """The text of the LLM's reply to the last :class:`CallLLM`."""

    text: str
    cut: bool = False
    """The reply ran into its ``max_tokens`` (finish reason ``length``)."""
    skipped: bool = False
    """The call was not made: the token or dollar budget could not cover an optional
    :class:`CallLLM` (the answer so far stands)."""


@dataclass(frozen=True)
class ToolOutput:
    """One tool call's result as the loop reads it."""

    content: str
    refused: bool = False
    """The ledger refused the call (the tool's budget is depleted)."""


@dataclass(frozen=True)
class ToolsRan:
    """The outputs of the last :class:`CallTools`, in order, and the budgets read once after them."""

    outputs: tuple[ToolOutput, ...]
    views: tuple[ToolBudgetView, ...]


Observation = Started | Replied | ToolsRan


@dataclass(frozen=True)
class CallLLM:
    """Ask the LLM."""

    messages: tuple[Message, ...]
    sampling: SamplingOptions
    purpose: str
    tool_name: str | None = None
    """The tool this turn will most likely wait on (a hint for the serving layer)."""
    is_last_step: bool = False
    optional: bool = False
    """The attempt keeps its answer without this call (the reading and extraction calls): when the
    token or dollar budget cannot cover it, the loop observes ``Replied("", skipped=True)``. A
    refused call that is not optional ends the attempt."""


@dataclass(frozen=True)
class ToolCall:
    tool: str
    args: Mapping[str, Any] = field(hash=False)


@dataclass(frozen=True)
class CallTools:
    """Run these tool calls one after the other, then read the tool budgets once."""

    calls: tuple[ToolCall, ...]


class AttemptResult(TypedDict):
    """What one attempt leaves in the graph state."""

    answer: str
    raw_answer: str
    agent_answer: str
    num_reads: int
    num_extractions: int
    entries: list[Entry]
    stop: str
    num_turns: int
    num_format_errors: int
    num_forcing: int
    num_refused: int
    num_repeated: int
    num_cut_replies: int
    num_example_copies: int


@dataclass(frozen=True)
class Finish:
    """The attempt is over: its result, and the step to record."""

    result: AttemptResult
    record: Mapping[str, Any] = field(hash=False)


LoopAction = CallLLM | CallTools | Finish


def attempt_stats(result: Mapping[str, Any]) -> dict[str, Any]:
    """The counters of an attempt (what a run's result reports, without the trajectory)."""
    return {k: v for k, v in result.items() if k != "entries"}
