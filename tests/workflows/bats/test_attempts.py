"""BATS's decisions between attempts, pure: what an attempt is shown, the record of a verified
attempt, and whether to attempt again or judge."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.context import ToolBudgetView
from workflows.bats import prompts
from workflows.bats.attempts import (
    BatsState,
    after_plan,
    after_verification,
    head_notes,
    next_node,
    observed_before,
)
from workflows.bats.config import BatsConfig
from workflows.bats.verifier import Verification

PLAN = [{"kind": "explore", "text": "find the designer", "status": "pending"},
        {"kind": "verify", "text": "they were both in The Beatles", "status": "pending"}]


def attempt(answer: str = "Dijon", **extra: Any) -> dict[str, Any]:
    return {"answer": answer, "raw_answer": answer, "num_extractions": 0, "stop": "answered", "num_turns": 2,
            "num_format_errors": 1, "num_forcing": 0, "num_refused": 0, "num_repeated": 1,
            "entries": [{"role": "assistant", "content": "search: x", "actions": [["search", "x"]]}], **extra}


def test_planner_reply_without_items_gets_the_default_plan() -> None:
    state = after_plan("no plan here", BatsConfig())
    assert [p["kind"] for p in state["plan"]] == ["explore", "verify"] and state["attempts"] == []
    assert set(state["stats"].values()) == {0}


@pytest.mark.parametrize(("agent_plan", "shown"), [("explore", ["find the designer"]),
                                                   ("all", ["find the designer", "The Beatles"]), ("none", [])])
def test_head_shows_the_chosen_plan_items_and_earlier_attempts(agent_plan: str, shown: list[str]) -> None:
    notes = head_notes(PLAN, [], BatsConfig(agent_plan=agent_plan))  # type: ignore[arg-type]
    assert all(s in notes for s in shown) and ("The Beatles" in notes) == ("The Beatles" in shown)
    earlier = [{"answer": "Paris", "decision": "PIVOT", "summary": "wrong city", "actions": {"search": ["x"]}}]
    notes = head_notes(PLAN, earlier, BatsConfig(agent_plan=agent_plan))  # type: ignore[arg-type]
    assert "Attempt 1: answer 'Paris', verifier said PIVOT." in notes and notes.endswith(prompts.PIVOT_HINT)


def test_the_next_attempt_sees_the_example_words_earlier_tool_results_showed_not_the_agents_text() -> None:
    current = attempt(entries=[
        {"role": "assistant", "content": "search: Eiffel designer", "actions": [["search", "Eiffel designer"]]},
        {"role": "tool", "content": "The founder moved to Dijon in 1887."},
    ])
    state = BatsState(question="q", plan=PLAN, attempts=[], stats={}, current=current)
    update = after_verification(state, None, [ToolBudgetView("search", "query", 1, 5)])
    assert update["attempts"][-1]["example_words"] == ["1887", "dijon"]  # not "eiffel": the agent wrote it
    assert observed_before(update["attempts"]) == "1887 dijon"
    assert observed_before([{"answer": "x"}]) == ""  # attempts checkpointed before the field


def test_verified_attempt_is_recorded_ticks_the_plan_and_counts() -> None:
    state = BatsState(question="q", plan=PLAN, attempts=[], stats={}, current=attempt())
    verification = Verification("CONTINUE", ("satisfied", "contradicted"), "j", "s", source="repaired", errors=("e",))
    update = after_verification(state, verification, [ToolBudgetView("search", "query", 1, 5)])
    record = update["attempts"][-1]
    assert (record["decision"], record["verdicts"], record["actions"]) == ("CONTINUE", ["satisfied", "contradicted"],
                                                                          {"search": ["x"]})
    assert [p["status"] for p in update["plan"]] == ["satisfied", "contradicted"] and not update["exhausted"]
    stats = update["stats"]
    assert (stats["num_attempts"], stats["num_verifier_calls"], stats["num_repaired"], stats["num_invalid_json"]) == (
        1, 2, 1, 1)
    assert stats["num_turns"] == 2 and stats["num_repeated"] == 1 and update["current"] == {}


def test_attempt_without_answer_is_a_pivot_without_a_verifier_call() -> None:
    state = BatsState(question="q", plan=PLAN, attempts=[], stats={}, current=attempt(""))
    update = after_verification(state, None, [ToolBudgetView("search", "query", 5, 5)])
    assert update["attempts"][-1]["decision"] == "PIVOT" and update["exhausted"]
    assert update["stats"]["num_verifier_calls"] == 0


@pytest.mark.parametrize(("decision", "exhausted", "num_attempts", "config", "expected"), [
    ("SUCCESS", False, 1, BatsConfig(), "judge"),
    ("SUCCESS", False, 1, BatsConfig(early_stop=False), "attempt"),
    ("CONTINUE", True, 1, BatsConfig(), "judge"),
    ("PIVOT", False, 3, BatsConfig(max_attempts=3), "judge"),
    ("PIVOT", False, 2, BatsConfig(max_attempts=3), "attempt"),
])
def test_next_node(decision: str, exhausted: bool, num_attempts: int, config: BatsConfig, expected: str) -> None:
    state = BatsState(attempts=[{"decision": decision}] * num_attempts, exhausted=exhausted)
    assert next_node(state, config) == expected
