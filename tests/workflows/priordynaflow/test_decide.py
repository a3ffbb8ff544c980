"""The pure episode steps: planning a turn, deciding after it (every routing branch, the state
update and the step record) and finishing the episode. No graph, no event loop, no I/O."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from workflows.priordynaflow.agents import CODE_ROSTER, MATH_ROSTER, get_roster, roster_names
from workflows.priordynaflow.config import END, RouterConfig, WorkflowOptions
from workflows.priordynaflow.episode import (
    MAX_OBSERVATION_CHARS,
    EpisodeState,
    Observation,
    Turn,
    decide,
    finish,
    initial_state,
    resolve,
    result,
    rosters_for,
    start_turn,
)
from workflows.priordynaflow.persistence import Learned
from workflows.priordynaflow.qtable import QTable, Transition
from workflows.priordynaflow.router import Candidates, step_reward, terminal_reward
from workflows.priordynaflow.tasks import get_dataset

GSM8K = get_dataset("gsm8k")
TASK = {"question": "What is 2 + 2?", "answer": "4"}
# Past cold start, no exploration, no token cost: the Q values and the marker alone decide.
WARM = RouterConfig(num_explore_steps=0, epsilon=0.0, min_epsilon=0.0, token_penalty_per_1k=0.0)


def warm_table(**values: float) -> QTable:
    """A math table past cold start with ``solver``'s row set from ``values``."""
    table = QTable.empty(MATH_ROSTER.names, WARM)
    table.num_steps = 100
    for action, value in values.items():
        table.set_value("solver", action, value)
    return table


def state_after(path: list[str], **changes: Any) -> EpisodeState:
    state: dict[str, Any] = {**initial_state(TASK), "roster": "math", "path": path, **changes}
    return state  # type: ignore[return-value]


def turn_for(agent: str = "solver", candidates: tuple[str, ...] = ("analyst", "inspector", END), *,
             config: RouterConfig = WARM, roster=MATH_ROSTER, dataset=GSM8K) -> Turn:
    return Turn(roster, agent, dataset, roster.name, config, Candidates(actions=candidates), ())


def reply(text: str, num_tokens: int = 100, **kwargs: Any) -> Observation:
    return Observation(text=text, num_tokens=num_tokens, **kwargs)


# ---------------------------------------------------------------- start_turn


def test_start_turn_offers_the_top_candidates_and_shows_them_in_the_prompt():
    table = warm_table(inspector=5.0, analyst=3.0, programmer=-1.0)
    notes = [{"agent": "solver", "text": "I think it is 4.", "observation": ""}]
    state = state_after(["solver"], notes=notes)
    turn = start_turn(state, roster=MATH_ROSTER, agent="solver", dataset=GSM8K, family="math",
                      table=table, config=WARM, rng=random.Random(0))
    assert turn.candidates.actions == ("inspector", "analyst")
    system, user = turn.messages
    assert system.role == "system" and user.role == "user"
    assert system.content.startswith(MATH_ROSTER.get("solver").prompt)
    assert GSM8K.answer_format in system.content
    assert "Agents so far: solver -> solver." in system.content  # the path ends with this turn
    assert "- inspector:" in system.content and "- programmer:" not in system.content
    assert user.content.startswith("Task:\nWhat is 2 + 2?") and "[solver]\nI think it is 4." in user.content


def test_start_turn_draws_the_random_candidate_from_the_injected_rng():
    table = warm_table(inspector=5.0, analyst=3.0)
    table.epsilon = 1.0
    state = state_after([])
    draws = [start_turn(state, roster=MATH_ROSTER, agent="solver", dataset=GSM8K, family="math", table=table,
                        config=WARM, rng=random.Random(seed)).candidates for seed in (1, 1)]
    assert draws[0] == draws[1] and draws[0].random_pick is not None


def test_only_agents_with_the_python_tool_run_code():
    text = "```python\nprint(4)\n```"
    assert turn_for("programmer").code_to_run(text) == "print(4)"
    assert turn_for("solver").code_to_run(text) is None
    assert turn_for("programmer").code_to_run("no code here") is None


# ---------------------------------------------------------------- decide: routing branches


def test_the_agents_valid_choice_is_followed_and_its_step_reward_counted():
    table = warm_table(analyst=1.0, inspector=2.0)
    action = decide(state_after([]), turn_for(), reply("#### 5\nNEXT: analyst"), table)
    reward = step_reward(table, current="solver", previous=None, chosen="analyst", num_tokens=100, config=WARM)
    assert action.next == "analyst" and action.decision.reason == "agent"
    assert action.update["transitions"] == [["solver", "analyst", reward]]
    assert action.update["cumulative_reward"] == reward
    assert action.update["stop_reason"] == "" and action.update["path"] == ["solver"]


