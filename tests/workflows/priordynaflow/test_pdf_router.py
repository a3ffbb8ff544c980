"""Candidate selection, pruning, marker parsing, rewards and early stopping of the router."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from workflows.priordynaflow.config import END, RouterConfig
from workflows.priordynaflow.qtable import QTable
from workflows.priordynaflow.router import (
    Candidates,
    decide,
    parse_next,
    select_candidates,
    step_reward,
    terminal_reward,
)

AGENTS = ("solver", "analyst", "programmer", "inspector")
# Past cold start, no exploration, so the Q values alone decide.
WARM = RouterConfig(num_explore_steps=0, epsilon=0.0, min_epsilon=0.0)


def table_with(values: dict[str, float], *, epsilon: float = 0.0, num_steps: int = 100) -> QTable:
    table = QTable.empty(AGENTS)
    table.epsilon = epsilon
    table.num_steps = num_steps
    for action, value in values.items():
        table.set_value("solver", action, value)
    return table


class NeverRandom(random.Random):
    def random(self) -> float:  # type: ignore[override]
        return 0.99


class AlwaysRandom(random.Random):
    def random(self) -> float:  # type: ignore[override]
        return 0.0


def test_candidates_are_the_top_two_value_groups_with_ties_kept():
    table = table_with({"analyst": 5.0, "programmer": 5.0, "inspector": 3.0, END: 1.0, "solver": -2.0})
    got = select_candidates(table, "solver", WARM, NeverRandom())
    assert set(got.actions) == {"analyst", "programmer", "inspector"}
    assert got.actions[-1] == "inspector"  # best value first
    assert got.random_pick is None and not got.exploring


def test_epsilon_adds_one_random_action_not_already_offered():
    table = table_with({"analyst": 5.0, "inspector": 3.0, END: 1.0}, epsilon=0.5)
    got = select_candidates(table, "solver", WARM, AlwaysRandom(7))
    assert got.actions[:2] == ("analyst", "inspector")
    assert got.random_pick in {END, "solver", "programmer"}
    assert got.actions[2] == got.random_pick and len(got.actions) == 3


def test_seeded_rng_makes_selection_reproducible():
    table = table_with({"analyst": 5.0, "inspector": 3.0}, epsilon=0.9)
    picks = [select_candidates(table, "solver", WARM, random.Random(3)).actions for _ in range(3)]
    assert picks[0] == picks[1] == picks[2]


def test_frozen_config_never_adds_a_random_action():
    table = table_with({"analyst": 5.0, "inspector": 3.0}, epsilon=1.0)
    got = select_candidates(table, "solver", replace(WARM, frozen=True), AlwaysRandom())
    assert got.random_pick is None and set(got.actions) == {"analyst", "inspector"}


def test_cold_start_offers_every_node_until_enough_steps_were_learned():
    config = RouterConfig(num_explore_steps=50)
    table = table_with({"analyst": 5.0, "inspector": 3.0}, num_steps=49)
    got = select_candidates(table, "solver", config, NeverRandom())
    assert got.exploring and got.actions == (*AGENTS, END)
    table.num_steps = 50
    assert not select_candidates(table, "solver", config, NeverRandom()).exploring


def test_pruning_removes_actions_at_or_below_the_threshold():
    table = table_with({"analyst": -60.0, "programmer": -50.0, "inspector": -10.0, END: -49.0, "solver": -70.0})
    got = select_candidates(table, "solver", WARM, NeverRandom())
    assert set(got.pruned) == {"analyst", "programmer", "solver"}
    assert set(got.actions) == {END, "inspector"}


def test_everything_pruned_leaves_only_end():
    table = table_with({a: -100.0 for a in (*AGENTS, END)})
    assert select_candidates(table, "solver", WARM, NeverRandom()).actions == (END,)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I think x=3.\nNEXT: inspector", "inspector"),
        ("next agent: Analyst", "analyst"),
        ("/* next_node: programmer */", "programmer"),
        ("NEXT: solver\nactually\nNEXT: **END**", END),
        ("NEXT: nobody", None),
        ("no marker at all", None),
        # spellings models write
        ("**NEXT:** inspector", "inspector"),
        ("**Next**: `Inspector`", "inspector"),
        ("NEXT: <inspector>", "inspector"),
        ("NEXT: [analyst]", "analyst"),
        ("Next: the inspector.", "inspector"),
        ("Next agent is the programmer", "programmer"),
        ("NEXT_AGENT = END", END),
        ("Next -> inspector", "inspector"),
        ("Next \u2192 analyst", "analyst"),
        ("Next step: the analyst should check units", "analyst"),
        ("FINAL ANSWER: 4\n/* next_node: END */", END),
        ("#### 4\n\nInspector", "inspector"),  # a bare name as the last line
        ("The next step is to check the answer.", None),  # "next" without a name
        ("I computed the context: 4", None),  # "next" inside a word is no marker
        ("NEXT: inspector\nNext, I double-check: done", "inspector"),  # a later "next" naming nobody
    ],
)
def test_parse_next(text, expected):
    assert parse_next(text, AGENTS) == expected


def test_step_reward_matches_the_reference_formula():
    table = QTable.empty(AGENTS)
    table.successes["analyst"], table.trials["analyst"] = 3, 4
    cfg = RouterConfig(token_penalty_per_1k=1.0)
    # -2*5 + 5*0.75 - 1.0*2000/1000 = -8.25
    assert step_reward(table, current="solver", previous=None, chosen="analyst", num_tokens=2000, config=cfg) == -8.25
    # repeat (A -> B -> A) and self-loop penalties
    assert step_reward(table, current="solver", previous="analyst", chosen="analyst", num_tokens=0,
                       config=cfg) == -16.25
    assert step_reward(table, current="solver", previous=None, chosen="solver", num_tokens=0, config=cfg) == -17.5


def test_terminal_reward_depends_on_success_and_short_paths():
    cfg = RouterConfig(min_path_length=5, path_penalty=10.0, token_penalty_per_1k=0.0)
    assert terminal_reward(success=True, path_length=2, num_tokens=0, config=cfg) == 70.0
    assert terminal_reward(success=False, path_length=5, num_tokens=0, config=cfg) == 0.0


def _decide(table: QTable, output: str, candidates: tuple[str, ...], config: RouterConfig = WARM, **kw):
    args = {"current": "solver", "previous": None, "cumulative_reward": 0.0, "path_length": 1, "num_tokens": 0}
    args.update(kw)
    return decide(table, output=output, candidates=Candidates(candidates), config=config, **args)


def test_decide_follows_a_valid_agent_choice():
    d = _decide(table_with({}), "work...\nNEXT: inspector", ("inspector", END))
    assert (d.next, d.reason, d.action) == ("inspector", "agent", "inspector") and d.reward < 0


def test_unparsable_output_ends_the_run_and_is_labelled():
    d = _decide(table_with({}), "forgot the marker", ("inspector", END))
    assert (d.next, d.reason, d.reward) == (END, "unparsable", 0.0)
    assert _decide(table_with({}), "FINAL ANSWER: 3", ("inspector",)).reason == "final_answer"


def test_choice_outside_candidates_falls_back_to_best_candidate():
    table = table_with({"inspector": 2.0, END: 4.0})
    d = _decide(table, "NEXT: programmer", ("inspector", END))
    assert (d.next, d.reason) == (END, "off_candidate")


def test_greedy_selection_ignores_the_agent_choice():
    table = table_with({"inspector": 9.0, END: 4.0})
    d = _decide(table, "NEXT: END", ("inspector", END), replace(WARM, selection="greedy"))
    assert (d.next, d.reason) == ("inspector", "greedy")


def test_early_stop_when_cumulative_reward_would_fall_below_minimum():
    cfg = replace(WARM, min_reward=-50.0, token_penalty_per_1k=0.0)
    # step reward of a fresh agent: -10 + 2.5 = -7.5
    ok = _decide(table_with({}), "NEXT: inspector", ("inspector",), cfg, cumulative_reward=-42.0)
    assert ok.next == "inspector"
    stop = _decide(table_with({}), "NEXT: inspector", ("inspector",), cfg, cumulative_reward=-43.0)
    assert (stop.next, stop.reason, stop.action, stop.reward) == (END, "early_stop", "inspector", -7.5)


def test_path_length_cap_forces_end():
    cfg = replace(WARM, max_path_length=3)
    d = _decide(table_with({}), "NEXT: inspector", ("inspector",), cfg, path_length=3)
    assert (d.next, d.reason) == (END, "max_path")
