"""The reading call: an attempt's answer read from every tool result it saw (``answer_from="evidence"``,
the default), and where the agent's own answer line stands instead."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrator.errors import BadInputError, BudgetExhausted
from orchestrator.options import config_from_options
from orchestrator.types import Message
from workflows.bats import prompts
from workflows.bats.agent import run_attempt
from workflows.bats.config import AgentConfig, LoopMode
from workflows.bats.decide import decide
from workflows.bats.extraction import pick_reading, reading_evidence
from workflows.bats.steps import (
    AttemptSetup,
    CallLLM,
    Finish,
    LoopAction,
    LoopState,
    Replied,
    Started,
    ToolOutput,
    ToolsRan,
)

from .test_decide import views

QUESTION = "Where was the Eiffel Tower's designer born?"


def setup(mode: LoopMode | None = None, question: str = QUESTION, **config: Any) -> AttemptSetup:
    return AttemptSetup(question, AgentConfig(**{"demo": False, **config}), mode or LoopMode(), ("search", "browse"),
                        {"search": "query", "browse": "url"})


def step(s: AttemptSetup, state: LoopState, observation: Any) -> tuple[LoopState, LoopAction]:
    return decide(s, state, observation)


def two_searches_then(s: AttemptSetup, answer_line: str, *,
                      refused_second: bool = False) -> tuple[LoopState, LoopAction]:
    """An attempt that searched twice (the second maybe refused), then replied ``answer_line``."""
    state, _ = step(s, LoopState(), Started(views()))
    state, _ = step(s, state, Replied("search: eiffel tower"))
    state, _ = step(s, state, ToolsRan((ToolOutput("1. Eiffel Tower: designed by Gustave Eiffel"),), views(1)))
    state, _ = step(s, state, Replied("search: gustave eiffel"))
    second = ToolOutput("Refused: the search budget is exhausted", refused=True) if refused_second else \
        ToolOutput("1. Gustave Eiffel: born in Dijon")
    state, _ = step(s, state, ToolsRan((second,), views(2)))
    return step(s, state, Replied(answer_line))


def test_the_answer_is_read_from_every_result_the_attempt_saw() -> None:
    s = setup(LoopMode(tracker=True))
    state, action = two_searches_then(s, "answer: Gustave Eiffel")
    assert isinstance(action, CallLLM) and action.purpose == "agent_read" and state.phase == "read"
    system, user = action.messages
    assert system.content == prompts.READ_SYSTEM
    # Both results, the first too (the agent itself sees only the latest in full), no tracker block.
    assert "[search: eiffel tower]\n1. Eiffel Tower" in user.content and "born in Dijon" in user.content
    assert "Budget" not in user.content and user.content.endswith(f"Question: {QUESTION}\n"
                                                                  f"Kind of answer: {prompts.EXTRACT_KIND_OPEN}\n"
                                                                  "Short answer:")
    assert action.sampling.temperature == 0.0 and action.sampling.max_tokens == 24 and action.sampling.stop == ("\n",)
    state, done = step(s, state, Replied("Dijon."))
    assert isinstance(done, Finish)
    result = done.result
    assert (result["answer"], result["agent_answer"], result["num_reads"]) == ("Dijon", "Gustave Eiffel", 1)
    assert done.record["agent_answer"] == "Gustave Eiffel" and done.record["answer"] == "Dijon"


def test_refused_calls_are_not_evidence() -> None:
    s = setup()
    _, action = two_searches_then(s, "answer: Gustave Eiffel", refused_second=True)
    assert isinstance(action, CallLLM)
    assert "Refused" not in action.messages[1].content and "[search: gustave eiffel]" not in action.messages[1].content


@pytest.mark.parametrize("reply", ["", "\n", "answer:", "Yes"])
def test_the_agents_answer_stands_when_the_reading_gives_none_of_the_right_kind(reply: str) -> None:
    s = setup()
    state, _ = two_searches_then(s, "answer: Gustave Eiffel")
    _, done = step(s, state, Replied(reply))
    assert isinstance(done, Finish) and done.result["answer"] == "Gustave Eiffel" and done.result["num_reads"] == 1


def test_a_yes_no_question_may_be_read_as_yes() -> None:
    s = setup(question="Were Gustave Eiffel and his father both French?", yes_no_form=True)
    state, action = two_searches_then(s, "answer: Gustave Eiffel")
    assert isinstance(action, CallLLM)
    assert f"Kind of answer: {prompts.EXTRACT_KIND_YES_NO}" in action.messages[1].content
    _, done = step(s, state, Replied("Yes, both were"))
    assert isinstance(done, Finish) and done.result["answer"] == "yes"


def test_no_results_no_reading_and_answer_from_agent_never_reads() -> None:
    s = setup()
    state, _ = step(s, LoopState(), Started(views()))
    _, done = step(s, state, Replied("answer: Paris"))
    assert isinstance(done, Finish) and done.result["answer"] == "Paris" and done.result["num_reads"] == 0
    _, done = two_searches_then(setup(answer_from="agent"), "answer: Gustave Eiffel")
    assert isinstance(done, Finish) and done.result["answer"] == "Gustave Eiffel" and done.result["num_reads"] == 0


def test_an_attempt_without_an_answer_still_gets_one_read() -> None:
    s = setup(max_turns=1)
    state, _ = step(s, LoopState(), Started(views()))
    state, _ = step(s, state, Replied("search: eiffel tower"))
    state, final = step(s, state, ToolsRan((ToolOutput("Gustave Eiffel was born in Dijon."),), views(1)))
    assert isinstance(final, CallLLM) and final.is_last_step  # the turn cap: asked for the answer
    state, action = step(s, state, Replied("I could not find it"))
    assert isinstance(action, CallLLM) and action.purpose == "agent_read"
    _, done = step(s, state, Replied("Dijon"))
    assert isinstance(done, Finish) and done.result["answer"] == "Dijon"
    assert done.result["agent_answer"] == "I could not find it"


def test_a_long_reading_is_shortened_by_the_extraction_call() -> None:
    s = setup()
    state, _ = two_searches_then(s, "answer: Gustave Eiffel")
    state, action = step(s, state, Replied("He was born in the city of Dijon in France"))
    assert isinstance(action, CallLLM) and action.purpose == "agent_extract"
    _, done = step(s, state, Replied("Dijon"))
    assert isinstance(done, Finish) and done.result["answer"] == "Dijon" and done.result["num_extractions"] == 1


def test_evidence_keeps_the_first_result_and_the_latest_that_fit() -> None:
    results = ["first " + "a" * 30, "second " + "b" * 30, "third " + "c" * 30, "fourth " + "d" * 30]
    assert reading_evidence(results, 10_000) == "\n\n".join(results)
    kept = reading_evidence(results, 120)
    assert kept.split("\n\n") == [results[0], results[2], results[3]] and len(kept) <= 120
    assert reading_evidence(["x" * 500], 100).startswith("x" * 50) and len(reading_evidence(["x" * 500], 100)) <= 200
    assert reading_evidence([], 100) == ""


def test_pick_reading_keeps_the_agents_answer_for_a_bare_yes_to_an_open_question() -> None:
    assert pick_reading("Dijon", "Yes", "Where was he born?") == "Dijon"
    assert pick_reading("Dijon", "Paris", "Where was he born?") == "Paris"
    assert pick_reading("", "answer: Paris.", "Where was he born?") == "Paris"
    assert pick_reading("no", "yes", "Is he French?") == "yes"


def test_answer_from_is_checked() -> None:
    with pytest.raises(BadInputError, match="answer_from"):
        config_from_options(AgentConfig, {"answer_from": "oracle"})
    with pytest.raises(BadInputError, match="read_max_chars"):
        config_from_options(AgentConfig, {"read_max_chars": 0})


def broke_for(ctx: Any, purpose_suffix: str) -> Any:
    """``ctx`` whose calls of a purpose ending in ``purpose_suffix`` the token budget cannot cover."""
    chat = ctx.chat

    async def refusing(messages: Any, **kw: Any) -> Any:
        if kw.get("purpose", "").endswith(purpose_suffix):
            raise BudgetExhausted("run:test-run", "tokens", 100, 90, 50)
        return await chat(messages, **kw)

    ctx.chat = refusing
    return ctx


def run_react(ctx: Any, name: str = "react") -> dict[str, Any]:
    from orchestrator import workflow as workflows

    wf = workflows.get(name)
    state = asyncio.run(wf.build(ctx).compile().ainvoke(wf.initial_state({"question": QUESTION})))
    return wf.result(state)


def reading_replies(reading: str) -> Any:
    """Replies of a model that searches once, answers "Gustave Eiffel" and reads ``reading``."""

    def reply(purpose: str, messages: list[Message]) -> str:
        if purpose.endswith("_read"):
            return reading
        return "answer: Gustave Eiffel" if any(m.role == "tool" for m in messages) else "search: eiffel tower"

    return reply


def test_a_reading_call_the_budget_cannot_cover_leaves_the_agents_answer(make_ctx) -> None:
    reply = reading_replies("Dijon")
    ctx = broke_for(make_ctx(reply, read=True), "_read")
    result = asyncio.run(run_attempt(ctx, QUESTION, AgentConfig(demo=False), LoopMode()))
    assert result["answer"] == "Gustave Eiffel" and result["agent_answer"] == "Gustave Eiffel"
    assert result["num_reads"] == 0  # the call was not made, so it is not counted
    # Any other call the budget cannot cover still ends the attempt.
    ctx2 = make_ctx(reply, read=True)

    async def broke(messages: Any, **kw: Any) -> Any:
        raise BudgetExhausted("run:test-run", "tokens", 100, 90, 50)

    ctx2.chat = broke  # type: ignore[method-assign]
    with pytest.raises(BudgetExhausted):
        asyncio.run(run_attempt(ctx2, QUESTION, AgentConfig(demo=False), LoopMode()))


def test_a_skipped_extraction_keeps_the_cleaned_answer_and_counts_no_call() -> None:
    s = setup()
    state, _ = two_searches_then(s, "answer: Gustave Eiffel")
    state, action = step(s, state, Replied("He was born in the city of Dijon in France"))
    assert isinstance(action, CallLLM) and action.purpose == "agent_extract" and action.optional
    _, done = step(s, state, Replied("", skipped=True))
    assert isinstance(done, Finish)
    assert done.result["answer"] == "He was born in the city of Dijon in France"
    assert done.result["num_extractions"] == 0 and done.result["num_reads"] == 1


def test_an_extraction_call_the_budget_cannot_cover_keeps_the_long_answer(make_ctx) -> None:
    reply = reading_replies("He was born in the city of Dijon in France")
    ctx = broke_for(make_ctx(reply, read=True), "_extract")
    result = asyncio.run(run_attempt(ctx, QUESTION, AgentConfig(demo=False), LoopMode()))
    assert result["answer"] == "He was born in the city of Dijon in France"
    assert result["num_reads"] == 1 and result["num_extractions"] == 0
    # Through a workflow graph too: the run answers instead of failing on the budget.
    ctx = broke_for(make_ctx(reply, read=True), "_extract")
    assert run_react(ctx, "tracker")["answer"] == "He was born in the city of Dijon in France"


def test_bats_verifies_the_read_answer(make_ctx) -> None:
    from workflows.bats import BATS

    def reply(purpose: str, messages: list[Message]) -> str:
        if purpose == "planner":
            return "explore: who designed the tower"
        if purpose == "verifier":
            assert "Proposed answer: Dijon" in messages[-1].content
            return ('{"verdicts": ["satisfied"], "decision": "SUCCESS", "justification": "found", '
                    '"summary": "designer born in Dijon"}')
        if purpose == "agent_read":
            assert "born in Dijon" in messages[-1].content
            return "Dijon"
        if any(m.role == "tool" and "born in Dijon" in m.content for m in messages):
            return "answer: Gustave Eiffel"
        if any(m.role == "tool" for m in messages):
            return "browse: wiki://Gustave Eiffel"
        return "search: eiffel tower"

    ctx = make_ctx(reply, read=True)
    graph = BATS.build(ctx).compile()
    state = asyncio.run(graph.ainvoke({"question": QUESTION}))
    result = BATS.result(state)
    assert result["answer"] == "Dijon" and result["attempts"][0]["agent_answer"] == "Gustave Eiffel"
    assert ctx.purposes() == ["planner", "agent", "agent", "agent", "agent_read", "verifier"]



def test_the_react_workflow_reads_its_answer_from_its_results_by_default(make_ctx) -> None:
    def reply(purpose: str, messages: list[Message]) -> str:
        if purpose == "read":
            evidence = messages[-1].content
            assert "Gustave Eiffel <wiki://Gustave Eiffel>" in evidence and "Refused" not in evidence
            return "Dijon"
        searched = any(m.role == "tool" and "<wiki://" in m.content for m in messages)  # not the demo's
        return "answer: Gustave Eiffel" if searched else "search: eiffel tower"

    ctx = make_ctx(reply, read=True)  # the default: read from the results
    result = run_react(ctx)
    assert (result["answer"], result["agent_answer"], result["stop_reason"]) == ("Dijon", "Gustave Eiffel", "answered")
    assert ctx.purposes() == ["agent", "agent", "read"]
    # answer_from=agent: the agent's line, no reading call.
    ctx = make_ctx(reply, read=True, answer_from="agent")
    assert run_react(ctx)["answer"] == "Gustave Eiffel" and "read" not in ctx.purposes()
    # A refused search is no evidence: with nothing else, no reading call.
    ctx = make_ctx(lambda p, m: "answer: Paris" if sum(x.role == "tool" for x in m) > 1 else "search: eiffel tower",
                   {"search": 0, "browse": 0}, read=True, answer_from="evidence")
    assert run_react(ctx)["answer"] == "Paris" and "read" not in ctx.purposes() and ctx.tool_calls[0][2] is True
    # A reading call the budget cannot cover leaves the agent's answer.
    assert run_react(broke_for(make_ctx(reply, read=True), "read"))["answer"] == "Gustave Eiffel"


def test_the_react_workflow_cuts_a_read_sentence_to_its_phrase(make_ctx) -> None:
    sentence = "The architect of the Eiffel Tower was born in the city of Dijon"

    def reply(purpose: str, messages: list[Message]) -> str:
        if purpose == "read":
            return sentence
        if purpose == "extract":
            assert sentence in messages[-1].content
            return "Dijon"
        searched = any(m.role == "tool" and "<wiki://" in m.content for m in messages)
        return "answer: Gustave Eiffel" if searched else "search: eiffel tower"

    ctx = make_ctx(reply, read=True)
    assert run_react(ctx)["answer"] == "Dijon" and ctx.purposes() == ["agent", "agent", "read", "extract"]
    # A short read answer needs no extraction; one the budget cannot cover keeps the sentence.
    ctx = make_ctx(lambda p, m: "Dijon" if p == "read" else reply(p, m), read=True)
    assert run_react(ctx)["answer"] == "Dijon" and "extract" not in ctx.purposes()
    assert run_react(broke_for(make_ctx(reply, read=True), "extract"))["answer"] == sentence