def test_greedy_selection_takes_the_best_candidate_whatever_the_agent_says():
    config = RouterConfig(num_explore_steps=0, epsilon=0.0, min_epsilon=0.0, selection="greedy")
    table = warm_table(analyst=1.0, inspector=2.0)
    action = decide(state_after([]), turn_for(config=config), reply("NEXT: analyst"), table)
    assert action.next == "inspector" and action.decision.reason == "greedy"
    assert action.decision.proposed == "analyst"


def test_a_name_outside_the_candidates_is_replaced_by_the_best_and_counted():
    table = warm_table(analyst=1.0, inspector=2.0)
    action = decide(state_after([]), turn_for(), reply("NEXT: programmer"), table)
    assert action.next == "inspector" and action.decision.reason == "off_candidate"
    assert action.update["num_off_candidate"] == 1 and action.update["num_unparsable"] == 0


def test_no_marker_ends_the_episode_as_unparsable_without_a_transition():
    action = decide(state_after([]), turn_for(), reply("#### 4"), warm_table())
    assert action.next == END and action.decision.reason == "unparsable"
    assert action.update["num_unparsable"] == 1 and action.update["stop_reason"] == "unparsable"
    assert action.update["transitions"] == [] and action.update["cumulative_reward"] == 0.0


def test_no_marker_but_a_final_answer_ends_the_episode_without_counting_it_unparsable():
    action = decide(state_after([]), turn_for(), reply("Final answer: #### 4"), warm_table())
    assert action.next == END and action.decision.reason == "final_answer"
    assert action.update["num_unparsable"] == 0 and action.update["stop_reason"] == "final_answer"


def test_choosing_end_stops_with_the_agents_reason_and_no_step_reward():
    action = decide(state_after([]), turn_for(), reply("#### 4\nNEXT: END"), warm_table())
    assert action.next == END and action.decision.reason == "agent"
    assert action.update["stop_reason"] == "agent" and action.update["transitions"] == []


def test_early_stop_records_the_penalised_step_and_ends():
    table = warm_table(analyst=1.0)
    state = state_after(["inspector"], cumulative_reward=-45.0, transitions=[["x", "inspector", -45.0]])
    action = decide(state, turn_for(candidates=("analyst",)), reply("NEXT: analyst"), table)
    reward = step_reward(table, current="solver", previous="inspector", chosen="analyst", num_tokens=100, config=WARM)
    assert action.next == END and action.decision.reason == "early_stop"
    assert action.update["transitions"][-1] == ["solver", "analyst", reward]
    assert action.update["cumulative_reward"] == -45.0 + reward
    assert action.update["stop_reason"] == "early_stop"


def test_the_path_cap_ends_the_episode_without_a_step_transition():
    config = RouterConfig(num_explore_steps=0, epsilon=0.0, min_epsilon=0.0, max_path_length=2)
    action = decide(state_after(["analyst"]), turn_for(config=config), reply("NEXT: analyst"), warm_table())
    assert action.next == END and action.decision.reason == "max_path"
    assert action.update["transitions"] == [] and action.update["stop_reason"] == "max_path"
    assert action.update["path"] == ["analyst", "solver"]


# ---------------------------------------------------------------- decide: state update and record


def test_counters_notes_and_tokens_accumulate():
    state = state_after(["analyst"], num_tokens=50, num_llm_calls=1, notes=[{"agent": "analyst", "text": "hi",
                                                                           "observation": ""}])
    action = decide(state, turn_for(), reply("NEXT: inspector", num_tokens=70), warm_table())
    update = action.update
    assert update["num_tokens"] == 120 and update["num_llm_calls"] == 2 and update["last_turn_tokens"] == 70
    assert update["num_tool_calls"] == 0
    assert update["notes"][-1] == {"agent": "solver", "text": "NEXT: inspector", "observation": ""}
    assert len(update["notes"]) == 2


def test_a_program_run_is_counted_and_its_output_tail_kept_in_the_note():
    output = "x" * (MAX_OBSERVATION_CHARS + 50) + "\n4"
    obs = reply("```python\nprint(4)\n```\nNEXT: inspector", code="print(4)", output=output)
    action = decide(state_after([]), turn_for("programmer"), obs, warm_table())
    assert action.update["num_tool_calls"] == 1 and action.record["ran_code"] is True
    assert action.update["notes"][-1]["observation"] == output[-MAX_OBSERVATION_CHARS:]


