"""The BATS graph on a fake RunContext: plan, attempts, verifier repair/default, summary in place
of the raw trajectory, stop rules, judge."""

from __future__ import annotations

import asyncio
from typing import Any

from orchestrator import workflow as workflows
from orchestrator.types import Message
from workflows.bats.agent import strip_demo

VALID_CONTINUE = ('{"verdicts": ["satisfied", "unverifiable"], "decision": "CONTINUE", '
                  '"justification": "birthplace unchecked", "summary": "Architect is Gustave Eiffel."}')
VALID_SUCCESS = ('{"verdicts": ["satisfied", "satisfied"], "decision": "SUCCESS", '
                 '"justification": "page says Dijon", "summary": "Confirmed Dijon."}')

QUESTION = "Where was the Eiffel Tower's designer born?"  # the demo's subject: its words are fair here


def n_obs(messages: list[Message]) -> int:
    return sum(1 for m in strip_demo(messages) if m.role == "tool")


def run_bats(ctx: Any, question: str = "Where was the Eiffel Tower's architect born?") -> dict[str, Any]:
    wf = workflows.get("bats")
    graph = wf.build(ctx).compile()
    state = asyncio.run(graph.ainvoke(wf.initial_state({"question": question, "answer": "GOLD"})))
    return wf.result(state)


def scripted(verifier_replies: list[str], judge_reply: str = "2"):  # type: ignore[no-untyped-def]
    verifier = iter(verifier_replies)

    def reply(purpose: str, messages: list[Message]) -> str:
        if purpose == "planner":
            return "explore: who designed the Eiffel Tower\nverify: the birthplace of that architect"
        if purpose == "verifier":
            return next(verifier)
        if purpose == "judge":
            return judge_reply
        second_attempt = "Notes from earlier attempts" in messages[1].content
        if not second_attempt:
            return ["search: eiffel tower architect", "answer: Paris"][min(n_obs(messages), 1)]
        return ["browse: wiki://Gustave Eiffel", "answer: Dijon"][min(n_obs(messages), 1)]

    return reply


def test_continue_rewrites_context_then_success_and_judge_picks(make_ctx) -> None:
    # The agent is shown the explore items here (the default shows none: test_bats_harness).
    ctx = make_ctx(scripted(["not json at all", VALID_CONTINUE, VALID_SUCCESS], judge_reply="2"),
                   agent_plan="explore")
    result = run_bats(ctx)
    assert ctx.purposes() == [
        "planner",
        "agent",
        "agent",
        "verifier",
        "verifier",
        "agent",
        "agent",
        "verifier",
        "judge",
    ]
    assert result["answer"] == "Dijon"
    assert [a["decision"] for a in result["attempts"]] == ["CONTINUE", "SUCCESS"]
    assert result["selection"]["method"] == "judge"
    stats = result["stats"]
    assert stats["num_verifier_calls"] == 3 and stats["num_invalid_json"] == 1
    assert stats["num_repaired"] == 1 and stats["num_defaulted"] == 0 and stats["num_attempts"] == 2
    # The plan is in the state, classified, and ticked by the verdicts.
    assert [(p["kind"], p["status"]) for p in result["plan"]] == [("explore", "satisfied"), ("verify", "satisfied")]
    # Attempt 2 starts from the plan and the verifier's summary, not attempt 1's raw trajectory.
    second = next(c for c in ctx.calls if c.purpose == "agent" and "Notes from earlier" in c.messages[1].content)
    head = second.messages[1].content
    assert len(second.messages) == 2
    assert "Architect is Gustave Eiffel." in head and "Searched: eiffel tower architect" in head
    assert "(explore) who designed the Eiffel Tower" in head and "[x] 1." in head
    assert "Results for" not in "\n".join(m.content for m in second.messages)
    assert "The last lead looked right" in head
    # The repair request quotes the parse error; the gold answer never reaches a prompt.
    repair = [c for c in ctx.calls if c.purpose == "verifier"][1].messages[-1].content
    assert "no JSON object found" in repair
    assert all("GOLD" not in m.content for c in ctx.calls for m in c.messages)
    assert "Plan (" in ctx.calls[1].messages[1].content and "explore" in ctx.calls[1].messages[0].content


