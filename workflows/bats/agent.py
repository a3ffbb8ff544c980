"""The one ReAct-style agent loop that BATS and its baselines share, parameterised by mode.

One call of :func:`run_attempt` is one attempt: the agent reads the question (plus whatever
notes the caller puts in front of it), issues ``search:``/``browse:`` lines, sees each tool
response (followed by the Budget Tracker block when ``mode.tracker``), and stops when it answers
or any tool budget is exhausted. Budget forcing (``mode.forcing``) tells it to keep using the
remaining budget each time it answers, until it has gone ``max_idle_turns`` turns without a tool.

Every LLM call goes through ``ctx.chat`` and every tool call through ``ctx.call_tool`` (the ledger
refuses a depleted tool; the refusal comes back as an observation).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from workflows.bats.tracker import TrackerConfig, any_exhausted, policy_prompt, tracker_block
from orchestrator.context import ToolBudgetView
from orchestrator.errors import BadInputError
from orchestrator.types import Message, SamplingOptions
from workflows.actions import ANSWER, Action, fallback_answer, parse_actions
from orchestrator.workflow import Workflow
from workflows.bats import prompts
from workflows.bats.trajectory import (
    Entry,
    action_log,
    assistant_entry,
    render_messages,
    tool_entry,
    truncate,
    user_entry,
)

if TYPE_CHECKING:
    from langgraph.graph import StateGraph

    from orchestrator.context import RunContext

__all__ = [
    "DEFAULT_TOOLS",
    "AgentConfig",
    "LoopMode",
    "agent_workflow",
    "clean_answer",
    "config_from_options",
    "demo_messages",
    "question_state",
    "run_attempt",
    "shorten_answer",
    "strip_demo",
    "turn_cap",
]

DEFAULT_TOOLS = ("search", "browse")

C = TypeVar("C")


def config_from_options(cls: type[C], options: Mapping[str, Any]) -> C:
    """Build the config dataclass ``cls`` from the run's options, taking only its own fields
    (the options also carry other keys, e.g. ``tools``) and checking their types."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in options:
            continue
        raw = options[f.name]
        default = f.default
        try:
            if isinstance(default, bool):
                if not isinstance(raw, bool):
                    raise TypeError(raw)
                values[f.name] = raw
            elif isinstance(default, (int, float)):
                values[f.name] = type(default)(raw)
            else:
                values[f.name] = raw
        except (TypeError, ValueError):
            raise BadInputError(
                f"option {f.name}", f"a {type(default).__name__}", f"got {raw!r}"
            ) from None
    return cls(**values)


@dataclass(frozen=True)
class AgentConfig:
    """Limits and sampling of one agent attempt (read from the run's options)."""

    max_turns: int = 0
    """LLM turns of one attempt before the agent is asked for its final answer; 0 (default):
    derived from the budget, the units left over all limited tools plus 2 (so the budget, not a
    turn cap, ends an agent that spends at least one unit per turn), at most ``max_turns_cap``."""
    max_turns_cap: int = 48
    """Upper bound of the derived turn cap (and the cap when no tool is limited)."""
    demo: bool = True
    """Show a worked two-search example exchange before the question (every method alike)."""
    short_answer: bool = True
    """Shorten a long final answer with one extraction call (the shortest answering span)."""
    answer_max_words: int = 5
    """Answers with more words than this get the extraction call."""
    extract_max_tokens: int = 24
    """Output tokens of the extraction call."""
    max_tokens: int = 128
    """Output tokens of one agent turn (action lines are short)."""
    temperature: float = 0.0
    """Sampling temperature of agent turns."""
    max_observation_chars: int = 1200
    """One tool output is cut to this many characters before the agent sees it."""
    keep_tool_outputs: int = 1
    """Tool outputs shown in full; older ones are replaced by a one-line stub."""
    max_actions_per_turn: int = 3
    """Tool actions executed from one reply (more lines are ignored)."""
    max_format_errors: int = 1
    """Replies without an action line that get a reminder of the format; the next such reply
    is taken as the answer."""
    max_stale_turns: int = 2
    """Consecutive turns whose tool actions were all repeats (nothing new ran) before the agent
    is asked for its final answer: a looping small model would otherwise spend the whole
    budget-derived turn cap on calls that cost no budget."""
    max_idle_turns: int = 5
    """Budget forcing: stop after this many consecutive turns without a tool call."""
    stop_when_any_exhausted: bool = True
    """End the attempt as soon as any tool budget reaches 0 (BATS's rule)."""
    high_at: float = 0.7
    """Budget Tracker: remaining fraction at or above which the regime is high."""
    medium_at: float = 0.3
    """Budget Tracker: remaining fraction at or above which the regime is medium."""
    low_at: float = 0.1
    """Budget Tracker: remaining fraction at or above which the regime is low (else critical)."""

    @property
    def tracker_config(self) -> TrackerConfig:
        return TrackerConfig(high_at=self.high_at, medium_at=self.medium_at, low_at=self.low_at)