def test_output_without_a_program_run_is_not_shown():
    action = decide(state_after([]), turn_for(), reply("NEXT: inspector", output="stray"), warm_table())
    assert action.update["notes"][-1]["observation"] == "" and action.record["ran_code"] is False


@pytest.mark.parametrize(
    ("text", "output", "ok", "before", "expected", "from_program"),
    [
        ("#### 5\nNEXT: END", "", None, "4", "5", False),  # the reply states a solution
        ("NEXT: END", "", None, "4", "4", False),  # none stated: the previous one stays
        ("NEXT: END", "#### 6", True, None, "6", True),  # the program's output states it
        # The programmer answers by its program's output, never by the format in its source,
        # nor by a failed run's traceback (which quotes the source).
        ("```python\nprint(f'#### {x}')\n```", "Traceback: print(f'#### {x}')", False, "4", "4", False),
        ("```python\nprint('#### 7')\n```\n#### 5", "#### 6", True, None, "6", True),
        ("```python\nprint('#### 7')\n```\n#### 5", "#### 7", False, None, "5", False),
        ("```python\nx = 1\nprint(f'#### {x}", "", None, "4", "4", False),  # a cut-off program: no answer
    ],
)
def test_a_solving_role_replaces_the_solution_it_states(text, output, ok, before, expected, from_program):
    obs = reply(text, code="print(6)" if output else None, output=output, program_ok=ok)
    action = decide(state_after([], solution=before), turn_for("programmer"), obs, warm_table())
    assert (action.update["solution"], action.update["solution_from_program"]) == (expected, from_program)


def test_the_programmer_is_asked_for_a_program_not_the_datasets_answer_line():
    from workflows.priordynaflow.prompt import agent_messages

    def system(agent: str) -> str:
        return agent_messages(MATH_ROSTER, agent, GSM8K, TASK, path=(agent,), candidates=(END,), notes=[])[0].content

    assert "print('####', answer)" in system("programmer") and GSM8K.answer_format not in system("programmer")
    assert GSM8K.answer_format in system("solver")


def test_a_role_that_does_not_produce_solutions_keeps_the_coders_solution():
    code = get_dataset("humaneval")
    task = {"prompt": "def add(a, b):\n", "entry_point": "add", "test": "def check(c): pass\n"}
    state = state_after(["coder"], task=task, roster="code", solution="def add(a, b):\n    return a + b")
    text = "```python\ndef add(a, b):\n    return 0\n```\nNEXT: END"
    table = QTable.empty(CODE_ROSTER.names, WARM)
    tester = decide(state, turn_for("tester", (END,), roster=CODE_ROSTER, dataset=code), reply(text), table)
    coder = decide(state, turn_for("coder", (END,), roster=CODE_ROSTER, dataset=code), reply(text), table)
    assert tester.update["solution"] == state["solution"]
    assert coder.update["solution"] != state["solution"] and "return 0" in coder.update["solution"]


def test_the_record_names_candidates_decision_reward_and_q_values():
    table = warm_table(analyst=1.0, inspector=2.0)
    turn = Turn(MATH_ROSTER, "solver", GSM8K, "math", WARM,
                Candidates(actions=("inspector", "analyst"), random_pick="analyst", pruned=("programmer",)), ())
    action = decide(state_after([]), turn, reply("NEXT: analyst", num_tokens=42), table)
    assert action.record == {
        "agent": "solver",
        "family": "math",
        "candidates": ["inspector", "analyst"],
        "random_pick": "analyst",
        "exploring": False,
        "pruned": ["programmer"],
        "q_values": table.row("solver"),
        "proposed": "analyst",
        "proposed_by": "marker",
        "next": "analyst",
        "reason": "agent",
        "reward": action.decision.reward,
        "cumulative_reward": action.update["cumulative_reward"],
        "tokens": 42,
        "ran_code": False,
        "retry": False,
    }


# ---------------------------------------------------------------- finish


def test_finish_adds_the_terminal_transition_with_the_outcomes_reward():
    config = RouterConfig(min_path_length=3, path_penalty=10.0, token_penalty_per_1k=1.0)
    state = state_after(["solver", "inspector"], transitions=[["solver", "inspector", -7.5]],
                        cumulative_reward=-7.5, last_turn_tokens=500, stop_reason="agent")
    won, lost = finish(state, True, config), finish(state, False, config)
    paid = terminal_reward(success=True, path_length=2, num_tokens=500, config=config)
    assert paid == 100.0 - 10.0 - 0.5
    assert won.transitions == (Transition("solver", "inspector", -7.5), Transition("inspector", END, paid))
    assert won.cumulative_reward == -7.5 + paid and won.has_outcome
    assert lost.transitions[-1].reward == terminal_reward(success=False, path_length=2, num_tokens=500,
                                                          config=config)


