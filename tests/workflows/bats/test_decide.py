"""The agent loop's pure core, one branch at a time: no run context, no event loop; the budget
views are the ones the test observes to :func:`decide`."""

from __future__ import annotations

from dataclasses import replace

import pytest

from orchestrator.context import ToolBudgetView
from orchestrator.llm.scripted import cut_reply
from workflows.actions import parse_actions
from workflows.bats import prompts
from workflows.bats.config import AgentConfig, LoopMode
from workflows.bats.decide import decide, turn_cap
from workflows.bats.steps import (
    AttemptSetup,
    CallLLM,
    CallTools,
    Finish,
    LoopAction,
    LoopState,
    Replied,
    Started,
    ToolCall,
    ToolOutput,
    ToolsRan,
)
from workflows.bats.tracker import tracker_block


def views(search_used: float = 0, browse_used: float = 0, limit: float | None = 5) -> tuple[ToolBudgetView, ...]:
    return (ToolBudgetView("search", "query", search_used, limit), ToolBudgetView("browse", "url", browse_used, limit))


def setup(mode: LoopMode | None = None, question: str = "Where was Eiffel born?", **config: object) -> AttemptSetup:
    config.setdefault("demo", False)
    config.setdefault("answer_from", "agent")  # the loop's rules; the reading call has its own tests
    return AttemptSetup(question, AgentConfig(**config), mode or LoopMode(), ("search", "browse"),  # type: ignore[arg-type]
                        {"search": "query", "browse": "url"}, head_notes="Plan: find him")


def start(s: AttemptSetup, observed: tuple[ToolBudgetView, ...] | None = None) -> tuple[LoopState, LoopAction]:
    return decide(s, LoopState(), Started(observed if observed is not None else views()))


def llm(action: LoopAction) -> CallLLM:
    assert isinstance(action, CallLLM), action
    return action


def finish(action: LoopAction) -> Finish:
    assert isinstance(action, Finish), action
    return action


def test_first_turn_shows_policy_demo_and_head_from_the_observed_budget() -> None:
    s = replace(setup(LoopMode(tracker=True), demo=True), seed=7, extra_system="PLANNING")
    state, action = start(s, views(search_used=4))
    call = llm(action)
    assert state.phase == "turn" and state.first_views == state.views == views(search_used=4)
    system = call.messages[0].content
    assert "Budget policy" in system and "You start in the low regime." in system and system.endswith("PLANNING")
    assert call.messages[1].content.startswith(prompts.DEMO_QUESTION)
    assert call.messages[-1].content == f"Question: Where was Eiffel born?\n\nPlan: find him\n\n{prompts.NEXT_ACTION}"
    assert (call.tool_name, call.is_last_step, call.purpose, call.sampling.seed) == (None, False, "agent", 7)
    assert "Budget policy" not in llm(start(setup())[1]).messages[0].content


def test_reply_with_tool_lines_runs_them_once_each_up_to_the_cap() -> None:
    s = setup(max_actions_per_turn=3)
    state, _ = start(s)
    state, action = decide(s, state, Replied("search: Eiffel\nsearch: eiffel \nbrowse: wiki://G\nsearch: four"))
    assert action == CallTools((ToolCall("search", {"query": "Eiffel"}), ToolCall("browse", {"url": "wiki://G"})))
    assert state.phase == "tools" and state.num_turns == 1 and state.last_tool == "browse"
    assert [repeat for _, repeat in state.pending] == [False, True, False]
    assert state.entries[-1]["actions"] == [["search", "Eiffel"], ["search", "eiffel"], ["browse", "wiki://G"]]


def test_tool_results_become_one_entry_with_the_tracker_block_of_the_observed_budget() -> None:
    s = setup(LoopMode(tracker=True), max_observation_chars=10)
    state, _ = start(s)
    state, _ = decide(s, state, Replied("search: a\nsearch: b"))
    after = views(search_used=2)
    state, action = decide(s, state, ToolsRan((ToolOutput("x" * 30), ToolOutput("Refused", refused=True)), after))
    entry = state.entries[-1]
    assert entry["role"] == "tool" and entry["name"] == "search"
    assert entry["content"].startswith("[search: a]\nxxxxxxxxxx [... 20 more characters cut]\n\n[search: b]\nRefused")
    assert "Search Budget Used: 2, Search Budget Remaining: 3 (of 5 queries)" in entry["content"]
    assert entry["stub"] == '(earlier output of search "a", search "b" removed)'
    assert state.views == after and state.first_views == views() and state.num_refused == 1
    assert llm(action).tool_name == "search" and state.phase == "turn"


