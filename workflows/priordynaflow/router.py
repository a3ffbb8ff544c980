"""PriorDynaFlow's routing policy: candidates from the Q-table, the agent's a priori choice among
them, step and terminal rewards, pruning and early stopping.

Pure: the table, the config, the agent's output and an injected ``random.Random`` in; decisions
out. The episode steps (``workflows.priordynaflow.episode``) call these; the graph does the I/O.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from orchestrator.llm.choices import match_choice, normalize_choice
from workflows.priordynaflow.config import END, RouterConfig
from workflows.priordynaflow.qtable import QTable, is_exploring

NEXT_MARKER = "NEXT:"
"""How an agent names its successor: a line ``NEXT: <agent name or END>``, last one wins."""

_NEXT_RE = re.compile(r"(?<![A-Za-z])next", re.IGNORECASE)
_WORD_RE = re.compile(r"[A-Za-z][\w-]*")
_FINAL_RE = re.compile(r"final\s+answer", re.IGNORECASE)
_FILLER = frozenset({
    "agent", "agents", "node", "step", "speaker", "worker", "teammate", "member", "option", "choice", "successor",
    "up", "is", "will", "would", "should", "be", "goes", "go", "to", "the", "a", "an", "i", "we", "choose", "chose",
    "pick", "select", "hand", "handing", "over", "pass", "passing", "it", "let", "call", "calling", "now", "then",
})
"""Words between a ``next`` marker and the name it gives (``Next agent is the inspector``)."""

Reason = Literal["agent", "greedy", "final_answer", "unparsable", "off_candidate", "early_stop", "max_path"]
Source = Literal["choice", "marker", "none"]


@dataclass(frozen=True)
class Candidates:
    """The actions an agent may choose from at one step.

    actions: in presentation order (best Q first, the random pick last).
    random_pick: the epsilon-random addition, if one was drawn.
    exploring: cold start (every node offered).
    pruned: actions left out because their Q value is at or below the prune threshold.
    """

    actions: tuple[str, ...]
    random_pick: str | None = None
    exploring: bool = False
    pruned: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    """The router's decision after one agent turn.

    next: the chosen action (an agent name or END).
    proposed: what the agent named: its constrained choice, else its output's marker (None when
        neither named a known node).
    source: where ``proposed`` came from: "choice" (the constrained routing call), "marker" (the
        ``NEXT:`` line of the agent's output) or "none".
    reason: why ``next`` was taken: "agent" (its own valid choice), "greedy" (highest Q,
        selection="greedy"), "final_answer" (no marker, but the output declares a final
        answer), "unparsable" (no usable marker: END, counted), "off_candidate" (a known name
        outside the candidates: best candidate instead), "early_stop" (cumulative reward below
        the minimum), "max_path" (path length cap).
    action: the action the episode learns for: ``next``, except on an early stop, where it is
        the agent whose step reward broke the minimum (so that edge is the one penalised).
    reward: the step reward of ``action`` (0 when it is END: the terminal reward needs the
        task's outcome and is computed by :func:`terminal_reward`).
    """

    next: str
    proposed: str | None
    reason: Reason
    action: str
    reward: float
    source: Source = "marker"


def available_actions(table: QTable, state: str, config: RouterConfig) -> tuple[list[str], list[str]]:
    """(kept, pruned) actions from ``state``: pruning drops Q <= ``prune_threshold``."""
    kept: list[str] = []
    pruned: list[str] = []
    for action, value in table.row(state).items():
        (kept if value > config.prune_threshold else pruned).append(action)
    return kept, pruned


def select_candidates(table: QTable, state: str, config: RouterConfig, rng: random.Random, *,
                      path_length: int = 1) -> Candidates:
    """Candidates for the agent that just ran as ``state``, the ``path_length``-th of its episode.

    Cold start offers every node. Otherwise: the actions of the top ``num_top_groups`` distinct
    Q values among the unpruned ones (ties stay together), plus, with probability epsilon (0
    when frozen), one random unpruned action that is not already offered. With nothing
    unpruned, END is the only candidate. END is left out while ``path_length`` is below
    ``min_agents_before_end`` (unless nothing else is left); ``state`` itself is left out when
    ``self_loops`` is off.
    """
    kept, pruned = available_actions(table, state, config)
    if not config.self_loops:
        kept = [a for a in kept if a != state]
        pruned = [a for a in pruned if a != state]
    if path_length < config.min_agents_before_end:
        kept = [a for a in kept if a != END] or kept
        pruned = [a for a in pruned if a != END]
    if is_exploring(table, config):
        every = table.actions if path_length >= config.min_agents_before_end else table.agents
        if not config.self_loops:
            every = tuple(a for a in every if a != state) or (END,)
        return Candidates(actions=every, exploring=True)
    if not kept:
        return Candidates(actions=(END,), pruned=tuple(pruned))
    row = table.row(state)
    top_values = sorted({row[a] for a in kept}, reverse=True)[: config.num_top_groups]
    actions = sorted((a for a in kept if row[a] in top_values), key=lambda a: -row[a])
    random_pick = None
    epsilon = 0.0 if config.frozen else table.epsilon
    rest = [a for a in kept if a not in actions]
    # Draw before checking `rest` so the RNG stream does not depend on the table's shape.
    if rng.random() < epsilon and rest:
        random_pick = rng.choice(rest)
        actions.append(random_pick)
    return Candidates(actions=tuple(actions), random_pick=random_pick, pruned=tuple(pruned))


def parse_next(text: str, names: Sequence[str]) -> str | None:
    """The node named by the last ``next`` marker in ``text`` that names a known node, matched
    case-insensitively against ``names`` and END; else the reply's last line when it is just a
    node's name; else None.

    A marker is the word ``next`` (``NEXT:``, ``Next agent:``, ``next_node =``, ``**Next**:``,
    ``Next ->``, ``Next agent is the``...); the first word after it that is not filler
    (``agent``, ``is``, ``the``, ``will be``...) on the same line is the name, with any quotes,
    brackets or markdown around it (``NEXT: <inspector>``, ``NEXT: **END**``). A marker whose
    first word is no node's name (``NEXT: nobody``, ``the next step is``) names nothing.
    """
    lookup = {n.lower(): n for n in (*names, END)}
    for match in reversed(list(_NEXT_RE.finditer(text))):
        tail = text[match.end():].split("\n", 1)[0]
        for word in _WORD_RE.findall(tail):
            if word.lower() in _FILLER and word.lower() not in lookup:
                continue
            found = lookup.get(word.lower()) or lookup.get(word.lower().rstrip("-"))
            if found is not None:
                return found
            break
    lines = text.strip().splitlines()
    return lookup.get(normalize_choice(lines[-1])) if lines else None


def step_reward(
    table: QTable,
    *,
    current: str,
    previous: str | None,
    chosen: str,
    num_tokens: int,
    config: RouterConfig,
) -> float:
    """Reward of choosing agent ``chosen`` after ``current`` ran (``previous`` ran before it):
    -salary_weight*salary + success_rate_weight*success_rate(chosen) - token cost of the
    current turn - repeat penalty (chosen == previous) - self-loop penalty (chosen == current).
    """
    reward = -config.salary_weight * config.salary
    reward += config.success_rate_weight * table.success_rate(chosen, config.initial_success_rate)
    reward -= config.token_penalty_per_1k * num_tokens / 1000.0
    if chosen == previous:
        reward -= config.repeat_penalty
    if chosen == current:
        reward -= config.self_loop_penalty
    return reward


def terminal_reward(*, success: bool, path_length: int, num_tokens: int, config: RouterConfig) -> float:
    """Reward of choosing END: success (or failure) reward, minus the short-path penalty and the
    token cost of the last turn."""
    reward = config.success_reward if success else config.failure_reward
    reward -= config.path_penalty * max(0, config.min_path_length - path_length)
    reward -= config.token_penalty_per_1k * num_tokens / 1000.0
    return reward


def decide(
    table: QTable,
    *,
    current: str,
    previous: str | None,
    output: str,
    candidates: Candidates,
    cumulative_reward: float,
    path_length: int,
    num_tokens: int,
    config: RouterConfig,
    choice: str | None = None,
) -> Decision:
    """Route after ``current`` produced ``output`` (``choice``: its reply to the constrained
    routing call, if one was made).

    The agent's a priori choice is read first: ``choice`` when it names a candidate (matched by
    :func:`~orchestrator.llm.choices.match_choice`), else the marker in ``output``. With
    ``selection="greedy"`` the best-Q candidate is taken instead. A name outside the candidates
    is replaced by the best candidate; no choice at all means END (counted as unparsable unless
    the output declares a final answer), or the best candidate when END is not offered yet. A
    choice that would take the cumulative reward below ``min_reward`` is replaced by END (early
    stop, the step's reward still counts); so is any choice past ``max_path_length``.
    """
    chosen_by = match_choice(choice, candidates.actions) if choice is not None else None
    proposed = chosen_by or parse_next(output, table.agents)
    source: Source = "choice" if chosen_by else ("marker" if proposed else "none")
    best = max(candidates.actions, key=lambda a: table.value(current, a))
    reason: Reason
    if config.selection == "greedy":
        chosen, reason = best, "greedy"
    elif proposed is None:
        reason = "final_answer" if _FINAL_RE.search(output) else "unparsable"
        chosen = END if END in candidates.actions else best
    elif proposed in candidates.actions:
        chosen, reason = proposed, "agent"
    else:
        chosen, reason = best, "off_candidate"
    if chosen == END:
        return Decision(next=END, proposed=proposed, reason=reason, action=END, reward=0.0, source=source)
    reward = step_reward(
        table, current=current, previous=previous, chosen=chosen, num_tokens=num_tokens, config=config
    )
    if cumulative_reward + reward < config.min_reward:
        return Decision(next=END, proposed=proposed, reason="early_stop", action=chosen, reward=reward, source=source)
    if path_length >= config.max_path_length:
        return Decision(next=END, proposed=proposed, reason="max_path", action=END, reward=0.0, source=source)
    return Decision(next=chosen, proposed=proposed, reason=reason, action=chosen, reward=reward, source=source)