def test_finish_after_an_early_stop_adds_nothing():
    state = state_after(["solver"], transitions=[["solver", "analyst", -60.0]], cumulative_reward=-60.0,
                        stop_reason="early_stop")
    ending = finish(state, False, WARM)
    assert ending.transitions == (Transition("solver", "analyst", -60.0),) and ending.cumulative_reward == -60.0


def test_finish_of_an_empty_path_adds_nothing():
    ending = finish(state_after([]), True, WARM)
    assert ending.transitions == () and ending.cumulative_reward == 0.0


def test_without_a_gold_answer_there_is_no_outcome_to_learn_from():
    ending = finish(state_after(["solver"], stop_reason="agent"), None, WARM)
    assert not ending.has_outcome
    assert ending.transitions[-1].reward == terminal_reward(success=False, path_length=1, num_tokens=0, config=WARM)


def test_ending_record_and_update():
    table = warm_table()
    table.num_steps, table.epsilon = 12, 0.25
    state = state_after(["solver"], stop_reason="agent")
    ending = finish(state, True, WARM)
    json_transitions = [["solver", END, ending.transitions[-1].reward]]
    assert ending.record(state, family="math", schedule=Learned.of(table)) == {
        "family": "math",
        "path": ["solver"],
        "success": True,
        "stop_reason": "agent",
        "transitions": json_transitions,
        "cumulative_reward": ending.cumulative_reward,
        "learned": True,
        "epsilon": 0.25,
        "num_learned_steps": 12,
    }
    # Not learned (frozen, no gold): no schedule, so a resumed run records the same END step.
    unlearned = ending.record(state, family="math", schedule=None)
    assert unlearned["epsilon"] is None and unlearned["num_learned_steps"] is None
    assert ending.update(learned=False) == {"success": True, "learned": False,
                                            "cumulative_reward": ending.cumulative_reward,
                                            "transitions": json_transitions}


# ---------------------------------------------------------------- options and state


def test_resolve_takes_the_options_else_infers_from_the_task():
    code_task = {"prompt": "def f():\n", "entry_point": "f", "test": ""}
    assert resolve(WorkflowOptions(), code_task)[0].name == "humaneval"
    dataset, roster, family = resolve(WorkflowOptions(), code_task)
    assert (roster.name, family) == ("code-check", "code-check")  # code tasks: the runner's roster
    assert resolve(WorkflowOptions(roster="code"), code_task)[1:] == (get_roster("code"), "code")
    dataset, roster, family = resolve(WorkflowOptions(dataset="math", family="shared"), TASK)
    assert (dataset.name, roster.name, family) == ("math", "math", "shared")


def test_rosters_for_is_the_named_roster_else_every_registered_one():
    assert rosters_for(WorkflowOptions(dataset="humaneval")) == [get_roster("code-check")]
    assert rosters_for(WorkflowOptions(roster="code")) == [CODE_ROSTER]
    assert rosters_for(WorkflowOptions(roster="math")) == [MATH_ROSTER]
    assert rosters_for(WorkflowOptions()) == [get_roster(n) for n in roster_names()]


def test_result_reads_the_final_state():
    state = state_after(["solver"], solution="4", success=True, cumulative_reward=3.0, stop_reason="agent",
                        num_tokens=9, num_llm_calls=1, learned=True)
    assert result(state) == {"answer": "4", "success": True, "path": ["solver"], "stop_reason": "agent",
                             "reward": 3.0, "num_tokens": 9, "num_llm_calls": 1, "num_unparsable": 0,
                             "learned": True}
    assert result({})["path"] == [] and result({})["answer"] is None


# ---------------------------------------------------------------- the constrained routing call


def test_a_constrained_choice_wins_over_the_marker_and_is_recorded_as_such():
    action = decide(state_after([]), turn_for(), reply("NEXT: analyst", choice="inspector"), warm_table())
    assert (action.next, action.decision.source, action.record["proposed_by"]) == ("inspector", "choice", "choice")