def test_turn_of_only_repeats_is_a_plain_note_and_stale_turns_end_the_loop() -> None:
    s = setup(max_stale_turns=2)
    state, _ = start(s)
    state, _ = decide(s, state, Replied("search: a"))
    state, _ = decide(s, state, ToolsRan((ToolOutput("results"),), views(1)))
    for turn in (1, 2):
        state, action = decide(s, state, Replied("search: A"))
        assert action == CallTools(())  # nothing runs, the budgets are still read once
        state, action = decide(s, state, ToolsRan((), views(1)))
        assert state.num_stale_turns == turn and state.num_repeated == turn
    assert state.entries[-2]["role"] == "user" and prompts.REPEATED in state.entries[-2]["content"]
    assert state.stop == "stale" and state.entries[-1]["content"] == prompts.MAX_TURNS_REACHED
    assert llm(action).is_last_step and state.phase == "final"


def test_the_turn_after_a_repeat_samples_at_the_repeat_temperature() -> None:
    s = setup(max_stale_turns=3, temperature=0.1, repeat_temperature=0.8)
    state, first = start(s)
    assert llm(first).sampling.temperature == 0.1
    state, _ = decide(s, state, Replied("search: a"))
    state, fresh = decide(s, state, ToolsRan((ToolOutput("results"),), views(1)))
    assert llm(fresh).sampling.temperature == 0.1  # something new ran: the run's temperature
    state, _ = decide(s, state, Replied("search: A"))
    state, after_repeat = decide(s, state, ToolsRan((), views(1)))
    assert llm(after_repeat).sampling.temperature == 0.8
    assert llm(after_repeat).sampling.seed == llm(first).sampling.seed  # still seeded: a resume replays it
    state, _ = decide(s, state, Replied("search: b"))
    state, recovered = decide(s, state, ToolsRan((ToolOutput("other results"),), views(2)))
    assert llm(recovered).sampling.temperature == 0.1
    unset = setup(max_stale_turns=3, temperature=0.1)  # default None: no change
    state, _ = start(unset)
    state, _ = decide(unset, state, Replied("search: a"))
    state, _ = decide(unset, state, ToolsRan((ToolOutput("results"),), views(1)))
    state, _ = decide(unset, state, Replied("search: a"))
    state, again = decide(unset, state, ToolsRan((), views(1)))
    assert llm(again).sampling.temperature == 0.1


def test_any_budget_at_zero_asks_for_the_final_answer() -> None:
    s = setup()
    state, action = start(s, views(search_used=5))
    assert state.stop == "exhausted" and state.entries[-1]["content"] == prompts.FINAL_TURN
    assert llm(action).is_last_step and state.num_turns == 0
    state, _ = start(setup(stop_when_any_exhausted=False), views(search_used=5))
    assert state.phase == "turn"


def test_turn_cap_asks_for_the_final_answer() -> None:
    s = setup(max_turns=1)
    state, _ = start(s)
    state, _ = decide(s, state, Replied("search: a"))
    state, action = decide(s, state, ToolsRan((ToolOutput("r"),), views(1)))
    assert state.stop == "max_turns" and state.entries[-1]["content"] == prompts.MAX_TURNS_REACHED
    assert llm(action).is_last_step


def test_answer_ends_the_loop_even_after_repeating_done_actions() -> None:
    s = setup()
    state, _ = start(s)
    state, _ = decide(s, state, Replied("search: a"))
    state, _ = decide(s, state, ToolsRan((ToolOutput("r"),), views(1)))
    state, action = decide(s, state, Replied("search: a\nanswer: Dijon"))
    result = finish(action).result
    assert (result["answer"], result["stop"], result["num_turns"]) == ("Dijon", "answered", 2)
    assert state.phase == "done" and result["entries"][-1]["actions"] == [["answer", "Dijon"]]
    assert finish(action).record == {"answer": "Dijon", "raw_answer": "Dijon", "agent_answer": "Dijon",
                                     "stop": "answered", "num_turns": 2,
                                     "actions": {"search": ["a"], "answer": ["Dijon"]}}


def test_reply_without_action_gets_a_reminder_then_is_taken_as_the_answer() -> None:
    s = setup(max_format_errors=1)
    state, _ = start(s)
    state, action = decide(s, state, Replied("I think it is Dijon."))
    assert llm(action).messages[-1].content == state.entries[-1]["content"] == prompts.FORMAT_NUDGE
    state, action = decide(s, state, Replied("It is Dijon."))
    result = finish(action).result
    assert result["answer"] == "It is Dijon" and result["num_format_errors"] == 2
    # An empty reply has no fallback answer: it is reminded again, whatever the count.
    state, _ = start(s)
    for _ in range(3):
        state, action = decide(s, state, Replied(""))
        assert llm(action).messages[-1].content == prompts.FORMAT_NUDGE
    assert state.num_format_errors_in_a_row == 3