def test_selection_by_vote_asks_no_judge_and_a_tie_goes_to_the_first_attempt(make_ctx) -> None:
    ctx = make_ctx(scripted([VALID_CONTINUE, VALID_SUCCESS], judge_reply="2"), selection="vote")
    result = run_bats(ctx)
    assert [a["answer"] for a in result["attempts"]] == ["Paris", "Dijon"]
    assert result["answer"] == "Paris" and "judge" not in ctx.purposes()
    assert result["selection"] == {"method": "vote", "num_candidates": 2, "choice": 0}


def test_unreadable_verifier_falls_back_to_default_and_answer_survives(make_ctx) -> None:
    ctx = make_ctx(scripted(["garbage", "still garbage"]), max_attempts=1)
    result = run_bats(ctx)
    assert result["answer"] == "Paris"
    assert result["attempts"][0]["decision"] == "CONTINUE"
    assert result["stats"]["num_defaulted"] == 1 and result["stats"]["num_invalid_json"] == 2
    assert result["selection"]["method"] == "unanimous" and "judge" not in ctx.purposes()


def test_exhausted_budget_stops_attempts_and_judge_never_returns_nothing(make_ctx) -> None:
    ctx = make_ctx(scripted([VALID_CONTINUE, VALID_CONTINUE], judge_reply="I cannot tell"),
                   {"search": 1, "browse": 1}, max_attempts=5)
    result = run_bats(ctx)
    # Attempt 1 spends the only search (loop stops: a budget hit 0), so no second attempt.
    assert result["stats"]["num_attempts"] == 1
    assert result["answer"] == "Paris"
    assert ctx.used == {"search": 1}


def test_early_stop_off_keeps_going_after_success(make_ctx) -> None:
    ctx = make_ctx(scripted([VALID_SUCCESS, VALID_SUCCESS], judge_reply="nonsense"), early_stop=False, max_attempts=2)
    result = run_bats(ctx)
    assert result["stats"]["num_attempts"] == 2
    # Judge reply unusable: fallback prefers a SUCCESS, the latest one.
    assert result["selection"]["method"] == "fallback" and result["answer"] == "Dijon"


def test_early_stop_on_ends_at_first_success(make_ctx) -> None:
    ctx = make_ctx(scripted([VALID_SUCCESS]))
    result = run_bats(ctx)
    assert result["stats"]["num_attempts"] == 1 and result["answer"] == "Paris"
    assert ctx.purposes().count("verifier") == 1


def test_baselines_share_the_loop(make_ctx) -> None:
    def reply(purpose: str, messages: list[Message]) -> str:
        return "search: q" if not n_obs(messages) else "answer: Dijon"

    for name in ("tracker", "forcing", "parallel"):
        ctx = make_ctx(reply, {"search": 10, "browse": 10}, num_samples=3, max_idle_turns=2)
        wf = workflows.get(name)
        state = asyncio.run(wf.build(ctx).compile().ainvoke(wf.initial_state({"question": QUESTION})))
        result = wf.result(state)
        assert result["answer"] == "Dijon", name
        text = "\n".join(m.content for c in ctx.calls for m in c.messages)
        assert ("<budget>" in text) == (name == "tracker"), name
        if name == "parallel":
            assert result["samples"] == ["Dijon"] * 3
            assert {c.purpose for c in ctx.calls} == {"sample_0", "sample_1", "sample_2"}
            assert {c.sampling.temperature for c in ctx.calls} == {0.7}
        if name == "forcing":
            assert result["stats"]["num_forcing"] == 1