def test_a_choice_naming_no_candidate_falls_back_to_the_marker():
    action = decide(state_after([]), turn_for(), reply("NEXT: analyst", choice="I think the analyst"), warm_table())
    assert (action.next, action.decision.source) == ("analyst", "choice")  # named inside the reply
    action = decide(state_after([]), turn_for(), reply("NEXT: analyst", choice="programmer"), warm_table())
    assert (action.next, action.decision.source) == ("analyst", "marker")  # not a candidate


def test_a_reply_cut_before_its_marker_is_routed_by_the_choice_not_ended():
    cut = "Let x be the number of apples. Then 3x + 2 = 11, so"  # max_tokens ran out
    assert decide(state_after([]), turn_for(), reply(cut), warm_table()).decision.reason == "unparsable"
    action = decide(state_after([]), turn_for(), reply(cut, choice="inspector"), warm_table())
    assert action.next == "inspector" and action.decision.reason == "agent"


@pytest.mark.parametrize(("mode", "text", "candidates", "selection", "expected"), [
    ("marker", "no marker", ("analyst", END), "agent", False),
    ("constrained", "NEXT: analyst", ("analyst", END), "agent", True),
    ("auto", "NEXT: analyst", ("analyst", END), "agent", False),
    ("auto", "NEXT: programmer", ("analyst", END), "agent", True),  # not a candidate
    ("auto", "cut off befo", ("analyst", END), "agent", True),
    ("constrained", "x", (END,), "agent", False),  # nothing to choose
    ("constrained", "x", ("analyst", END), "greedy", False),  # the router ignores the agent
])
def test_when_the_routing_call_is_made(mode, text, candidates, selection, expected):
    from workflows.priordynaflow.episode import needs_choice_call

    turn = turn_for(candidates=candidates, config=RouterConfig(selection=selection))
    assert needs_choice_call(turn, text, mode) is expected


def test_the_routing_call_is_small_and_asks_for_one_of_the_candidates():
    from workflows.priordynaflow.prompt import ROUTE_REPLY_CHARS, choice_messages

    state = state_after(["solver"])
    state["notes"] = [{"agent": "solver", "text": "TEAMMATE NOTE " * 50}]
    turn = start_turn(state, roster=MATH_ROSTER, agent="analyst", dataset=GSM8K, family="math",
                      table=warm_table(), config=WARM, rng=random.Random(0))
    assert turn.path == ("solver", "analyst") and turn.question == GSM8K.question(state["task"])
    reply = "Let me think. " * 200 + "So the answer is 4.\nNEXT: inspector"
    messages = choice_messages(turn.roster, turn.question, turn.path, reply, ("inspector", END))
    text = "\n".join(m.content for m in messages)
    assert turn.question in text and text.count("So the answer is 4.\nNEXT: inspector") == 1
    assert "solver -> analyst" in text and "by analyst (its end)" in text
    assert MATH_ROSTER.get("inspector").description in text and "inspector, END" in messages[-1].content
    # Neither the agent's role prompt nor the teammates' notes are sent again.
    assert MATH_ROSTER.get("analyst").prompt not in text and "TEAMMATE NOTE" not in text
    assert len(text) < len(turn.question) + ROUTE_REPLY_CHARS + 800
    assert len(text) < sum(len(m.content) for m in turn.messages) + len(reply)


def test_the_routing_call_stays_bounded_however_long_the_reply():
    turn = start_turn(state_after(["solver"]), roster=MATH_ROSTER, agent="inspector", dataset=GSM8K,
                      family="math", table=warm_table(), config=WARM, rng=random.Random(0))

    def size(reply: str, route_context: str) -> int:
        return sum(len(m.content) for m in turn.routing_messages(reply, route_context))

    short, long = "x" * 700 + "\n#### 4\nNEXT: END", "x" * 50_000 + "\n#### 4\nNEXT: END"
    assert size(short, "compact") == size(long, "compact") < 1500
    assert size(long, "full") - size(short, "full") == len(long) - len(short)  # the whole reply again


def test_the_full_routing_call_resends_the_turn_for_comparison():
    state = state_after(["solver"], notes=[{"agent": "solver", "text": "TEAMMATE NOTE", "observation": ""}])
    turn = start_turn(state, roster=MATH_ROSTER, agent="inspector", dataset=GSM8K, family="math",
                      table=warm_table(), config=WARM, rng=random.Random(0))
    full = turn.routing_messages("x = 4", "full")
    assert full[: len(turn.messages)] == turn.messages and [m.role for m in full[-2:]] == ["assistant", "user"]
    assert full[-1].content.startswith("Who works next? Answer with exactly one of: ")
    assert MATH_ROSTER.get("inspector").prompt in full[0].content and "TEAMMATE NOTE" in full[1].content
    compact = "\n".join(m.content for m in turn.routing_messages("x = 4", "compact"))
    assert "x = 4" in compact and "TEAMMATE NOTE" not in compact
    assert MATH_ROSTER.get("inspector").prompt not in compact and GSM8K.answer_format not in compact