def test_forcing_pushes_with_the_budget_left_until_idle_turns_run_out() -> None:
    s = setup(LoopMode(forcing=True), max_idle_turns=2)
    state, _ = start(s, views(search_used=1))
    state, action = decide(s, state, Replied("answer: Paris"))
    assert state.num_forcing == 1 and state.answer == "Paris"
    assert llm(action).messages[-1].content == prompts.FORCING.format(left="search: 4 left, browse: 5 left")
    state, action = decide(s, state, Replied("answer: Dijon"))
    assert finish(action).result["answer"] == "Dijon" and state.num_forcing == 1 and state.stop == "answered"


def test_forcing_stops_when_a_budget_is_at_zero_and_keeps_its_answer_at_the_turn_cap() -> None:
    s = setup(LoopMode(forcing=True), stop_when_any_exhausted=False)
    state, _ = start(s, views(search_used=5))
    state, action = decide(s, state, Replied("answer: Paris"))
    assert finish(action).result["stop"] == "answered" and state.num_forcing == 0
    capped = setup(LoopMode(forcing=True), max_turns=1)
    state, _ = start(capped)
    state, action = decide(capped, state, Replied("answer: Paris"))
    result = finish(action).result
    assert (result["answer"], result["stop"], result["num_forcing"], result["num_turns"]) == ("Paris", "answered", 1, 1)


@pytest.mark.parametrize(("reply", "earlier", "answer"), [
    ("answer: Dijon", "Paris", "Dijon"),
    ("browse: wiki://Gustave Eiffel", "", "Gustave Eiffel"),
    ("browse: wiki://Gustave Eiffel", "Paris", "Paris"),
    ("Probably Dijon", "", "Probably Dijon"),
    ("", "", ""),
])
def test_final_turn_reply_gives_the_answer_or_a_best_guess(reply: str, earlier: str, answer: str) -> None:
    s = setup()
    state = replace(LoopState(), phase="final", answer=earlier, stop="exhausted", num_turns=3)
    state, action = decide(s, state, Replied(reply))
    result = finish(action).result
    assert (result["answer"], result["stop"], result["num_turns"]) == (answer, "exhausted", 4)
    assert result["entries"][-1]["actions"] == ([["answer", answer]] if answer else [])


def test_long_answer_gets_one_extraction_call_and_keeps_the_shorter() -> None:
    s = setup(answer_max_words=3)
    long = "He was born in Dijon, France."
    state, _ = start(s)
    state, action = decide(s, state, Replied(f"answer: {long}"))
    call = llm(action)
    assert state.phase == "extract" and call.purpose == "agent_extract" and call.sampling.stop == ("\n",)
    assert long.rstrip(".") in call.messages[1].content
    _, done = decide(s, state, Replied("Dijon"))
    assert (finish(done).result["answer"], finish(done).result["raw_answer"]) == ("Dijon", long.rstrip("."))
    assert finish(done).result["num_extractions"] == 1
    _, kept = decide(s, state, Replied(long + " Indeed, he was."))
    assert finish(kept).result["answer"] == long.rstrip(".")
    _, short = decide(setup(short_answer=False), start(s)[0], Replied(f"answer: {long}"))
    assert finish(short).result["num_extractions"] == 0


def test_an_observation_out_of_phase_is_an_error() -> None:
    s = setup()
    state, _ = start(s)
    with pytest.raises(ValueError, match="ToolsRan"):
        decide(s, state, ToolsRan((), views()))
    with pytest.raises(ValueError, match="Started"):
        decide(s, state, Started(views()))


def test_turn_cap_from_the_observed_budget() -> None:
    assert turn_cap(views(limit=2), AgentConfig()) == 6
    assert turn_cap(views(search_used=2, limit=2), AgentConfig()) == 4
    assert turn_cap(views(limit=None), AgentConfig(max_turns_cap=9)) == 9
    assert turn_cap(views(limit=100), AgentConfig()) == 48
    assert turn_cap(views(), AgentConfig(max_turns=3)) == 3