@dataclass(frozen=True)
class LoopMode:
    """What distinguishes the baselines: the Budget Tracker and budget forcing."""

    tracker: bool = False
    """Show the budget policy on the first turn and the tracker block after every tool response."""
    forcing: bool = False
    """When the agent answers with budget left, tell it to keep using the budget."""


class AttemptResult(TypedDict):
    """What one attempt leaves in the graph state."""

    answer: str
    entries: list[Entry]
    stop: str
    num_turns: int
    num_format_errors: int
    num_forcing: int
    num_refused: int
    num_repeated: int
    num_extractions: int
    raw_answer: str


def _arg_name(ctx: RunContext, tool: str) -> str:
    """The parameter an action line's value goes to: the tool's first required parameter."""
    try:
        required = ctx.tools.get(tool).spec.parameters.get("required", [])
    except Exception:  # noqa: BLE001 - an unknown tool is reported by call_tool itself
        required = []
    return required[0] if required else "input"


def turn_cap(views: list[ToolBudgetView], config: AgentConfig) -> int:
    """Turns of one attempt: ``config.max_turns`` when set, else the units left over all limited
    tools plus 2 (one turn to answer, one spare), at most ``config.max_turns_cap``."""
    if config.max_turns > 0:
        return config.max_turns
    limited = [v.remaining or 0.0 for v in views if v.limit is not None]
    if not limited:
        return max(config.max_turns_cap, 1)
    return max(1, min(math.ceil(sum(limited)) + 2, config.max_turns_cap))


_ANSWER_PREFIX = re.compile(r"^\s*(?:final\s+)?(?:the\s+)?answer\s*(?:is)?\s*[:\-]?\s*", re.IGNORECASE)


