"""The ablation switches of BATS (verifier, pivot) and the judge's answer form for yes/no
questions (BATS and ReAct)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrator import workflow as workflows
from orchestrator.types import Message
from workflows.answers import is_yes_no_question, yes_no_answer
from workflows.bats.config import AgentConfig

from .test_bats_graph import VALID_SUCCESS, run_bats, scripted

PIVOT_REPLY = ('{"verdicts": ["contradicted", "unverifiable"], "decision": "PIVOT", '
               '"justification": "wrong person", "summary": "Paris is wrong."}')


def test_without_the_verifier_an_answered_attempt_is_final(make_ctx) -> None:
    ctx = make_ctx(scripted([]), verifier=False)
    result = run_bats(ctx)
    assert "verifier" not in ctx.purposes()
    assert [a["decision"] for a in result["attempts"]] == ["SUCCESS"] and result["answer"] == "Paris"
    assert result["stats"]["num_verifier_calls"] == 0


def test_without_pivot_a_pivot_is_followed_as_continue(make_ctx) -> None:
    def second_head(**config: Any) -> str:
        ctx = make_ctx(scripted([PIVOT_REPLY, VALID_SUCCESS]), **config)
        run_bats(ctx)
        second = [c for c in ctx.calls if c.purpose == "agent" and "Notes from earlier" in c.messages[1].content]
        return second[0].messages[1].content

    assert "follow a different lead" in second_head()
    head = second_head(pivot=False)
    assert "follow a different lead" not in head and "dig deeper on it" in head


@pytest.mark.parametrize(("question", "expected"), [
    ("Are both Sun Ra and Tyrone Davis American?", True),
    ("Were Scott Derrickson and Ed Wood of the same nationality?", True),
    ("Did the film come out before 2000?", True),
    ("Is Erik Satie or Dave Brubeck older?", False),  # asks for one of two names
    ("Which band was formed first?", False),
    ("Who designed the Eiffel Tower?", False),
])
def test_is_yes_no_question(question: str, expected: bool) -> None:
    assert is_yes_no_question(question) is expected


@pytest.mark.parametrize(("answer", "expected"), [
    ("Yes, both were American.", "yes"), ("**No**", "no"), ("yes", "yes"), ("Norway", None), ("Nobody", None),
])
def test_yes_no_answer(answer: str, expected: str | None) -> None:
    assert yes_no_answer(answer) == expected


def _sentence_answer(purpose: str, messages: list[Message]) -> str:
    if purpose == "planner":
        return "explore: nationality of both"
    if purpose == "verifier":
        return VALID_SUCCESS
    return "answer: Yes, both are American"


def test_bats_answers_a_yes_no_question_with_the_bare_word_when_asked(make_ctx) -> None:
    question = "Are both Sun Ra and Tyrone Davis American?"
    assert run_bats(make_ctx(_sentence_answer), question)["answer"] == "Yes, both are American"
    ctx = make_ctx(_sentence_answer, yes_no_form=True)
    assert run_bats(ctx, question)["answer"] == "yes"
    # Other questions keep their answer.
    assert run_bats(make_ctx(_sentence_answer, yes_no_form=True), "Which nationality are they?")["answer"] == \
        "Yes, both are American"
    assert AgentConfig().yes_no_form is False


def test_react_answers_a_yes_no_question_with_the_bare_word_when_asked(make_ctx) -> None:
    def run(**config: Any) -> Any:
        ctx = make_ctx(lambda purpose, messages: "answer: Yes, both are American", **config)
        wf = workflows.get("react")
        state = asyncio.run(wf.build(ctx).compile().ainvoke(
            wf.initial_state({"question": "Are both Sun Ra and Tyrone Davis American?"})))
        return wf.result(state)["answer"]

    assert run() == "Yes, both are American"
    assert run(yes_no_form="true") == "yes"


def test_replies_cut_at_max_tokens_are_counted(make_ctx) -> None:
    # A chatty agent turn runs past the turn's max_tokens: counted, so a bench can size the limit.
    def chatty(purpose: str, messages: list[Message]) -> str:
        if purpose == "planner":
            return "explore: who designed it"
        if purpose == "verifier":
            return VALID_SUCCESS
        return "Let me think about this carefully. " * 40 + "\nanswer: Paris"

    result = run_bats(make_ctx(chatty, max_tokens=32))
    assert result["stats"]["num_cut_replies"] >= 1
    assert run_bats(make_ctx(chatty, max_tokens=400))["stats"]["num_cut_replies"] == 0


def test_react_does_not_run_or_answer_a_line_copied_from_its_eiffel_example(make_ctx) -> None:
    from workflows.react import EXAMPLE_COPIED

    def copier(purpose: str, messages: list[Message]) -> str:
        if messages[-1].content == EXAMPLE_COPIED:
            return "answer: Dieter Gorny" if messages[-2].content.startswith("answer") else "answer: Gustave Eiffel"
        return "search: Eiffel Tower designer"

    ctx = make_ctx(copier)
    wf = workflows.get("react")
    state = asyncio.run(wf.build(ctx).compile().ainvoke(wf.initial_state({"question": "Who founded VIVA Media AG?"})))
    result = wf.result(state)
    # The copied search never reached the tool, the copied answer was not taken, the next one was.
    assert ctx.tool_calls == [] and result["answer"] == "Dieter Gorny" and result["example_copies"] == 2
    assert [m["content"] for m in state["messages"] if m["role"] == "user"] == [EXAMPLE_COPIED] * 2
