"""What BATS decides between attempts (pure): the plan it starts from, what an attempt is told of
the earlier ones, the record of a verified attempt, and whether to attempt again or let the judge
choose. The graph (:mod:`workflows.bats.graph`) performs the calls and applies these."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypedDict

from orchestrator.context import ToolBudgetView
from workflows.actions import example_words
from workflows.bats import prompts
from workflows.bats.config import BatsConfig
from workflows.bats.planning import EXPLORE, PlanItem, apply_verdicts, default_plan, parse_plan, render_plan
from workflows.bats.steps import attempt_stats
from workflows.bats.tracker import any_exhausted
from workflows.bats.trajectory import action_log, tool_outputs
from workflows.bats.verifier import PIVOT, SUCCESS, Verification

__all__ = [
    "STAT_KEYS",
    "BatsState",
    "after_plan",
    "after_verification",
    "attempt_notes",
    "bats_result",
    "count_attempt",
    "head_notes",
    "next_node",
    "observed_before",
    "verify_step",
]

STAT_KEYS = (
    "num_attempts", "num_turns", "num_format_errors", "num_refused", "num_repeated", "num_cut_replies",
    "num_example_copies",
    "num_verifier_calls", "num_invalid_json", "num_repaired", "num_defaulted", "num_truncated_json",
)
"""The counters a BATS run reports, summed over its attempts."""


class BatsState(TypedDict, total=False):
    question: str
    plan: list[PlanItem]
    current: dict[str, Any]  # the attempt waiting for its verification
    attempts: list[dict[str, Any]]  # verified attempts, in order (see after_verification)
    exhausted: bool  # some tool budget was at 0 when the last attempt was verified
    answer: str
    selection: dict[str, Any]
    stats: dict[str, int]


def after_plan(reply: str, config: BatsConfig) -> dict[str, Any]:
    """The state after the planner's reply: its plan (or the default plan), no attempt yet."""
    plan = parse_plan(reply, config.max_plan_items) or default_plan()
    return {"plan": plan, "attempts": [], "stats": dict.fromkeys(STAT_KEYS, 0)}


def attempt_notes(attempts: Sequence[Mapping[str, Any]], *, pivot: bool = True) -> str:
    """What the next attempt is told about the earlier ones (in place of their trajectories);
    without ``pivot`` a PIVOT gets the CONTINUE hint (the pivot ablation)."""
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
    lines.append(prompts.PIVOT_HINT if last == PIVOT and pivot else prompts.CONTINUE_HINT)
    return "\n".join(lines)


def head_notes(plan: Sequence[PlanItem], attempts: Sequence[Mapping[str, Any]], config: BatsConfig) -> str:
    """What follows the question in an attempt's first message: the plan items the agent is
    shown (``config.agent_plan``) and the notes on earlier attempts."""
    shown = [] if config.agent_plan == "none" else [
        item for item in plan if config.agent_plan == "all" or item["kind"] == EXPLORE]
    notes = render_plan(shown) if shown else ""
    if earlier := attempt_notes(attempts, pivot=config.pivot):
        notes = f"{notes}\n\n{earlier}" if notes else earlier
    return notes


def observed_before(attempts: Sequence[Mapping[str, Any]]) -> str:
    """What the tool results of ``attempts`` showed, for the example-copy guard of the next one
    (``AttemptSetup.observed_before``)."""
    return " ".join(w for a in attempts for w in a.get("example_words", []))


def count_attempt(stats: Mapping[str, int], verification: Verification | None,
                  attempt: Mapping[str, Any]) -> dict[str, int]:
    """``stats`` with one more attempt (and its verifier calls) counted."""
    out = {k: stats.get(k, 0) for k in STAT_KEYS}
    out["num_attempts"] += 1
    for key in ("num_turns", "num_format_errors", "num_refused", "num_repeated", "num_cut_replies",
                "num_example_copies"):
        out[key] += attempt.get(key, 0)  # attempts checkpointed before a counter existed lack it
    if verification is not None:
        out["num_verifier_calls"] += 1 + (verification.source in ("repaired", "default"))
        out["num_invalid_json"] += len(verification.errors)
        out["num_repaired"] += verification.source == "repaired"
        out["num_defaulted"] += verification.source == "default"
        out["num_truncated_json"] += verification.source == "truncated"
    return out


def after_verification(state: BatsState, verification: Verification | None,
                       views: Sequence[ToolBudgetView], *, verifier: bool = True) -> dict[str, Any]:
    """The state update once the current attempt is verified (``verification`` is None for an
    attempt without an answer: it counts as PIVOT), with the budgets observed at that point.
    With ``verifier`` off (the ablation) nothing was verified: an answered attempt counts as
    SUCCESS."""
    current = state["current"]
    if verification is not None:
        decision, verdicts = verification.decision, list(verification.verdicts)
        justification, summary = verification.justification, verification.summary
    elif not verifier and current["answer"]:
        decision, verdicts = SUCCESS, []
        justification, summary = "not verified (verifier off): the answer is taken", ""
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
        "example_words": example_words("\n".join(tool_outputs(current["entries"]))),
        "verifier": verification.to_dict() if verification else None,
        **{k: v for k, v in attempt_stats(current).items() if k != "answer"},
    }
    return {
        "attempts": [*state["attempts"], record],
        "plan": apply_verdicts(state["plan"], verdicts),
        "exhausted": any_exhausted(views),
        "stats": count_attempt(state["stats"], verification, current),
        "current": {},
    }


def verify_step(record: Mapping[str, Any]) -> dict[str, Any]:
    """What is recorded of a verified attempt."""
    return {k: record[k] for k in ("answer", "decision", "verdicts", "justification")}


def next_node(state: BatsState, config: BatsConfig) -> Literal["attempt", "judge"]:
    """After a verification: the judge on SUCCESS (with ``early_stop``), on a budget at 0, or after
    ``max_attempts``; else another attempt (the verifier's CONTINUE or PIVOT)."""
    last = state["attempts"][-1]
    if last["decision"] == SUCCESS and config.early_stop:
        return "judge"
    if state["exhausted"] or len(state["attempts"]) >= config.max_attempts:
        return "judge"
    return "attempt"


def bats_result(state: Mapping[str, Any]) -> dict[str, Any]:
    """A run's result from the final graph state."""
    return {
        "answer": state.get("answer", ""),
        "plan": state.get("plan", []),
        "attempts": [
            {k: a.get(k) for k in ("answer", "agent_answer", "decision", "verdicts", "justification", "stop",
                                   "actions")}
            for a in state.get("attempts", [])
        ],
        "selection": state.get("selection", {}),
        "stats": state.get("stats", {}),
    }