def test_end_is_not_offered_before_min_agents_before_end():
    config = RouterConfig(num_explore_steps=0, epsilon=0.0, min_epsilon=0.0, min_agents_before_end=2)
    table = warm_table(inspector=1.0, END=5.0)
    first = start_turn(state_after([]), roster=MATH_ROSTER, agent="solver", dataset=GSM8K, family="math",
                       table=table, config=config, rng=random.Random(0))
    assert END not in first.candidates.actions and "inspector" in first.candidates.actions
    second = start_turn(state_after(["solver"]), roster=MATH_ROSTER, agent="solver", dataset=GSM8K,
                        family="math", table=table, config=config, rng=random.Random(0))
    assert END in second.candidates.actions
    cold = replace(config, num_explore_steps=10**6)
    assert END not in start_turn(state_after([]), roster=MATH_ROSTER, agent="solver", dataset=GSM8K, family="math",
                                 table=table, config=cold, rng=random.Random(0)).candidates.actions
    # No marker while END is not offered: the best candidate runs instead of ending after one agent.
    action = decide(state_after([]), first, reply("no marker"), table)
    assert action.next == "inspector" and action.decision.reason == "unparsable"


def test_without_self_loops_the_running_agent_is_never_its_own_successor():
    # The table prefers solver -> solver; with self_loops off it is not offered, warm or cold, and
    # a marker naming the running agent is replaced by the best candidate.
    config = RouterConfig(num_explore_steps=0, epsilon=1.0, min_epsilon=1.0, self_loops=False)
    table = warm_table(solver=9.0, inspector=1.0, END=0.5)
    for seed in range(20):
        warm = start_turn(state_after(["analyst"]), roster=MATH_ROSTER, agent="solver", dataset=GSM8K,
                          family="math", table=table, config=config, rng=random.Random(seed))
        assert "solver" not in warm.candidates.actions and "inspector" in warm.candidates.actions
    cold = start_turn(state_after([]), roster=MATH_ROSTER, agent="solver", dataset=GSM8K, family="math",
                      table=table, config=replace(config, num_explore_steps=10**6), rng=random.Random(0))
    assert cold.candidates.exploring and "solver" not in cold.candidates.actions
    assert set(cold.candidates.actions) == {"analyst", "programmer", "inspector", END}
    action = decide(state_after(["analyst"]), warm, reply("#### 4\nNEXT: solver"), table)
    assert action.next != "solver" and action.decision.reason == "off_candidate"
    # The reference behaviour stays the default.
    looped = start_turn(state_after(["analyst"]), roster=MATH_ROSTER, agent="solver", dataset=GSM8K,
                        family="math", table=table, config=replace(config, self_loops=True), rng=random.Random(0))
    assert looped.candidates.actions[0] == "solver"


# ---------------------------------------------------------------- the runner (checks the shown examples)

def test_the_runner_proposes_end_on_a_pass_and_a_teammate_on_a_failure() -> None:
    from workflows.priordynaflow.agents import CODE_CHECK_ROSTER
    from workflows.priordynaflow.episode import check_reply, needs_choice_call

    mbpp = get_dataset("mbpp")
    runner = turn_for("runner", ("runner", END, "reviewer", "coder"), roster=CODE_CHECK_ROSTER, dataset=mbpp)
    assert check_reply(runner, True).endswith("NEXT: END")
    assert check_reply(runner, False).endswith("NEXT: reviewer")  # not itself, not END
    assert check_reply(runner, None).endswith("NEXT: runner")  # no example shown: the best candidate
    # No code yet (the coder wrote none): a teammate, never END, even when END is the best value.
    first_end = replace(runner, candidates=Candidates(actions=(END, "runner", "coder")))
    assert check_reply(first_end, None).endswith("NEXT: END")  # code without examples may stand
    assert check_reply(first_end, None, answered=False) == (
        "There is nothing to check yet: nobody has written the code.\nNEXT: coder")
    only_end = replace(runner, candidates=Candidates(actions=(END,)))
    assert check_reply(only_end, False).endswith("NEXT: END")
    # No model call: no routing call either, whatever the options; a turn of 0 tokens and 0 calls.
    assert not needs_choice_call(runner, "", "constrained") and runner.role.checks_examples
    state = {**initial_state({"prompt": "p", "test_list": ["assert f() == 1"]}), "roster": "code-check",
             "path": ["coder"], "solution": "def f():\n    return 2\n", "num_llm_calls": 1}
    failed = Observation(check_reply(runner, False), 0, code="program", output="AssertionError", num_llm_calls=0)
    action = decide(state, runner, failed, QTable.empty(CODE_CHECK_ROSTER.names, WARM))  # type: ignore[arg-type]
    assert action.next == "reviewer" and action.decision.reason == "agent"
    assert action.update["num_llm_calls"] == 1 and action.update["num_tokens"] == 0
    assert action.update["solution"] == state["solution"]  # the runner never replaces the code
    assert action.update["notes"][-1]["observation"] == "AssertionError"  # the teammate sees why


