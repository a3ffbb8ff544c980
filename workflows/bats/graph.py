"""The BATS workflow graph: plan, attempt, verify, then another attempt or the judge.

    START -> plan -> attempt -> verify -+-> attempt   (CONTINUE / PIVOT, budget left)
                                        +-> judge -> END   (SUCCESS with early stop, any tool
                                                            budget exhausted, or max_attempts)

Each attempt is the shared agent loop with the Budget Tracker and the planning section; it sees
the checklist plan and the verifier's summaries of earlier attempts instead of their raw steps,
and spends what is left of the run's budget. The verifier's verdicts tick the plan's items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from workflows.bats.tracker import any_exhausted, tracker_block
from orchestrator.errors import BadInputError
from orchestrator.types import Message, SamplingOptions
from orchestrator.workflow import Workflow
from workflows.bats import prompts
from workflows.bats.agent import (
    DEFAULT_TOOLS,
    AgentConfig,
    LoopMode,
    attempt_stats,
    config_from_options,
    question_state,
    run_attempt,
)
from workflows.bats.planning import EXPLORE, apply_verdicts, default_plan, parse_plan, render_plan
from workflows.bats.selection import judge_select
from workflows.bats.trajectory import action_log, evidence_text
from workflows.bats.verifier import PIVOT, SUCCESS, Verification, verify

if TYPE_CHECKING:
    from langgraph.graph import StateGraph

    from orchestrator.context import RunContext

__all__ = ["BatsConfig", "attempt_notes", "bats_workflow"]


@dataclass(frozen=True)
class BatsConfig:
    """BATS's own options (the agent loop's are in AgentConfig; both come from the run options)."""

    max_attempts: int = 3
    """Attempts at most, whatever budget is left."""
    early_stop: bool = True
    """Stop at the first attempt the verifier calls SUCCESS (else keep going until the budget
    or max_attempts runs out, and let the judge choose)."""
    planner_max_tokens: int = 128
    """Output tokens of the planning call."""
    max_plan_items: int = 4
    """Constraints kept from the planner's reply."""
    verifier_max_tokens: int = 256
    """Output tokens of a verifier call (and of its repair)."""
    judge_max_tokens: int = 8
    """Output tokens of the judge call (it answers with a number)."""
    verifier_json_schema: bool = True
    """Send the verifier's JSON schema as a structured-output constraint (vLLM/OpenAI backends)."""
    agent_plan: str = "explore"
    """Plan items the agent sees: ``all``, ``explore`` (default) or ``none``. The verifier always
    checks every item. Default ``explore``: a small planner writes guessed answers into its
    verify items ("verify: they were both in The Beatles") and a small agent then searches the
    guess (seen with Qwen2.5-Coder-0.5B); the verify items stay the verifier's checklist."""
    max_evidence_chars: int = 600
    """Characters of each tool output the verifier reads."""


class BatsState(TypedDict, total=False):
    question: str
    plan: list[dict[str, Any]]
    current: dict[str, Any]
    attempts: list[dict[str, Any]]
    exhausted: bool
    answer: str
    selection: dict[str, Any]
    stats: dict[str, int]


_STAT_KEYS = (
    "num_attempts", "num_turns", "num_format_errors", "num_refused", "num_repeated",
    "num_verifier_calls", "num_invalid_json", "num_repaired", "num_defaulted", "num_truncated_json",
)


def attempt_notes(attempts: list[dict[str, Any]]) -> str:
    """What the next attempt is told about the earlier ones (in place of their trajectories)."""
    if not attempts:
        return ""
    lines = [prompts.SUMMARY_HEAD]
    for i, a in enumerate(attempts, start=1):
        log = a.get("actions", {})
        lines.append(f"Attempt {i}: answer {a['answer'] or '(none)'!r}, verifier said {a['decision']}.")
        if a.get("summary"):
            lines.append(f"  Summary: {a['summary']}")
        if log.get("search"):
            lines.append("  Searched: " + "; ".join(log["search"]))
        if log.get("browse"):
            lines.append("  Read: " + "; ".join(log["browse"]))
    last = attempts[-1]["decision"]
    lines.append(prompts.PIVOT_HINT if last == PIVOT else prompts.CONTINUE_HINT)
    return "\n".join(lines)


def _count(stats: dict[str, int], verification: Verification | None, attempt: dict[str, Any]) -> dict[str, int]:
    out = {k: stats.get(k, 0) for k in _STAT_KEYS}
    out["num_attempts"] += 1
    out["num_turns"] += attempt["num_turns"]
    out["num_format_errors"] += attempt["num_format_errors"]
    out["num_refused"] += attempt["num_refused"]
    out["num_repeated"] += attempt["num_repeated"]
    if verification is not None:
        out["num_verifier_calls"] += 1 + (verification.source in ("repaired", "default"))
        out["num_invalid_json"] += len(verification.errors)
        out["num_repaired"] += verification.source == "repaired"
        out["num_defaulted"] += verification.source == "default"
        out["num_truncated_json"] += verification.source == "truncated"
    return out


