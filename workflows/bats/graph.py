"""The BATS workflow graph: plan, attempt, verify, then another attempt or the judge.

    START -> plan -> attempt -> verify -+-> attempt   (CONTINUE / PIVOT, budget left)
                                        +-> judge -> END   (SUCCESS with early stop, any tool
                                                            budget exhausted, or max_attempts)

Each attempt is the shared agent loop with the Budget Tracker and the planning section; it sees
the checklist plan and the verifier's summaries of earlier attempts instead of their raw steps,
and spends what is left of the run's budget. The verifier's verdicts tick the plan's items. The
decisions are in :mod:`workflows.bats.attempts`; the nodes only make the calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.options import config_from_options
from orchestrator.types import Message, SamplingOptions
from orchestrator.workflow import Workflow
from workflows.bats import prompts
from workflows.bats.agent import DEFAULT_TOOLS, question_state, run_attempt
from workflows.bats.attempts import (
    BatsState,
    after_plan,
    after_verification,
    attempt_notes,
    bats_result,
    head_notes,
    next_node,
    observed_before,
    verify_step,
)
from workflows.bats.attempts import count_attempt as _count  # noqa: F401 - the name tests read here
from workflows.bats.config import AgentConfig, BatsConfig, LoopMode
from workflows.bats.selection import judge_select, vote_select
from workflows.bats.tracker import tracker_block
from workflows.bats.trajectory import evidence_text
from workflows.bats.verifier import verify

if TYPE_CHECKING:
    from langgraph.graph import StateGraph

    from orchestrator.context import RunContext

__all__ = ["BatsConfig", "BatsState", "attempt_notes", "bats_workflow"]


def bats_workflow() -> Workflow:
    """The registered ``bats`` workflow."""

    def build(ctx: RunContext) -> StateGraph:
        from langgraph.graph import END, START, StateGraph

        agent_config = config_from_options(AgentConfig, ctx.config)
        config = config_from_options(BatsConfig, ctx.config)

        async def plan(state: BatsState) -> dict[str, Any]:
            reply = await ctx.chat(
                [Message("system", prompts.PLANNER_SYSTEM), Message("user", f"Question: {state['question']}")],
                sampling=SamplingOptions(max_tokens=config.planner_max_tokens, temperature=0.0),
                purpose="planner",
            )
            return after_plan(reply.text, config)

        async def attempt(state: BatsState) -> dict[str, Any]:
            # The planning section tells the agent to work from the plan: only when it is shown one.
            planning = prompts.PLANNING_SECTION if config.agent_plan != "none" else ""
            result = await run_attempt(
                ctx, state["question"], agent_config, LoopMode(tracker=True), extra_system=planning,
                head_notes=head_notes(state["plan"], state["attempts"], config),
                observed_before=observed_before(state["attempts"]), purpose="agent",
            )
            return {"current": dict(result)}

        async def check(state: BatsState) -> dict[str, Any]:
            current, views = state["current"], await ctx.tool_budgets()
            verification = await verify(
                ctx, question=state["question"], constraints=[item["text"] for item in state["plan"]],
                evidence=evidence_text(current["entries"], max_chars_per_output=config.max_evidence_chars),
                answer=current["answer"], budget=tracker_block(views, agent_config.tracker_config),
                max_tokens=config.verifier_max_tokens, json_schema=config.verifier_json_schema,
            ) if current["answer"] and config.verifier else None
            update = after_verification(state, verification, views, verifier=config.verifier)
            await ctx.record_step("verify", verify_step(update["attempts"][-1]))
            return update

        async def judge(state: BatsState) -> dict[str, Any]:
            if config.selection == "vote":
                answer, selection = vote_select(state["attempts"])
            else:
                answer, selection = await judge_select(
                    ctx, state["question"], state["attempts"], max_tokens=config.judge_max_tokens
                )
            return {"answer": answer, "selection": selection}

        graph = StateGraph(BatsState)
        graph.add_node("plan", plan)
        graph.add_node("attempt", attempt)
        graph.add_node("verify", check)
        graph.add_node("judge", judge)
        graph.add_edge(START, "plan")
        graph.add_edge("plan", "attempt")
        graph.add_edge("attempt", "verify")
        graph.add_conditional_edges("verify", lambda state: next_node(state, config),
                                    {"attempt": "attempt", "judge": "judge"})
        graph.add_edge("judge", END)
        return graph

    return Workflow(
        name="bats",
        build=build,
        initial_state=question_state,
        result=bats_result,
        default_tools=DEFAULT_TOOLS,
        description="BATS: plan, budget-aware tool use, verify, continue or pivot, judge the attempts",
        option_types=(BatsConfig, AgentConfig),
    )
