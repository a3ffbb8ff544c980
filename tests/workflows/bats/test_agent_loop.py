"""The shared agent loop on a fake RunContext: tracker block, context rewrite, stop rules,
refusals, forcing, format reminders."""

from __future__ import annotations

import asyncio

from orchestrator.types import Message
from workflows.actions import parse_actions
from workflows.bats import prompts
from workflows.bats.agent import AgentConfig, LoopMode, run_attempt, strip_demo
from workflows.bats.trajectory import render_messages, tool_entry, user_entry

QUESTION = "Where was the Eiffel Tower's designer born?"  # the demo's subject: its words are fair here


def loop_config(**options: object) -> AgentConfig:
    """The loop's options for these tests: no demo, the agent's own answer line (the reading call
    has its own tests)."""
    return AgentConfig(**{"demo": False, "answer_from": "agent", **options})  # type: ignore[arg-type]


def n_obs(messages: list[Message]) -> int:
    return sum(1 for m in strip_demo(messages) if m.role == "tool")


def test_tracker_block_follows_every_tool_response_and_policy_is_on_first_turn(make_ctx) -> None:
    def reply(purpose: str, messages: list[Message]) -> str:
        return ["search: eiffel tower", "browse: wiki://Gustave Eiffel", "answer: Dijon"][n_obs(messages)]

    ctx = make_ctx(reply, {"search": 10, "browse": 4})
    result = asyncio.run(
        run_attempt(ctx, QUESTION, loop_config(), LoopMode(tracker=True))
    )
    assert result["answer"] == "Dijon" and result["stop"] == "answered"
    first_system = ctx.calls[0].messages[0].content
    assert "Budget policy" in first_system and "You start in the high regime." in first_system
    last = ctx.calls[-1].messages
    tool_msgs = [m for m in last if m.role == "tool"]
    # Only the latest tool output is shown in full, with the tracker block after it.
    assert tool_msgs[0].content == '(earlier output of search "eiffel tower" removed)'
    assert not parse_actions(tool_msgs[0].content)  # a stub never reads as an action to copy
    assert tool_msgs[1].content.startswith("[browse: wiki://Gustave Eiffel]\nGustave Eiffel was")
    assert "Search Budget Used: 1, Search Budget Remaining: 9 (of 10 queries)" in tool_msgs[1].content
    assert "Browse Budget Used: 1, Browse Budget Remaining: 3 (of 4 urls)" in tool_msgs[1].content
    second_obs = ctx.calls[1].messages[-1].content
    assert "<budget>" in second_obs and "Search Budget Used: 1, Search Budget Remaining: 9" in second_obs


def test_plain_mode_shows_no_budget(make_ctx) -> None:
    ctx = make_ctx(lambda p, m: "search: x" if not n_obs(m) else "answer: y")
    asyncio.run(run_attempt(ctx, QUESTION, loop_config(), LoopMode()))
    text = "\n".join(m.content for c in ctx.calls for m in c.messages)
    assert "<budget>" not in text and "Budget policy" not in text


def test_loop_stops_when_any_budget_is_exhausted_and_asks_for_final_answer(make_ctx) -> None:
    def reply(purpose: str, messages: list[Message]) -> str:
        if messages[-1].content == prompts.FINAL_TURN:
            return "answer: Dijon"
        return f"search: query {n_obs(messages)}"

    ctx = make_ctx(reply, {"search": 2, "browse": 5})
    result = asyncio.run(run_attempt(ctx, QUESTION, loop_config(max_turns=10), LoopMode(tracker=True)))
    assert result["stop"] == "exhausted" and result["answer"] == "Dijon"
    assert [c[2] for c in ctx.tool_calls] == [False, False]  # no third search was attempted
    assert ctx.calls[-1].is_last_step and len(ctx.calls) == 3


def test_depleted_tool_is_refused_when_the_model_ignores_the_tracker(make_ctx) -> None:
    # Three searches in one reply against a budget of two: the third is refused by the ledger.
    ctx = make_ctx(lambda p, m: "search: a\nsearch: b\nsearch: c" if not n_obs(m) else "answer: z",
                   {"search": 2, "browse": 5})
    result = asyncio.run(run_attempt(ctx, QUESTION, loop_config(), LoopMode(tracker=True)))
    assert [refused for _, _, refused in ctx.tool_calls] == [False, False, True]
    assert result["num_refused"] == 1 and ctx.used["search"] == 2
    assert "Refused" in ctx.calls[-1].messages[-2].content


def test_repeated_action_is_not_run_or_charged_again(make_ctx) -> None:
    replies = iter(["search: Eiffel  tower", "search: eiffel tower", "answer: x"])
    ctx = make_ctx(lambda p, m: next(replies), {"search": 5, "browse": 5})
    result = asyncio.run(run_attempt(ctx, QUESTION, loop_config(), LoopMode(tracker=True)))
    assert len(ctx.tool_calls) == 1 and ctx.used == {"search": 1}
    assert result["num_repeated"] == 1
    assert prompts.REPEATED in ctx.calls[2].messages[-1].content
    # The repeat notice does not push the real results out of view.
    assert ctx.calls[2].messages[-3].content.startswith("[search: Eiffel  tower]\nResults for")


def test_actions_per_turn_are_capped(make_ctx) -> None:
    ctx = make_ctx(lambda p, m: "\n".join(f"search: q{i}" for i in range(6)) if not n_obs(m) else "answer: z",
                   {"search": 50, "browse": 5})
    asyncio.run(run_attempt(ctx, QUESTION, loop_config(max_actions_per_turn=2), LoopMode()))
    assert len(ctx.tool_calls) == 2


def test_format_reminder_then_prose_is_taken_as_answer(make_ctx) -> None:
    ctx = make_ctx(lambda p, m: "It is probably Dijon.")
    result = asyncio.run(run_attempt(ctx, QUESTION, loop_config(max_format_errors=1), LoopMode()))
    assert result["answer"] == "It is probably Dijon" and result["num_format_errors"] == 2
    assert ctx.calls[1].messages[-1].content == prompts.FORMAT_NUDGE


def test_forcing_pushes_for_more_tools_until_idle_limit(make_ctx) -> None:
    def reply(purpose: str, messages: list[Message]) -> str:
        return "search: more" if n_obs(messages) < 1 else f"answer: guess{len(messages)}"

    ctx = make_ctx(reply, {"search": 10, "browse": 10})
    result = asyncio.run(
        run_attempt(ctx, QUESTION, loop_config(max_idle_turns=3, max_turns=20), LoopMode(forcing=True))
    )
    assert result["num_forcing"] == 2 and result["stop"] == "answered"
    forcing_msgs = [m.content for m in ctx.calls[-1].messages if m.content.startswith("Wait:")]
    assert len(forcing_msgs) == 2 and "search: 9 left, browse: 10 left" in forcing_msgs[0]
    assert result["answer"].startswith("guess")


def test_render_drops_old_tool_outputs_but_keeps_their_stubs() -> None:
    entries = [
        tool_entry("search", "FULL ONE", "search: a (output dropped)"),
        user_entry("note"),
        tool_entry("search", "FULL TWO", "search: b (output dropped)"),
        tool_entry("browse", "FULL THREE", "browse: c (output dropped)"),
    ]
    msgs = render_messages("sys", "Question: q", entries, keep_tool_outputs=2)
    assert [m.content for m in msgs] == [
        "sys", "Question: q", "search: a (output dropped)", "note", "FULL TWO", "FULL THREE",
    ]
    assert render_messages("s", "h", entries, keep_tool_outputs=0)[-1].content == "browse: c (output dropped)"