def test_the_math_checker_never_ends_an_episode_that_has_no_answer() -> None:
    """The CPU run of e87552b: programs timed out in the sandbox, the programmer's reply (code
    only) stated no answer, and a trained table whose best value after the checker was END ended
    88 of 120 episodes there with no answer at all."""
    from workflows.priordynaflow.agents import MATH_CHECK_ROSTER
    from workflows.priordynaflow.episode import check_reply

    checker = turn_for("checker", (END, "inspector", "checker", "programmer"), roster=MATH_CHECK_ROSTER,
                       dataset=GSM8K)
    assert check_reply(checker, None, "program", answered=False).endswith("NEXT: inspector")
    assert check_reply(checker, False, "program").endswith("NEXT: inspector")
    assert check_reply(checker, True, "program").endswith("NEXT: END")
    only_end = replace(checker, candidates=Candidates(actions=(END,)))
    assert check_reply(only_end, None, "program", answered=False).endswith("NEXT: END")  # path at its limit
    state = {**initial_state({"question": "q", "answer": "4"}), "roster": "math-check", "path": ["programmer"],
             "solution": None, "num_llm_calls": 1}
    table = QTable.empty(MATH_CHECK_ROSTER.names, WARM)
    table.q.setdefault("checker", {})[END] = 50.0
    reply = Observation(check_reply(checker, None, "program", answered=False), 0, num_llm_calls=0)
    action = decide(state, checker, reply, table)  # type: ignore[arg-type]
    assert action.next == "inspector" and action.update["solution"] is None


def test_a_failed_check_may_end_only_when_asked_and_when_end_leads() -> None:
    from workflows.priordynaflow.agents import CODE_CHECK_ROSTER
    from workflows.priordynaflow.episode import check_reply

    mbpp = get_dataset("mbpp")
    opted = replace(WARM, end_after_failed_check=True)
    end_leads = turn_for("runner", (END, "coder", "reviewer"), roster=CODE_CHECK_ROSTER, dataset=mbpp, config=opted)
    assert check_reply(end_leads, False).endswith("NEXT: END")  # retries valued below stopping
    assert check_reply(replace(end_leads, config=WARM), False).endswith("NEXT: coder")  # the default
    coder_leads = replace(end_leads, candidates=Candidates(actions=("coder", END, "reviewer")))
    assert check_reply(coder_leads, False).endswith("NEXT: coder")
    # No code yet: a teammate, whatever the option says.
    assert check_reply(end_leads, None, answered=False).endswith("NEXT: coder")