@pytest.mark.parametrize("echo", [
    # What Qwen2.5-Coder-0.5B wrote after its actions until the token limit (issue 22 run 3be667f).
    "\nbudget:\nsearch: Creed (band)\nbrowse: wiki://Creed\nbudget:\nsearch: Creed (band)",
    "\nbudget\nsearch: 1 used, 9 left (of 10 queries)\nbrowse: 1 used, 9 left (of 10 urls)\nbudget",
    "\nregime: medium\nbudget:\nsearch: Creed (band)",
    "\n" + tracker_block(views(search_used=1)),
    # The block's lines without its tag, right after the actions or on the same line.
    "\nSearch Budget Used: 1, Search Budget Remaining: 4 (of 5 queries)\nSearch Budget Used: 1",
    " Search Budget Used: 1, Search Budget Remaining: 4",
])
def test_the_agent_call_stops_where_the_reply_imitates_the_budget_block(echo: str) -> None:
    stops = llm(start(setup(LoopMode(tracker=True)))[1]).sampling.stop
    actions = "search: Creed (band)\nbrowse: wiki://Creed"
    text, finish = cut_reply(actions + echo, stops)  # what the server returns
    # The reply ends at the imitation (at most its first word, "Search", is left: no action).
    assert finish == "stop" and text.startswith(actions) and len(text) - len(actions) <= 1
    assert parse_actions(text) == parse_actions(actions)
    assert all(s not in actions for s in stops)  # the action lines themselves never stop the reply
    # Words of a query or an answer never stop it; without the block (ReAct) nothing is imitated.
    query = "search: drugs used, banned (1990s)\nanswer: widely used, then banned"
    assert cut_reply(query, stops) == (query, "stop")
    assert llm(start(setup())[1]).sampling.stop == ()


UNRELATED = "Who founded VIVA Media AG?"


def test_actions_copied_from_the_worked_example_are_not_run_and_the_agent_is_told() -> None:
    s = setup(question=UNRELATED, max_format_errors=1)
    state, _ = start(s)
    state, action = decide(s, state, Replied("search: Eiffel Tower architect\nsearch: VIVA Media AG founder"))
    assert action == CallTools((ToolCall("search", {"query": "VIVA Media AG founder"}),))
    assert state.num_example_copies == 1
    state, _ = decide(s, state, ToolsRan((ToolOutput("VIVA Media AG was founded by ..."),), views(1)))
    # Only copies: nothing runs, no answer is taken, and the note names the copied line.
    for _ in range(3):  # more than max_format_errors: a copy is never the fallback answer
        state, action = decide(s, state, Replied("browse: wiki://Gustave Eiffel\nanswer: Gustave Eiffel"))
        note = prompts.EXAMPLE_COPIED.format(line="browse: wiki://Gustave Eiffel")
        assert llm(action).messages[-1].content == note and state.answer == ""
    assert state.num_example_copies == 7 and state.views == views(1)
    state, action = decide(s, state, Replied("answer: Dieter Gorny"))
    assert finish(action).result["answer"] == "Dieter Gorny" and finish(action).result["num_example_copies"] == 7


def test_a_word_of_the_example_found_in_this_runs_results_is_fair_to_use() -> None:
    s = setup(question=UNRELATED)
    state, _ = start(s)
    state, _ = decide(s, state, Replied("search: VIVA founder"))
    state, _ = decide(s, state, ToolsRan((ToolOutput("The founder moved to Dijon in 1995."),), views(1)))
    state, action = decide(s, state, Replied("answer: Dijon"))
    assert finish(action).result["answer"] == "Dijon" and state.num_example_copies == 0
    # So is what an earlier attempt's tool results showed (BATS) ...
    earlier = replace(s, observed_before="dijon")
    state, _ = start(earlier)
    state, action = decide(earlier, state, Replied("answer: Dijon"))
    assert finish(action).result["answer"] == "Dijon"
    # ... but not the head notes: the plan and the summaries are the model's own text, and a
    # planner that copied the example ("find the Eiffel Tower's designer") makes no copy fair.
    planned = replace(s, head_notes="Plan: 1. find the designer of the Eiffel Tower, born in Dijon.")
    state, _ = start(planned)
    state, action = decide(planned, state, Replied("search: Eiffel Tower designer"))
    assert state.num_example_copies == 1 and not isinstance(action, CallTools)


def test_a_final_answer_copied_from_the_example_is_asked_for_once_more_then_dropped() -> None:
    s = setup(question=UNRELATED)
    state = replace(LoopState(), phase="final", stop="stale", num_turns=3)
    state, action = decide(s, state, Replied("answer: Gustave Eiffel"))
    assert llm(action).is_last_step and state.phase == "final" and state.asked_again
    assert llm(action).messages[-1].content == prompts.EXAMPLE_COPIED_FINAL.format(line="answer: Gustave Eiffel")
    state, action = decide(s, state, Replied("answer: Dijon"))
    result = finish(action).result
    assert (result["answer"], result["stop"], result["num_example_copies"]) == ("", "stale", 2)
    # Asked again, a real answer stands; an earlier (uncopied) answer stands over a copy.
    state = replace(LoopState(), phase="final", stop="stale", num_turns=3)
    state, _ = decide(s, state, Replied("Gustave Eiffel"))
    state, action = decide(s, state, Replied("answer: Dieter Gorny"))
    assert finish(action).result["answer"] == "Dieter Gorny"
    state = replace(LoopState(), phase="final", stop="exhausted", answer="VIVA", num_turns=3)
    state, action = decide(s, state, Replied("browse: wiki://Gustave Eiffel"))
    assert finish(action).result["answer"] == "VIVA"
