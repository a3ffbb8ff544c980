"""The Q-table and its learning rule (pure: values in, values out; no I/O, no clock, no globals).

State = the agent that just ran; action = the agent to run next, or ``END``. Besides the values
the table carries what the router's schedule needs (epsilon, how many agent executions were
learned from) and per-agent success statistics, so a table saved after training and loaded later
continues exactly where it stopped ("historical experience" in the paper).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import BadInputError
from workflows.priordynaflow.config import END, RouterConfig

FORMAT_VERSION = 1
"""Version ``v`` of the serialized table; bump it (and convert in ``from_dict``) on changes."""


@dataclass(frozen=True)
class Transition:
    """One routing decision of an episode: after ``state`` ran, ``action`` was chosen, earning
    ``reward``. The next state is ``action`` itself (END is terminal)."""

    state: str
    action: str
    reward: float


@dataclass
class QTable:
    """Q values over ``agents`` (states) x ``agents + END`` (actions); missing entries are 0.

    epsilon: current exploration probability (decays per training episode).
    num_steps: agent executions learned from (the reference's global step counter).
    num_episodes: training episodes learned from.
    successes / trials: per-agent episode outcomes, for the success-rate term of the reward.
    """

    agents: tuple[str, ...]
    q: dict[str, dict[str, float]] = field(default_factory=dict)
    epsilon: float = RouterConfig.epsilon
    num_steps: int = 0
    num_episodes: int = 0
    successes: dict[str, int] = field(default_factory=dict)
    trials: dict[str, int] = field(default_factory=dict)

    @classmethod
    def empty(cls, agents: Iterable[str], config: RouterConfig | None = None) -> QTable:
        """A cold-start table: every Q value 0, epsilon at the configured start."""
        agents = tuple(agents)
        if END in agents:
            raise BadInputError("agent names", f"names other than {END!r}")
        return cls(agents=agents, epsilon=(config or RouterConfig()).epsilon)

    @property
    def actions(self) -> tuple[str, ...]:
        return (*self.agents, END)

    def value(self, state: str, action: str) -> float:
        return self.q.get(state, {}).get(action, 0.0)

    def row(self, state: str) -> dict[str, float]:
        """Q values of every action from ``state`` (dense, in action order)."""
        stored = self.q.get(state, {})
        return {a: stored.get(a, 0.0) for a in self.actions}

    def set_value(self, state: str, action: str, value: float) -> None:
        self.q.setdefault(state, {})[action] = value

    def success_rate(self, agent: str, initial: float) -> float:
        num_trials = self.trials.get(agent, 0)
        return initial if num_trials == 0 else self.successes.get(agent, 0) / num_trials

    def with_agents(self, agents: Iterable[str]) -> QTable:
        """This table extended by newly registered agents (their Q values start at 0)."""
        extra = tuple(a for a in agents if a not in self.agents)
        out = self.copy()
        out.agents = (*self.agents, *extra)
        return out

    def copy(self) -> QTable:
        return QTable.from_dict(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "agents": list(self.agents),
            "q": {s: dict(row) for s, row in self.q.items()},
            "epsilon": self.epsilon,
            "num_steps": self.num_steps,
            "num_episodes": self.num_episodes,
            "successes": dict(self.successes),
            "trials": dict(self.trials),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QTable:
        version = data.get("v")
        if version != FORMAT_VERSION:
            raise BadInputError("Q-table data", f"format version {FORMAT_VERSION}", f"got {version!r}")
        return cls(
            agents=tuple(data["agents"]),
            q={s: {a: float(v) for a, v in row.items()} for s, row in data["q"].items()},
            epsilon=float(data["epsilon"]),
            num_steps=int(data["num_steps"]),
            num_episodes=int(data["num_episodes"]),
            successes={k: int(v) for k, v in data.get("successes", {}).items()},
            trials={k: int(v) for k, v in data.get("trials", {}).items()},
        )


def entropy(values: Iterable[float]) -> float:
    """Shannon entropy (nats) of softmax(values)."""
    xs = list(values)
    if not xs:
        return 0.0
    top = max(xs)
    weights = [math.exp(x - top) for x in xs]
    total = sum(weights)
    return -sum((w / total) * math.log(w / total) for w in weights if w > 0.0)


def is_learning(table: QTable, config: RouterConfig) -> bool:
    """Whether an episode finishing now should update ``table``."""
    return not config.frozen and table.num_steps < config.max_train_steps


def is_exploring(table: QTable, config: RouterConfig) -> bool:
    """Cold start: every node is a candidate until ``num_explore_steps`` executions were learned."""
    return not config.frozen and table.num_steps < config.num_explore_steps


def learn_episode(
    table: QTable,
    transitions: Sequence[Transition],
    path: Sequence[str],
    success: bool,
    config: RouterConfig,
) -> QTable:
    """Return ``table`` after learning from one finished episode.

    Transitions are applied one at a time, each seeing the updates before it, first to last
    (``update_order="forward"``, the reference) or last to first (``"backward"``: the terminal
    reward reaches every hand-off of the path in this episode):
        r' = r * terminal_bonus        if the action is END and r > 0, else r
        Q[s][a] += alpha * (r' + entropy_weight * H(softmax(Q[s])) + gamma * max_a' Q[a][a'] - Q[s][a])
    with max_a' Q[END][a'] = 0 (END is terminal). Every distinct agent on ``path`` gets one trial
    (and one success if the episode succeeded); epsilon decays to its floor; the step counter
    grows by the path length.
    """
    out = table.with_agents(path)
    for t in (reversed(transitions) if config.update_order == "backward" else transitions):
        reward = t.reward * config.terminal_bonus if t.action == END and t.reward > 0 else t.reward
        row = out.row(t.state)
        next_best = 0.0 if t.action == END else max(out.row(t.action).values())
        target = reward + config.entropy_weight * entropy(row.values()) + config.gamma * next_best
        current = row[t.action]
        out.set_value(t.state, t.action, current + config.alpha * (target - current))
    for agent in dict.fromkeys(path):
        out.trials[agent] = out.trials.get(agent, 0) + 1
        if success:
            out.successes[agent] = out.successes.get(agent, 0) + 1
    out.epsilon = max(out.epsilon * config.epsilon_decay, config.min_epsilon)
    out.num_steps += len(path)
    out.num_episodes += 1
    return out