def test_a_failed_check_makes_the_next_turn_a_retry_back_to_the_checker_when_asked() -> None:
    from workflows.priordynaflow.agents import CODE_CHECK_ROSTER, MATH_CHECK_ROSTER
    from workflows.priordynaflow.episode import check_reply

    mbpp = get_dataset("mbpp")
    task = {"prompt": "p", "entry_point": "f", "test_list": ["assert f() == 1"]}
    runner = turn_for("runner", ("reviewer", "coder"), roster=CODE_CHECK_ROSTER, dataset=mbpp)
    state = {**initial_state(task), "roster": "code-check", "path": ["coder"], "solution": "def f():\n    return 2\n",
             "notes": [{"agent": "coder", "text": "```python\ndef f():\n    return 2\n```", "observation": ""}]}
    failed = decide(state, runner, Observation(check_reply(runner, False), 0, code="x", output="AssertionError",
                                               num_llm_calls=0, check_failed=True),
                    QTable.empty(CODE_CHECK_ROSTER.names, WARM))  # type: ignore[arg-type]
    assert failed.update["retry_of"] == "runner" and failed.next == "reviewer"
    after = {**state, **failed.update}
    table = QTable.empty(CODE_CHECK_ROSTER.names, WARM)

    def plan(retry: str, agent: str = "coder") -> Turn:
        return start_turn(after, roster=CODE_CHECK_ROSTER, agent=agent, dataset=mbpp, family="code-check",
                          table=table, config=WARM, rng=random.Random(0), retry=retry)

    routed, fix, fresh = plan("turn"), plan("fix"), plan("fresh")
    assert not routed.retry and len(routed.candidates.actions) > 1 and "NEXT:" in routed.messages[0].content
    assert fix.retry and fix.hands_to == "runner" and fix.candidates.actions == ("runner",)
    assert "NEXT:" not in fix.messages[0].content and "AssertionError" in fix.messages[1].content
    assert fresh.retry and "[coder]" not in fresh.messages[1].content and "Notes" not in fresh.messages[1].content
    # Only the author tries again: the reviewer after the failure has an ordinary turn.
    reviewer = plan("fresh", "reviewer")
    assert not reviewer.retry and len(reviewer.candidates.actions) > 1 and "[runner]" in reviewer.messages[1].content
    # The retry's turn (no check) clears it: the turn after is no retry.
    fixed = decide(after, fix, reply("```python\ndef f():\n    return 1\n```"), table)  # type: ignore[arg-type]
    assert fixed.next == "runner" and fixed.update["retry_of"] == ""
    # A role with its own hand-off keeps it (the math programmer always goes to the checker).
    math_state = {**initial_state({"question": "q", "answer": "4"}), "roster": "math-check",
                  "path": ["programmer", "checker"], "retry_of": "checker"}
    programmer = start_turn(math_state, roster=MATH_CHECK_ROSTER, agent="programmer", dataset=GSM8K,
                            family="math-check", table=QTable.empty(MATH_CHECK_ROSTER.names, WARM), config=WARM,
                            rng=random.Random(0), retry="fresh")
    assert programmer.retry and programmer.hands_to == "checker"


def test_a_checker_that_returns_to_the_author_sends_a_failed_check_back_whatever_leads() -> None:
    from orchestrator.errors import BadInputError
    from workflows.priordynaflow.agents import MATH_CHECK_RETRY_ROSTER, MATH_CHECK_ROSTER, AgentRole
    from workflows.priordynaflow.episode import check_reply

    table = QTable.empty(MATH_CHECK_ROSTER.names, WARM)
    table.num_steps = 100
    for action, value in {END: 6.0, "solver": 5.0, "inspector": 4.0, "analyst": 3.0, "programmer": -5.0}.items():
        table.set_value("checker", action, value)  # the programmer's retries were never worth it
    state = {**initial_state(TASK), "roster": "math-check-retry", "path": ["programmer"], "solution": None,
             "notes": [{"agent": "programmer", "text": "```python\nprint(x)\n```", "observation": "NameError"}]}

    def plan(roster, agent: str = "checker", at=state, retry: str = "turn") -> Turn:
        return start_turn(at, roster=roster, agent=agent, dataset=GSM8K, family="math-check", table=table,
                          config=WARM, rng=random.Random(0), retry=retry)

    plain, returning = plan(MATH_CHECK_ROSTER), plan(MATH_CHECK_RETRY_ROSTER)
    assert "programmer" not in plain.candidates.actions and returning.candidates.actions[-1] == "programmer"
    assert check_reply(plain, False, "program").endswith("NEXT: solver")  # the best-valued teammate
    for failed in (check_reply(returning, False, "program"), check_reply(returning, None, "program", answered=False)):
        assert failed.endswith("NEXT: programmer")
    assert check_reply(returning, True, "program").endswith(f"NEXT: {END}")  # a pass still ends
    back = decide(state, returning, Observation(check_reply(returning, None, "program", answered=False), 0,
                                                num_llm_calls=0, check_failed=True), table)  # type: ignore[arg-type]
    assert back.next == "programmer" and back.update["retry_of"] == "checker"
    # The roster's fresh retry: the programmer tries again on the task alone, back to the checker.
    again = plan(MATH_CHECK_RETRY_ROSTER, "programmer", {**state, **back.update},
                 MATH_CHECK_RETRY_ROSTER.retry)
    assert again.retry and again.hands_to == "checker" and "NameError" not in again.messages[-1].content
    with pytest.raises(BadInputError, match="returns_to_author"):
        AgentRole("solver2", "solves", "Solve it.", returns_to_author=True)
