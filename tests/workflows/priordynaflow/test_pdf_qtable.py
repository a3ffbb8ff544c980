"""The Q-learning update (against hand-computed values), serialization and schedules."""

from __future__ import annotations

import math

import pytest

from orchestrator.errors import BadInputError
from workflows.priordynaflow.config import END, RouterConfig
from workflows.priordynaflow.qtable import (
    QTable,
    Transition,
    entropy,
    is_exploring,
    is_learning,
    learn_episode,
)

AGENTS = ("a", "b")
CFG = RouterConfig(alpha=0.5, gamma=0.9, entropy_weight=0.1, terminal_bonus=1.5, epsilon_decay=0.5, min_epsilon=0.1)


def test_entropy_of_uniform_and_peaked_rows():
    assert entropy([0.0, 0.0, 0.0]) == pytest.approx(math.log(3))
    assert entropy([1000.0, 0.0]) == pytest.approx(0.0, abs=1e-9)


def test_update_rule_by_hand():
    table = QTable.empty(AGENTS, CFG)
    table.set_value("b", "a", 4.0)  # max over b's row = 4
    episode = [Transition("a", "b", -8.0), Transition("b", END, 60.0)]
    out = learn_episode(table, episode, ["a", "b"], True, CFG)

    # a -> b: row a = [0, 0, 0] (a, b, END): H = ln 3; next best = max Q[b] = 4.
    h_a = math.log(3)
    q_ab = 0.0 + 0.5 * (-8.0 + 0.1 * h_a + 0.9 * 4.0 - 0.0)
    assert out.value("a", "b") == pytest.approx(q_ab)  # about -2.145
    # b -> END: reward 60 * 1.5 = 90 (positive terminal bonus); END is terminal (next best 0);
    # row b = [4, 0, 0].
    h_b = entropy([4.0, 0.0, 0.0])
    q_b_end = 0.0 + 0.5 * (90.0 + 0.1 * h_b + 0.0 - 0.0)
    assert out.value("b", END) == pytest.approx(q_b_end)
    assert out.value("b", "a") == 4.0  # untouched
    assert table.value("a", "b") == 0.0  # pure: the input table is unchanged


def test_negative_terminal_reward_gets_no_bonus():
    out = learn_episode(QTable.empty(AGENTS, CFG), [Transition("a", END, -20.0)], ["a"], False, CFG)
    assert out.value("a", END) == pytest.approx(0.5 * (-20.0 + 0.1 * math.log(3)))


def test_later_transitions_see_earlier_updates():
    # a -> a (self-loop) then a -> END: the second update's entropy uses the updated row a.
    cfg = RouterConfig(alpha=1.0, gamma=0.0, entropy_weight=1.0, terminal_bonus=1.0)
    out = learn_episode(QTable.empty(AGENTS, cfg), [Transition("a", "a", -10.0), Transition("a", END, 5.0)],
                        ["a", "a"], True, cfg)
    q_aa = -10.0 + math.log(3)
    assert out.value("a", "a") == pytest.approx(q_aa)
    assert out.value("a", END) == pytest.approx(5.0 + entropy([q_aa, 0.0, 0.0]))


def test_statistics_epsilon_and_counters():
    table = QTable.empty(AGENTS, CFG)
    table.epsilon = 0.15
    out = learn_episode(table, [Transition("a", END, 1.0)], ["a", "b", "a"], True, CFG)
    assert out.trials == {"a": 1, "b": 1} and out.successes == {"a": 1, "b": 1}
    assert out.epsilon == 0.1  # 0.15 * 0.5 floored at 0.1
    assert (out.num_steps, out.num_episodes) == (3, 1)
    assert out.success_rate("a", 0.5) == 1.0 and out.success_rate("c", 0.5) == 0.5
    failed = learn_episode(out, [Transition("a", END, 0.0)], ["a"], False, CFG)
    assert failed.success_rate("a", 0.5) == 0.5


def test_schedules_stop_exploring_and_learning():
    cfg = RouterConfig(num_explore_steps=10, max_train_steps=20)
    table = QTable.empty(AGENTS, cfg)
    table.num_steps = 9
    assert is_exploring(table, cfg) and is_learning(table, cfg)
    table.num_steps = 10
    assert not is_exploring(table, cfg) and is_learning(table, cfg)
    table.num_steps = 20
    assert not is_learning(table, cfg)
    assert not is_learning(QTable.empty(AGENTS), RouterConfig(frozen=True))


def test_serialization_round_trip_and_version_check():
    table = learn_episode(QTable.empty(AGENTS, CFG), [Transition("a", "b", 3.0)], ["a"], True, CFG)
    data = table.to_dict()
    assert data["v"] == 1
    assert QTable.from_dict(data) == table
    with pytest.raises(BadInputError):
        QTable.from_dict({**data, "v": 99})


def test_new_agents_extend_the_table():
    table = QTable.empty(AGENTS).with_agents(["a", "c"])
    assert table.agents == ("a", "b", "c") and table.actions == ("a", "b", "c", END)
    with pytest.raises(BadInputError):
        QTable.empty(["a", END])


def test_backward_order_keeps_the_hand_offs_of_a_good_path_positive():
    # solver -> inspector -> END, successful, from a cold table: the reference's forward order
    # learns the hand-off before the END it leads to (next best 0) and makes it negative.
    path = ["solver", "inspector"]
    episode = [Transition("solver", "inspector", -7.5), Transition("inspector", END, 70.0)]
    forward = learn_episode(QTable.empty(path), episode, path, True, RouterConfig())
    backward = learn_episode(QTable.empty(path), episode, path, True, RouterConfig(update_order="backward"))
    assert forward.value("solver", "inspector") < 0
    assert backward.value("solver", "inspector") > 0
    assert backward.value("inspector", END) == pytest.approx(forward.value("inspector", END))


def test_backward_update_by_hand():
    cfg = RouterConfig(alpha=0.5, gamma=0.9, entropy_weight=0.0, terminal_bonus=1.0, update_order="backward")
    out = learn_episode(QTable.empty(AGENTS, cfg), [Transition("a", "b", -8.0), Transition("b", END, 60.0)],
                        ["a", "b"], True, cfg)
    assert out.value("b", END) == pytest.approx(30.0)
    assert out.value("a", "b") == pytest.approx(0.5 * (-8.0 + 0.9 * 30.0))


def test_repeated_good_episodes_converge_to_positive_hand_offs_and_a_failing_shortcut_stays_below():
    # Two ways to END from solver: directly (fails) or via inspector (succeeds). Backward learning
    # ranks the hand-off above the shortcut within a few episodes.
    cfg = RouterConfig(update_order="backward", min_path_length=0)
    table = QTable.empty(["solver", "inspector"], cfg)
    for _ in range(5):
        table = learn_episode(table, [Transition("solver", "inspector", -7.5), Transition("inspector", END, 100.0)],
                              ["solver", "inspector"], True, cfg)
        table = learn_episode(table, [Transition("solver", END, 0.0)], ["solver"], False, cfg)
    assert table.value("solver", "inspector") > table.value("solver", END)
    assert table.value("solver", "inspector") > 0


def test_update_order_is_checked():
    with pytest.raises(BadInputError):
        RouterConfig(update_order="sideways")  # type: ignore[arg-type]
    with pytest.raises(BadInputError):
        RouterConfig(min_agents_before_end=0)
