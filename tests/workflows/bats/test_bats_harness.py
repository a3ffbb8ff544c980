"""The equal harness of BATS and its baselines: budget-derived turn cap, demo exchange, short
answers (cleaning and the extraction call), the final-turn guess, and the verifier's structured
output request (schema sent, server refusal handled)."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.context import ToolBudgetView
from orchestrator.errors import BudgetExhausted, EngineDead
from orchestrator.types import LLMResponse, Message, Usage
from workflows.bats import prompts
from workflows.bats.agent import (
    AgentConfig,
    LoopMode,
    clean_answer,
    demo_messages,
    run_attempt,
    shorten_answer,
    strip_demo,
    turn_cap,
)
from workflows.bats.verifier import VERIFIER_SCHEMA, verify

QUESTION = "Where was the Eiffel Tower's designer born?"  # the demo's subject: its words are fair here


def loop_config(**options: object) -> AgentConfig:
    """The loop's options for these tests: no demo, the agent's own answer line (the reading call
    has its own tests)."""
    return AgentConfig(**{"demo": False, "answer_from": "agent", **options})  # type: ignore[arg-type]


def views(search: float | None, browse: float | None, used: float = 0.0) -> list[ToolBudgetView]:
    return [ToolBudgetView("search", "query", used, search), ToolBudgetView("browse", "url", 0.0, browse)]


def test_turn_cap_follows_the_budget_not_a_fixed_number() -> None:
    config = AgentConfig()
    assert turn_cap(views(2, 2), config) == 6  # 4 units + answer turn + spare
    assert turn_cap(views(20, 20), config) == 42
    assert turn_cap(views(20, 20, used=15), config) == 27  # what is left, not the initial budget
    assert turn_cap(views(100, 100), config) == config.max_turns_cap
    assert turn_cap(views(None, None), config) == config.max_turns_cap
    assert turn_cap(views(20, 20), AgentConfig(max_turns=6)) == 6  # an explicit cap still wins


def test_agent_is_not_cut_by_turns_before_its_budget(make_ctx) -> None:
    # One new query per turn: with budget 10 the old fixed cap of 6 turns stopped it at 6 queries.
    ctx = make_ctx(lambda p, m: "answer: x" if m[-1].content == prompts.FINAL_TURN else f"search: q{len(m)}",
                   {"search": 10, "browse": 10})
    result = asyncio.run(run_attempt(ctx, QUESTION, loop_config(demo=True), LoopMode(tracker=True)))
    assert result["stop"] == "exhausted" and ctx.used["search"] == 10


@pytest.mark.parametrize(("raw", "clean"), [
    ("answer: Dijon.", "Dijon"),
    ('"Gustave Eiffel"', "Gustave Eiffel"),
    ("The answer is: 1889\nmore text", "1889"),
    ("  **yes**  ", "yes"),
    ("", ""),
])
def test_clean_answer(raw: str, clean: str) -> None:
    assert clean_answer(raw) == clean


def test_long_answer_gets_one_extraction_call_short_one_none(make_ctx) -> None:
    ctx = make_ctx(lambda p, m: "Dijon")
    passage = "Gustave Eiffel was a French civil engineer born in Dijon in 1832 and he built towers."
    answer, called = asyncio.run(shorten_answer(ctx, "Where was Eiffel born?", passage, AgentConfig()))
    assert (answer, called) == ("Dijon", True)
    call = ctx.calls[0]
    assert call.purpose == "agent_extract" and call.messages[0].content == prompts.EXTRACT_SYSTEM
    assert passage.rstrip(".") in call.messages[1].content and call.sampling.stop == ("\n",)
    assert asyncio.run(shorten_answer(ctx, "q", "Dijon, France", AgentConfig())) == ("Dijon, France", False)
    assert len(ctx.calls) == 1
    # An extraction that is not shorter keeps the original; short_answer=False never calls.
    ctx2 = make_ctx(lambda p, m: passage + " Indeed.")
    assert asyncio.run(shorten_answer(ctx2, "q", passage, AgentConfig()))[0] == passage.rstrip(".")
    assert asyncio.run(shorten_answer(ctx2, "q", passage, AgentConfig(short_answer=False))) == (
        passage.rstrip("."),
        False,
    )


def test_an_extraction_the_budget_cannot_cover_keeps_the_cleaned_answer(make_ctx) -> None:
    def refuse(purpose: str, messages: list[Message]) -> str:
        raise BudgetExhausted("run:test-run", "tokens", 100, 90, 50)

    ctx = make_ctx(refuse)
    passage = "Gustave Eiffel was a French civil engineer born in Dijon in 1832 and he built towers."
    assert asyncio.run(shorten_answer(ctx, "Where was Eiffel born?", passage, AgentConfig())) == (
        passage.rstrip("."), True)
    assert [c.purpose for c in ctx.calls] == ["agent_extract"]


def test_every_method_sees_the_same_demo_and_its_answer_is_extracted(make_ctx) -> None:
    def reply(purpose: str, messages: list[Message]) -> str:
        if purpose.endswith("_extract"):
            return "Dijon"
        if not any(m.role == "tool" for m in strip_demo(messages)):
            return "search: eiffel"
        return "answer: He was born in the city of Dijon in eastern France in 1832"

    seen = []
    for mode in (LoopMode(), LoopMode(tracker=True)):
        ctx = make_ctx(reply, {"search": 5, "browse": 5})
        result = asyncio.run(run_attempt(ctx, "Where was the Eiffel designer born?", loop_config(demo=True), mode))
        assert result["answer"] == "Dijon" and result["num_extractions"] == 1
        assert result["raw_answer"].startswith("He was born")
        first = ctx.calls[0].messages
        demo = demo_messages()
        assert first[1 : 1 + len(demo)] == demo and first[1 + len(demo)].content.startswith("Question: Where")
        seen.append(first[1 : 1 + len(demo)])
    assert seen[0] == seen[1]


def test_final_turn_tool_call_becomes_a_guess_not_an_action_line(make_ctx) -> None:
    def reply(purpose: str, messages: list[Message]) -> str:
        if messages[-1].content == prompts.FINAL_TURN:
            return "browse: wiki://Gustave Eiffel"
        return "search: eiffel"

    ctx = make_ctx(reply, {"search": 1, "browse": 5})
    result = asyncio.run(run_attempt(ctx, QUESTION, loop_config(), LoopMode()))
    assert result["stop"] == "exhausted" and result["answer"] == "Gustave Eiffel"


VALID = '{"verdicts": ["satisfied"], "decision": "SUCCESS", "justification": "j", "summary": "s"}'


def test_verifier_requests_its_json_schema_and_can_do_without(make_ctx) -> None:
    ctx = make_ctx(lambda p, m: VALID)
    v = asyncio.run(verify(ctx, question="q", constraints=["c"], evidence="e", answer="a", budget="b"))
    assert v.decision == "SUCCESS" and v.source == "valid"
    assert ctx.calls[0].sampling.json_schema == VERIFIER_SCHEMA
    assert set(VERIFIER_SCHEMA["required"]) == {"verdicts", "decision", "justification", "summary"}
    asyncio.run(verify(ctx, question="q", constraints=["c"], evidence="e", answer="a", budget="b", json_schema=False))
    assert ctx.calls[1].sampling.json_schema is None


def test_verifier_falls_back_to_plain_json_when_the_server_rejects_the_schema(make_ctx) -> None:
    ctx = make_ctx(lambda p, m: VALID)
    plain_chat = ctx.chat

    async def chat(messages, *, sampling=None, **kw):
        if sampling is not None and sampling.json_schema is not None:
            raise EngineDead("LLM server rejected the request (400 response_format)")
        return await plain_chat(messages, sampling=sampling, **kw)

    ctx.chat = chat  # type: ignore[method-assign]
    v = asyncio.run(verify(ctx, question="q", constraints=["c"], evidence="e", answer="a", budget="b"))
    assert v.decision == "SUCCESS" and len(ctx.calls) == 1 and ctx.calls[0].sampling.json_schema is None


def test_bats_graph_passes_the_schema_option(make_ctx) -> None:
    from orchestrator import workflow as workflows
    def reply(purpose: str, messages: list[Message]) -> str:
        if purpose == "verifier":
            return VALID
        if purpose == "planner":
            return "explore: x"
        if purpose == "judge":
            return "1"
        return "search: q" if not any(m.role == "tool" for m in messages) else "answer: Dijon"

    for flag in (True, False):
        ctx = make_ctx(reply, verifier_json_schema=flag)
        graph = workflows.get("bats").build(ctx).compile()
        asyncio.run(graph.ainvoke({"question": QUESTION}))
        schemas = [c.sampling.json_schema for c in ctx.calls if c.purpose == "verifier"]
        assert schemas and all((s is not None) == flag for s in schemas)


def test_fake_response_type_is_unchanged() -> None:
    # SamplingOptions stays hashable with the new field (frozen dataclass used as a dict key elsewhere).
    from orchestrator.types import SamplingOptions

    assert hash(SamplingOptions(json_schema=VERIFIER_SCHEMA)) == hash(SamplingOptions())
    assert LLMResponse("x", Usage(), "m").text == "x"


def test_looping_agent_stops_after_stale_turns_not_at_the_turn_cap(make_ctx) -> None:
    def reply(purpose: str, messages: list[Message]) -> str:
        return "answer: x" if messages[-1].content == prompts.MAX_TURNS_REACHED else "search: same query"

    ctx = make_ctx(reply, {"search": 20, "browse": 20})  # derived cap: 42 turns
    result = asyncio.run(run_attempt(ctx, QUESTION, loop_config(), LoopMode()))
    assert result["stop"] == "stale" and result["answer"] == "x"
    assert ctx.used == {"search": 1} and len(ctx.calls) == 1 + 2 + 1  # first run, 2 repeats, final


def test_reply_repeating_done_actions_then_answering_is_an_answer(make_ctx) -> None:
    # Qwen 0.5B re-emits its whole pattern each turn; the answer line must not be lost.
    ctx = make_ctx(lambda p, m: "search: viva media\nbrowse: wiki://VIVA Media\nanswer: VIVA Media AG")
    result = asyncio.run(run_attempt(ctx, QUESTION, loop_config(), LoopMode()))
    assert result["stop"] == "answered" and result["answer"] == "VIVA Media AG"
    assert len(ctx.calls) == 2 and ctx.used == {"search": 1, "browse": 1}


def test_agent_sees_explore_items_only_by_default_verifier_sees_all(make_ctx) -> None:
    from orchestrator import workflow as workflows
    def reply(purpose: str, messages: list[Message]) -> str:
        if purpose == "planner":
            return "explore: who designed the tower\nverify: they were both in The Beatles"
        if purpose == "verifier":
            return VALID
        if purpose == "judge":
            return "1"
        return "search: q" if not any(m.role == "tool" for m in messages) else "answer: Dijon"

    for option, shown in (("explore", ["who designed"]), ("all", ["who designed", "The Beatles"]), ("none", [])):
        ctx = make_ctx(reply, agent_plan=option)
        asyncio.run(workflows.get("bats").build(ctx).compile().ainvoke({"question": QUESTION}))
        first = next(c for c in ctx.calls if c.purpose == "agent")
        head = first.messages[1].content
        assert all(s in head for s in shown) and ("The Beatles" in head) == ("The Beatles" in shown)
        # No plan shown, no instructions to work from one.
        assert (prompts.PLANNING_SECTION in first.messages[0].content) == (option != "none")
        verifier = next(c for c in ctx.calls if c.purpose == "verifier").messages[1].content
        assert "who designed the tower" in verifier and "The Beatles" in verifier


CUT = ('{"verdicts": ["satisfied", "unverifiable"], "decision": "CONTINUE", "justification": "Jonny Craig '
       'has been a member of more bands, but the evidence shows he has been the lead voc')


@pytest.mark.parametrize("text", [
    CUT,
    '{"verdicts": ["satisfied"], "decision": "PIVOT",',
    '{"verdicts": ["satisfied"], "decision": "PIVOT", "summary": ',
    '{"verdicts": ["satisfied", "unverif',
])
def test_truncated_verifier_json_is_closed(text: str) -> None:
    from workflows.bats.verifier import complete_truncated

    obj = complete_truncated(text)
    assert isinstance(obj, dict) and "verdicts" in obj


def test_verifier_reply_cut_by_token_limit_keeps_its_decision_without_repair(make_ctx) -> None:
    from workflows.bats import graph

    ctx = make_ctx(lambda p, m: CUT)
    plain_chat = ctx.chat

    async def chat(messages, **kw):
        r = await plain_chat(messages, **kw)
        return LLMResponse(r.text, r.usage, r.model, finish_reason="length")

    ctx.chat = chat  # type: ignore[method-assign]
    v = asyncio.run(verify(ctx, question="q", constraints=["a", "b"], evidence="e", answer="x", budget="b"))
    assert (v.decision, v.verdicts, v.source, v.errors) == ("CONTINUE", ("satisfied", "unverifiable"), "truncated", ())
    assert len(ctx.calls) == 1  # no repair call
    stats = graph._count({}, v, {"num_turns": 1, "num_format_errors": 0, "num_refused": 0, "num_repeated": 0})
    assert stats["num_verifier_calls"] == 1 and stats["num_invalid_json"] == 0 and stats["num_truncated_json"] == 1
    # The same text with a normal finish is invalid: repair, then the safe default.
    ctx2 = make_ctx(lambda p, m: CUT)
    v2 = asyncio.run(verify(ctx2, question="q", constraints=["a"], evidence="e", answer="x", budget="b"))
    assert v2.source == "default" and len(ctx2.calls) == 2


def test_price_table_finds_served_names_by_alias_and_without_instruct_suffix() -> None:
    from budget.costs import load_price_table, parse_price_table
    from budget.errors import PriceTableError

    table = load_price_table()
    qwen = table.models["Qwen/Qwen2.5-Coder-0.5B-Instruct"]
    assert table.price_for("qwen2.5-coder-0.5b") == qwen != table.default
    assert table.price_for("smollm2-135m") == table.models["HuggingFaceTB/SmolLM2-135M-Instruct"]
    custom = parse_price_table({"models": {"default": {"input": 1, "output": 1},
                                           "Org/Foo-7B-Instruct": {"input": 2, "output": 3},
                                           "bar": {"input": 5, "output": 5, "aliases": ["served-bar"]}}})
    assert custom.price_for("foo-7b").output == 3  # -instruct folded away
    assert custom.price_for("served-bar").input == 5 and custom.price_for("other").input == 1
    with pytest.raises(PriceTableError, match="aliases"):
        parse_price_table({"models": {"default": {"input": 1, "output": 1, "aliases": "x"}}})
