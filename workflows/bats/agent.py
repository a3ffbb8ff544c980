"""The one ReAct-style agent loop that BATS and its baselines share, run through a run context.

One call of :func:`run_attempt` is one attempt: the agent reads the question (plus whatever
notes the caller puts in front of it), issues ``search:``/``browse:`` lines, sees each tool
response (followed by the Budget Tracker block when ``mode.tracker``), and stops when it answers
or any tool budget is exhausted. The rules are the pure :func:`workflows.bats.decide.decide`;
this module performs its actions: every LLM call goes through ``ctx.chat`` and every tool call
through ``ctx.call_tool`` (the ledger refuses a depleted tool; the refusal comes back as an
observation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from orchestrator.errors import BadInputError, BudgetExhausted
from orchestrator.options import config_from_options
from orchestrator.workflow import Workflow
from workflows.bats.config import AgentConfig, LoopMode
from workflows.bats.decide import decide, turn_cap
from workflows.bats.extraction import (
    clean_answer,
    extract_over,
    extraction_messages,
    pick_extraction,
    scored_answer,
    short_answer_sampling,
)
from workflows.bats.steps import (
    AttemptResult,
    AttemptSetup,
    CallLLM,
    CallTools,
    Finish,
    LoopState,
    Observation,
    Replied,
    Started,
    ToolOutput,
    ToolsRan,
    attempt_stats,
)
from workflows.bats.trajectory import action_log, demo_messages, strip_demo

if TYPE_CHECKING:
    from langgraph.graph import StateGraph

    from orchestrator.context import RunContext

__all__ = [
    "DEFAULT_TOOLS",
    "AgentConfig",
    "AttemptResult",
    "LoopMode",
    "agent_workflow",
    "attempt_stats",
    "clean_answer",
    "demo_messages",
    "extract_phrase",
    "perform",
    "question_state",
    "run_attempt",
    "shorten_answer",
    "strip_demo",
    "turn_cap",
]

DEFAULT_TOOLS = ("search", "browse")


def _arg_name(ctx: RunContext, tool: str) -> str:
    """The parameter an action line's value goes to: the tool's first required parameter."""
    try:
        required = ctx.tools.get(tool).spec.parameters.get("required", [])
    except Exception:  # an unknown tool is reported by call_tool itself
        required = []
    return required[0] if required else "input"


async def shorten_answer(ctx: RunContext, question: str, answer: str, config: AgentConfig,
                         *, purpose: str = "agent") -> tuple[str, bool]:
    """(the answer to score, whether an extraction call was made). Answers of at most
    ``answer_max_words`` words are only cleaned; longer ones (a pasted passage, a sentence) get
    one extraction call (:func:`extract_phrase`)."""
    cleaned, long = scored_answer(question, answer, yes_no_form=config.yes_no_form, max_words=extract_over(config))
    if not long:
        return cleaned, False
    return await extract_phrase(ctx, question, cleaned, max_tokens=config.extract_max_tokens,
                                purpose=f"{purpose}_extract"), True


async def extract_phrase(ctx: RunContext, question: str, cleaned: str, *, max_tokens: int, purpose: str) -> str:
    """``cleaned`` (a long answer) cut to its answering phrase by the one extraction call, through
    ``ctx``; ``cleaned`` stays when the reply is no shorter phrase of the question's kind, or when
    the token or dollar budget cannot cover the call (the answer is never lost to the budget).
    BATS's attempt loop makes the same call as a :class:`CallLLM` of :func:`decide`."""
    try:
        reply = await ctx.chat(list(extraction_messages(question, cleaned)),
                               sampling=short_answer_sampling(max_tokens), purpose=purpose)
    except BudgetExhausted:
        return cleaned
    return pick_extraction(cleaned, reply.text, question)


async def perform(ctx: RunContext, action: CallLLM | CallTools) -> Observation:
    """Do what the loop asked, through ``ctx``, and return what was observed."""
    if isinstance(action, CallLLM):
        reply = await ctx.chat(list(action.messages), sampling=action.sampling, tool_name=action.tool_name,
                               is_last_step=action.is_last_step, purpose=action.purpose)
        return Replied(reply.text, cut=reply.finish_reason == "length")
    outputs = []
    for call in action.calls:
        result = await ctx.call_tool(call.tool, dict(call.args))
        outputs.append(ToolOutput(result.content, bool(result.metadata.get("refused"))))
    return ToolsRan(tuple(outputs), tuple(await ctx.tool_budgets()))


async def run_attempt(
    ctx: RunContext,
    question: str,
    config: AgentConfig,
    mode: LoopMode,
    *,
    extra_system: str = "",
    head_notes: str = "",
    observed_before: str = "",
    seed: int | None = None,
    purpose: str = "agent",
) -> AttemptResult:
    """Run one attempt of the agent loop and return its answer and trajectory.

    ``extra_system`` is appended to the system prompt (BATS's planning section), ``head_notes``
    follows the question in the first user message (the plan, summaries of earlier attempts),
    ``observed_before`` is what earlier attempts' tool results showed (``AttemptSetup``).
    Raises BudgetExhausted when the token or dollar budget cannot cover a call, except the
    reading and extraction calls: skipped, they leave the answer the attempt already has.
    """
    tools = tuple(ctx.tools.names())
    setup = AttemptSetup(question, config, mode, tools, {t: _arg_name(ctx, t) for t in tools},
                         extra_system=extra_system, head_notes=head_notes, observed_before=observed_before,
                         seed=seed, purpose=purpose)
    state = LoopState()
    observation: Observation = Started(tuple(await ctx.tool_budgets()))
    while True:
        state, action = decide(setup, state, observation)
        if isinstance(action, Finish):
            await ctx.record_step(purpose, dict(action.record))
            return action.result
        try:
            observation = await perform(ctx, action)
        except BudgetExhausted:
            if not (isinstance(action, CallLLM) and action.optional):
                raise
            observation = Replied("", skipped=True)


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
            return {"answer": result["answer"],
                    "stats": {**attempt_stats(result), "actions": action_log(result["entries"])}}

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
        option_types=(AgentConfig,),
    )