def clean_answer(text: str) -> str:
    """An answer without its wrapping: first non-empty line, no ``answer:`` prefix, no quotes,
    brackets or trailing full stop."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = _ANSWER_PREFIX.sub("", line).strip()
    line = line.strip("\"'`*<> ").rstrip(".").strip()
    return line


async def shorten_answer(ctx: RunContext, question: str, answer: str, config: AgentConfig,
                         *, purpose: str = "agent") -> tuple[str, bool]:
    """(the answer to score, whether an extraction call was made). Answers of at most
    ``answer_max_words`` words are only cleaned; longer ones (a pasted passage, a sentence) get
    one extraction call asking for the shortest answering phrase. An empty or longer extraction
    keeps the cleaned original."""
    cleaned = clean_answer(answer)
    if not config.short_answer or not cleaned or len(cleaned.split()) <= config.answer_max_words:
        return cleaned, False
    reply = await ctx.chat(
        [Message("system", prompts.EXTRACT_SYSTEM),
         Message("user", prompts.EXTRACT_USER.format(question=question, answer=truncate(cleaned, 1500)))],
        sampling=SamplingOptions(max_tokens=config.extract_max_tokens, temperature=0.0, stop=("\n",)),
        purpose=f"{purpose}_extract",
    )
    short = clean_answer(reply.text)
    if short and len(short) < len(cleaned):
        return short, True
    return cleaned, True


def demo_messages() -> list[Message]:
    """The worked example exchange shown before the question (see ``prompts.DEMO_TURNS``)."""
    out = [Message("user", f"{prompts.DEMO_QUESTION}\n\n{prompts.NEXT_ACTION}")]
    for role, content in prompts.DEMO_TURNS:
        out.append(Message(role, content, "search" if role == "tool" else None))  # type: ignore[arg-type]
    return out


def strip_demo(messages: Sequence[Message]) -> list[Message]:
    """``messages`` without the demo exchange (for rule clients and tests reading the context)."""
    demo = {(m.role, m.content) for m in demo_messages()}
    return [m for m in messages if (m.role, m.content) not in demo]


def _left_text(views: list[ToolBudgetView]) -> str:
    return ", ".join(f"{v.tool}: {v.remaining:g} left" for v in views if v.remaining is not None) or "no limit"


def _key(action: Action) -> tuple[str, str]:
    return action.kind, " ".join(action.value.lower().split())


async def _execute(
    ctx: RunContext, actions: list[Action], config: AgentConfig, mode: LoopMode, done: set[tuple[str, str]]
) -> tuple[Entry, list[ToolBudgetView], int, int]:
    """Run the tool actions of one reply; an action already done in this attempt is not repeated
    (small models loop on one query) and costs nothing. Returns (entry, views, refused, repeated)."""
    parts, num_refused, num_repeated = [], 0, 0
    for action in actions:
        key = _key(action)
        if key in done:
            num_repeated += 1
            parts.append(f"[{action.kind}: {action.value}]\n{prompts.REPEATED}")
            continue
        done.add(key)
        result = await ctx.call_tool(action.kind, {_arg_name(ctx, action.kind): action.value})
        num_refused += bool(result.metadata.get("refused"))
        parts.append(f"[{action.kind}: {action.value}]\n{truncate(result.content, config.max_observation_chars)}")
    views = await ctx.tool_budgets()
    content = "\n\n".join(parts)
    if mode.tracker:
        content += "\n" + tracker_block(views, config.tracker_config)
    names = {a.kind for a in actions}
    # The stub must not read like an action line, or small models copy it as their next action.
    stub = "(earlier output of " + ", ".join(f'{a.kind} "{a.value}"' for a in actions) + " removed)"
    entry = tool_entry(names.pop() if len(names) == 1 else "tools", content, stub)
    return entry, views, num_refused, num_repeated


async def run_attempt(
    ctx: RunContext,
    question: str,
    config: AgentConfig,
    mode: LoopMode,
    *,
    extra_system: str = "",
    head_notes: str = "",
    seed: int | None = None,
    purpose: str = "agent",
) -> AttemptResult:
    """Run one attempt of the agent loop and return its answer and trajectory.

    ``extra_system`` is appended to the system prompt (BATS's planning section), ``head_notes``
    follows the question in the first user message (the plan, summaries of earlier attempts).
    Raises BudgetExhausted when the token or dollar budget cannot cover a call.
    """
    tools = ctx.tools.names()
    views = await ctx.tool_budgets()
    system = prompts.AGENT_SYSTEM
    if mode.tracker:
        system += "\n\n" + policy_prompt(views, config.tracker_config)
    if extra_system:
        system += "\n\n" + extra_system
    # The format reminder goes last: small models follow the most recent instruction best.
    head = f"Question: {question}" + (f"\n\n{head_notes}" if head_notes else "") + f"\n\n{prompts.NEXT_ACTION}"
    sampling = SamplingOptions(max_tokens=config.max_tokens, temperature=config.temperature, seed=seed)
    entries: list[Entry] = []
    answer, stop = "", "max_turns"
    num_turns = num_format_errors = num_forcing = num_refused = num_repeated = 0
    done: set[tuple[str, str]] = set()
    bad_in_a_row = idle = stale = 0
    last_tool: str | None = None
    demo = demo_messages() if config.demo else []

    def render() -> list[Message]:
        rendered = render_messages(system, head, entries, keep_tool_outputs=config.keep_tool_outputs)
        return [rendered[0], *demo, *rendered[1:]]

    for _ in range(turn_cap(views, config)):
        if config.stop_when_any_exhausted and any_exhausted(views):
            stop = "exhausted"
            break
        messages = render()
        # Hint for the serving layer: the tool this turn will most likely wait on is the last one used.
        reply = await ctx.chat(messages, sampling=sampling, tool_name=last_tool, purpose=purpose)
        num_turns += 1
        actions = parse_actions(reply.text, tools)
        tool_actions = [a for a in actions if a.kind != ANSWER][: config.max_actions_per_turn]
        answers = [a for a in actions if a.kind == ANSWER]
        if answers and tool_actions and all(_key(a) in done for a in tool_actions):
            # Small models re-emit the whole pattern (same search, same browse, then the answer):
            # nothing new would run, so the answer line is what the reply says.
            tool_actions = []
        if tool_actions:
            entries.append(assistant_entry(reply.text, [(a.kind, a.value) for a in tool_actions]))
            entry, views, refused, repeated = await _execute(ctx, tool_actions, config, mode, done)
            last_tool = tool_actions[-1].kind
            if repeated == len(tool_actions):
                # Nothing new ran: a plain note, so the last real tool output stays in full view.
                entry = user_entry(entry["content"])
                stale += 1
            else:
                stale = 0
            entries.append(entry)
            num_refused += refused
            num_repeated += repeated
            bad_in_a_row = idle = 0
            if stale >= config.max_stale_turns:
                stop = "stale"
                break
            continue
        idle += 1
        if not answers:
            num_format_errors += 1
            bad_in_a_row += 1
            if bad_in_a_row <= config.max_format_errors or not fallback_answer(reply.text):
                entries.append(assistant_entry(reply.text))
                entries.append(user_entry(prompts.FORMAT_NUDGE))
                continue
            answers = [Action(ANSWER, fallback_answer(reply.text))]
        bad_in_a_row = 0
        answer = answers[-1].value
        entries.append(assistant_entry(reply.text, [(ANSWER, answer)]))
        budget_left = not any_exhausted(views) and any(v.remaining is None or v.remaining > 0 for v in views)
        if mode.forcing and budget_left and idle < config.max_idle_turns:
            entries.append(user_entry(prompts.FORCING.format(left=_left_text(views))))
            num_forcing += 1
            continue
        stop = "answered"
        break
    else:
        # Forcing ends on max_turns with an answer in hand; that answer stands.
        if answer and mode.forcing and entries and entries[-1]["role"] == "user":
            stop = "answered"

    if stop != "answered":
        entries.append(user_entry(prompts.FINAL_TURN if stop == "exhausted" else prompts.MAX_TURNS_REACHED))
        messages = render()
        reply = await ctx.chat(messages, sampling=sampling, is_last_step=True, purpose=purpose)
        num_turns += 1
        parsed = parse_actions(reply.text, tools)
        final = [a.value for a in parsed if a.kind == ANSWER]
        if final:
            last = final[-1]
        elif parsed:
            # Asked to answer, the agent still calls a tool: what it wanted to look up (a page
            # title, keywords) is its best guess, not the raw "browse: wiki://..." line.
            last = parsed[-1].value.removeprefix("wiki://")
        else:
            last = fallback_answer(reply.text)
        # An explicit final answer wins; else an earlier answer (forcing), else the best guess.
        answer = last if final else (answer or last)
        entries.append(assistant_entry(reply.text, [(ANSWER, answer)] if answer else []))

    raw_answer = answer
    answer, extracted = await shorten_answer(ctx, question, answer, config, purpose=purpose)
    result = AttemptResult(
        answer=answer,
        raw_answer=raw_answer,
        num_extractions=int(extracted),
        entries=entries,
        stop=stop,
        num_turns=num_turns,
        num_format_errors=num_format_errors,
        num_forcing=num_forcing,
        num_refused=num_refused,
        num_repeated=num_repeated,
    )
    await ctx.record_step(
        purpose,
        {"answer": answer, "raw_answer": raw_answer, "stop": stop, "num_turns": num_turns, "actions": action_log(entries)},
    )
    return result


def attempt_stats(result: AttemptResult) -> dict[str, Any]:
    """The counters of an attempt (what a run's result reports, without the trajectory)."""
    return {k: v for k, v in result.items() if k != "entries"}


def question_state(task: Mapping[str, Any]) -> dict[str, Any]:
    """Graph input from a task: only the question (a dataset row's gold answer stays out)."""
    question = task.get("question")
    if not isinstance(question, str) or not question.strip():
        raise BadInputError("task", 'an object with a non-empty "question" string', f"got keys {sorted(task)}")
    return {"question": question.strip()}


class _AgentState(TypedDict, total=False):
    question: str
    answer: str
    stats: dict[str, Any]


def agent_workflow(name: str, mode: LoopMode, *, description: str = "") -> Workflow:
    """A one-attempt workflow over the shared loop (ReAct, ReAct + Budget Tracker, forcing)."""

    def build(ctx: RunContext) -> StateGraph:
        from langgraph.graph import END, START, StateGraph

        config = config_from_options(AgentConfig, ctx.config)

        async def agent(state: _AgentState) -> dict[str, Any]:
            result = await run_attempt(ctx, state["question"], config, mode)
            return {"answer": result["answer"], "stats": attempt_stats(result)}

        graph = StateGraph(_AgentState)
        graph.add_node("agent", agent)
        graph.add_edge(START, "agent")
        graph.add_edge("agent", END)
        return graph

    return Workflow(
        name=name,
        build=build,
        initial_state=question_state,
        result=lambda state: {"answer": state.get("answer", ""), "stats": state.get("stats", {})},
        default_tools=DEFAULT_TOOLS,
        description=description,
    )