def bats_workflow() -> Workflow:
    """The registered ``bats`` workflow."""

    def build(ctx: RunContext) -> StateGraph:
        from langgraph.graph import END, START, StateGraph

        agent_config = config_from_options(AgentConfig, ctx.config)
        config = config_from_options(BatsConfig, ctx.config)
        mode = LoopMode(tracker=True)

        async def plan(state: BatsState) -> dict[str, Any]:
            reply = await ctx.chat(
                [Message("system", prompts.PLANNER_SYSTEM), Message("user", f"Question: {state['question']}")],
                sampling=SamplingOptions(max_tokens=config.planner_max_tokens, temperature=0.0),
                purpose="planner",
            )
            items = parse_plan(reply.text, config.max_plan_items) or default_plan()
            return {"plan": items, "attempts": [], "stats": {k: 0 for k in _STAT_KEYS}}

        if config.agent_plan not in ("all", "explore", "none"):
            raise BadInputError("option agent_plan", "all, explore or none", repr(config.agent_plan))

        async def attempt(state: BatsState) -> dict[str, Any]:
            shown = [] if config.agent_plan == "none" else [
                item for item in state["plan"] if config.agent_plan == "all" or item["kind"] == EXPLORE]
            notes = render_plan(shown) if shown else ""
            if earlier := attempt_notes(state["attempts"]):
                notes = f"{notes}\n\n{earlier}" if notes else earlier
            result = await run_attempt(
                ctx, state["question"], agent_config, mode,
                extra_system=prompts.PLANNING_SECTION, head_notes=notes, purpose="agent",
            )
            return {"current": dict(result)}

        async def check(state: BatsState) -> dict[str, Any]:
            current = state["current"]
            views = await ctx.tool_budgets()
            verification: Verification | None = None
            if current["answer"]:
                verification = await verify(
                    ctx,
                    question=state["question"],
                    constraints=[item["text"] for item in state["plan"]],
                    evidence=evidence_text(current["entries"], max_chars_per_output=config.max_evidence_chars),
                    answer=current["answer"],
                    budget=tracker_block(views, agent_config.tracker_config),
                    max_tokens=config.verifier_max_tokens,
                    json_schema=config.verifier_json_schema,
                )
                decision, verdicts = verification.decision, list(verification.verdicts)
                justification, summary = verification.justification, verification.summary
            else:
                decision, verdicts = PIVOT, []
                justification, summary = "the attempt ended without an answer", ""
            record = {
                "answer": current["answer"],
                "decision": decision,
                "verdicts": verdicts,
                "justification": justification,
                "summary": summary,
                "actions": action_log(current["entries"]),
                "verifier": verification.to_dict() if verification else None,
                **{k: v for k, v in attempt_stats(current).items() if k != "answer"},
            }
            await ctx.record_step("verify", {k: record[k] for k in ("answer", "decision", "verdicts", "justification")})
            return {
                "attempts": [*state["attempts"], record],
                "plan": apply_verdicts(state["plan"], verdicts),
                "exhausted": any_exhausted(views),
                "stats": _count(state["stats"], verification, current),
                "current": {},
            }

        def route(state: BatsState) -> str:
            last = state["attempts"][-1]
            if last["decision"] == SUCCESS and config.early_stop:
                return "judge"
            if state["exhausted"] or len(state["attempts"]) >= config.max_attempts:
                return "judge"
            return "attempt"

        async def judge(state: BatsState) -> dict[str, Any]:
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
        graph.add_conditional_edges("verify", route, {"attempt": "attempt", "judge": "judge"})
        graph.add_edge("judge", END)
        return graph

    def result(state: dict[str, Any]) -> dict[str, Any]:
        attempts = state.get("attempts", [])
        return {
            "answer": state.get("answer", ""),
            "plan": state.get("plan", []),
            "attempts": [
                {k: a[k] for k in ("answer", "decision", "verdicts", "justification", "stop")}
                for a in attempts
            ],
            "selection": state.get("selection", {}),
            "stats": state.get("stats", {}),
        }

    return Workflow(
        name="bats",
        build=build,
        initial_state=question_state,
        result=result,
        default_tools=DEFAULT_TOOLS,
        description="BATS: plan, budget-aware tool use, verify, continue or pivot, judge the attempts",
    )

