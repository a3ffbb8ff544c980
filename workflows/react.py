"""``react``: the baseline tool-using agent (reason, act, observe) under the budget ledger."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph

from orchestrator.errors import BudgetExhausted
from orchestrator.options import check_ranges, config_from_options
from orchestrator.types import Message, SamplingOptions
from orchestrator.workflow import Workflow
from workflows.actions import ANSWER, copies_example, fallback_answer, parse_actions, split_example_copies
from workflows.bats.agent import extract_phrase
from workflows.bats.config import ANSWER_MAX_WORDS, EXTRACT_MAX_TOKENS, READ_MAX_CHARS, READ_MAX_TOKENS
from workflows.bats.extraction import (
    judged_form,
    pick_reading,
    reading_messages,
    scored_answer,
    short_answer_sampling,
)

if TYPE_CHECKING:
    from orchestrator.context import RunContext

DEFAULT_MAX_TURNS = 6


@dataclass(frozen=True)
class ReactOptions:
    """Options of a ``react`` run."""

    max_turns: int = DEFAULT_MAX_TURNS
    """LLM turns before the agent must answer."""
    max_tokens: int = 48
    """Output tokens of one turn (one action line)."""
    yes_no_form: bool = False
    """Answer a yes/no question with the bare word (HotpotQA's judge credits only that, as BATS's option)."""
    answer_from: Literal["evidence", "agent"] = "evidence"
    """``evidence`` (default): the answer is read from every tool result of the run by one more
    call (the agent's own answer stands when the reading gives none or the budget cannot cover
    it; a read sentence is cut to its phrase by one more call), as in BATS's loop
    (:attr:`workflows.bats.config.AgentConfig.answer_from`); ``agent``: the agent's answer line.
    On the CPU (embedded SmolLM2-135M, the first 40 HotpotQA questions, the demo's budget)
    ``agent`` answered 0 right and ``evidence`` 2; on one H200 (Qwen2.5-Coder-0.5B, 200 questions)
    BATS's ReAct answered 4.5-5.5% from its line and 12-13% read."""
    read_max_chars: int = READ_MAX_CHARS
    """Characters of tool results the reading call sees (the first and the latest that fit)."""

    def __post_init__(self) -> None:
        check_ranges(self, max_turns=(1, None), max_tokens=(1, None), read_max_chars=(1, None))


SYSTEM = """You answer questions by searching an encyclopedia. Reply with exactly one line:
search: <keywords>  or  browse: <url>  or  answer: <short answer>
Always search before you answer."""

# A worked exchange as real turns: small models copy a demonstrated pattern far more reliably
# than they follow a described one.
DEMO: tuple[Message, ...] = (
    Message("user", "Question: Who designed the Eiffel Tower?"),
    Message("assistant", "search: Eiffel Tower designer"),
    Message("tool", "1. Eiffel Tower (wiki://Eiffel Tower): The tower was designed by the company of "
                    "Gustave Eiffel and built from 1887 to 1889.", name="search"),
    Message("assistant", "answer: Gustave Eiffel"),
)

EXAMPLE_COPIED = "That line is from the example about the Eiffel Tower. Act on this question."


class ReactState(TypedDict, total=False):
    question: str
    messages: list[dict[str, str]]
    turn: int
    pending: dict[str, str] | None
    last_tool: str | None
    answer: str | None
    stop_reason: str
    unparsed: int
    example_copies: int
    agent_answer: str | None


def _initial_state(task: dict[str, Any]) -> dict[str, Any]:
    question = task.get("question") or task.get("task") or task.get("input")
    if not question:
        from orchestrator.errors import BadInputError

        raise BadInputError("task", 'an object with a "question" field')
    return {"question": str(question), "messages": [], "turn": 0, "pending": None, "answer": None,
            "stop_reason": "", "unparsed": 0, "example_copies": 0}


def _result(state: dict[str, Any]) -> dict[str, Any]:
    return {"answer": state.get("answer"), "agent_answer": state.get("agent_answer", state.get("answer")),
            "turns": state.get("turn", 0), "stop_reason": state.get("stop_reason", ""),
            "unparsed_outputs": state.get("unparsed", 0), "example_copies": state.get("example_copies", 0)}


def _after_reply(state: ReactState, text: str, tool_names: list[str], *, last: bool,
                 yes_no_form: bool) -> dict[str, Any]:
    """The state update after the agent's reply ``text``: its action to run, or its answer.

    One action per turn; a reply with no action line is taken as the answer (documented fallback).
    Lines copied from the Eiffel Tower example are no actions and no answer (``copies_example``):
    a reply of only such lines is told so and gets another turn (none on the last turn).
    """
    question = state["question"]
    observed = "\n".join(m["content"] for m in state["messages"] if m["role"] == "tool")
    actions, copied = split_example_copies(parse_actions(text, tool_names), question, observed)
    update: dict[str, Any] = {"turn": state["turn"] + 1,
                              "messages": [*state["messages"], {"role": "assistant", "content": text.strip()}]}
    if copied:
        update["example_copies"] = state.get("example_copies", 0) + len(copied)
        if not actions and not last:
            update["messages"].append({"role": "user", "content": EXAMPLE_COPIED})
            return update
    action = actions[0] if actions else None
    if action is None:
        update["unparsed"] = state.get("unparsed", 0) + 1
    if action is not None and action.kind != ANSWER and not last:
        update["pending"] = {"tool": action.kind, "argument": action.value}
        return update
    if action is None:
        answer = fallback_answer(text)
        answer = "" if copies_example(answer, question, observed) else answer
    else:  # an answer, or a tool call the turn limit no longer allows
        answer = action.value if action.kind == ANSWER else ""
    answer = judged_form(question, answer, yes_no_form=yes_no_form)
    update.update(answer=answer or None, pending=None, stop_reason="answered" if answer else "turn_limit")
    return update


def build(ctx: RunContext) -> StateGraph:
    options = config_from_options(ReactOptions, ctx.config, what="react option")
    max_turns, max_tokens, yes_no_form = options.max_turns, options.max_tokens, options.yes_no_form
    tool_names = ctx.tools.names()

    async def agent(state: ReactState) -> dict[str, Any]:
        turn = state["turn"]
        last = turn >= max_turns - 1 or state.get("stop_reason") == "budget_exhausted"
        history = [Message(m["role"], m["content"], m.get("name")) for m in state["messages"]]  # type: ignore[arg-type]
        prompt = f"Question: {state['question']}"
        if last:
            prompt += "\nThis is your last turn: reply with answer: <short answer>."
        messages = [Message("system", SYSTEM), *DEMO, Message("user", prompt), *history]
        # The tool this turn will most likely wait on: the one the agent used last (hint only).
        previous_tool = state.get("last_tool")
        response = await ctx.chat(messages, sampling=SamplingOptions(max_tokens=max_tokens, stop=("\n",)),
                                  tool_name=previous_tool, is_last_step=last)
        update = _after_reply(state, response.text, tool_names, last=last, yes_no_form=yes_no_form)
        if update.get("stop_reason") and options.answer_from == "evidence":
            update = await _read_answer(ctx, state, update, options)
        record = {"turn": turn, "output": response.text, "action": update.get("pending"),
                  "answer": update.get("answer")}
        if not update.get("stop_reason") and not update.get("pending"):
            record["example_copied"] = True
        await ctx.record_step("agent", record)
        return update

    async def act(state: ReactState) -> dict[str, Any]:
        pending = state["pending"]
        assert pending is not None
        result = await ctx.call_tool(pending["tool"], pending["argument"])  # type: ignore[arg-type]
        observation = result.content[:1500]
        refused = bool(result.metadata.get("refused"))
        await ctx.record_step("tool", {"tool": pending["tool"], "argument": pending["argument"],
                                       "is_error": result.is_error, "observation": observation[:300]})
        messages = [*state["messages"], {"role": "tool", "content": observation, "name": pending["tool"],
                                         **({"refused": True} if refused else {})}]
        update: dict[str, Any] = {"messages": messages, "pending": None, "last_tool": pending["tool"]}
        if refused and await _all_tools_depleted(ctx):
            update["stop_reason"] = "budget_exhausted"
        return update

    def after_agent(state: ReactState) -> str:
        if state.get("pending"):
            return "act"
        # No tool and no answer: the turn copied the example and was told so.
        return END if state.get("stop_reason") else "agent"

    def after_act(state: ReactState) -> str:
        # Out of every tool budget: one last turn to answer from what was found.
        return "agent"

    g = StateGraph(ReactState)
    g.add_node("agent", agent)
    g.add_node("act", act)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", after_agent, ["act", "agent", END])
    g.add_conditional_edges("act", after_act, ["agent"])
    return g


async def _read_answer(ctx: RunContext, state: ReactState, update: dict[str, Any],
                       options: ReactOptions) -> dict[str, Any]:
    """``update`` with its answer read from the run's tool results (one call; none without a
    result). The agent's answer stands when the reading gives none of the question's kind or the
    token or dollar budget cannot cover the call."""
    results = [m["content"] for m in state["messages"] if m["role"] == "tool" and not m.get("refused")]
    if not results:
        return update
    question, agent_answer = state["question"], update.get("answer") or ""
    try:
        reply = await ctx.chat(list(reading_messages(question, results, options.read_max_chars)),
                               sampling=short_answer_sampling(READ_MAX_TOKENS), purpose="read")
    except BudgetExhausted:
        return {**update, "agent_answer": agent_answer}
    read = pick_reading(agent_answer, reply.text, question)
    answer, long = scored_answer(question, read, yes_no_form=options.yes_no_form, max_words=ANSWER_MAX_WORDS)
    if long and read != agent_answer:
        answer = await extract_phrase(ctx, question, answer, max_tokens=EXTRACT_MAX_TOKENS, purpose="extract")
    return {**update, "answer": answer or None, "agent_answer": agent_answer,
            "stop_reason": "answered" if answer else update["stop_reason"]}


async def _all_tools_depleted(ctx: RunContext) -> bool:
    views = await ctx.tool_budgets()
    limited = [v for v in views if v.limit is not None]
    return bool(limited) and all(v.remaining == 0 for v in limited)


WORKFLOW = Workflow(
    name="react",
    build=build,
    initial_state=_initial_state,
    result=_result,
    default_tools=("search", "browse"),
    description="ReAct baseline: search/browse tools under the budget ledger",
    option_types=(ReactOptions,),
)
