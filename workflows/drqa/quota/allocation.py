"""Reasoning-token quotas from difficulty weights (pure integer arithmetic).

``allocate`` splits a total budget over questions in proportion to their weights, clamped to
``[floor, ceiling]`` per question; the quotas always sum to at most the total.
``allocate_easiest_first`` instead funds whole questions at the ceiling, easiest first, when the
total cannot give every question what it needs (see its docstring for why), optionally after
reserving a minimum quota for every question. ``reallocate``
hands budget left over after a solve round to questions that are unresolved (no final answer),
then to those answered with low confidence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["AllocationConfig", "RetryCandidate", "allocate", "allocate_easiest_first", "reallocate"]

_BISECT_STEPS = 100


@dataclass(frozen=True)
class AllocationConfig:
    """Per-question quota bounds."""

    floor_tokens: int = 64
    """Smallest quota a question with positive weight gets (when the total allows it)."""
    ceiling_tokens: int = 1024
    """Largest quota any question gets."""

    def __post_init__(self) -> None:
        if self.floor_tokens < 0 or self.ceiling_tokens < self.floor_tokens:
            raise ValueError(
                f"need 0 <= floor_tokens <= ceiling_tokens, got {self.floor_tokens}, {self.ceiling_tokens}"
            )


def allocate(weights: Sequence[float], total_budget: int, config: AllocationConfig) -> list[int]:
    """Integer quotas, one per weight, with ``sum(quotas) <= total_budget``.

    - A weight of 0 (e.g. a question already resolved) gets 0.
    - If the total covers every positive weight at the ceiling, each gets the ceiling.
    - If it cannot cover the floor for all, the floor goes to as many as it covers, heaviest
      (hardest) first, and the rest get 0: a quota below the floor would buy nothing useful.
    - Otherwise quota_i = clamp(lam * w_i, floor, ceiling) with the largest lam whose sum fits,
      rounded down, and the remainder handed out one token at a time by largest fraction.
    """
    if total_budget < 0:
        raise ValueError(f"total_budget must be >= 0, got {total_budget}")
    for w in weights:
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"weights must be finite and >= 0, got {w!r}")
    quotas = [0] * len(weights)
    active = [i for i, w in enumerate(weights) if w > 0]
    if not active:
        return quotas
    lo_q, hi_q = config.floor_tokens, config.ceiling_tokens
    n = len(active)
    if total_budget >= n * hi_q:
        for i in active:
            quotas[i] = hi_q
        return quotas
    if total_budget < n * lo_q:
        # lo_q > 0 here, since n * lo_q > total_budget >= 0.
        num_funded = total_budget // lo_q
        hardest_first = sorted(active, key=lambda i: (-weights[i], i))
        for i in hardest_first[:num_funded]:
            quotas[i] = lo_q
        return quotas

    def clamped(lam: float, i: int) -> float:
        return min(max(lam * weights[i], lo_q), hi_q)

    lo, hi = 0.0, hi_q / min(weights[i] for i in active)
    for _ in range(_BISECT_STEPS):
        mid = (lo + hi) / 2
        if sum(clamped(mid, i) for i in active) <= total_budget:
            lo = mid
        else:
            hi = mid
    exact = {i: clamped(lo, i) for i in active}
    for i in active:
        quotas[i] = min(math.floor(exact[i]), hi_q)
    leftover = total_budget - sum(quotas)
    by_fraction = sorted(active, key=lambda i: (-(exact[i] - quotas[i]), -weights[i], i))
    for i in by_fraction:
        if leftover <= 0:
            break
        if quotas[i] < hi_q:
            quotas[i] += 1
            leftover -= 1
    return quotas


def allocate_easiest_first(
    difficulties: Sequence[float],
    eligible: Sequence[bool],
    total_budget: int,
    config: AllocationConfig,
    *,
    min_quota: int = 0,
) -> list[int]:
    """Whole quotas (``ceiling_tokens``) to eligible questions in order of rising difficulty.

    With ``min_quota`` 0: questions get the ceiling, easiest first (ties by position), while the
    total covers it; the next one gets what is left if that is at least ``floor_tokens``; the rest
    get 0. The sum never exceeds ``total_budget``.

    With ``min_quota`` > 0 (one wave of the ``drqa`` workflow's funding, see below), ``min_quota``
    tokens are first reserved for every eligible question, and only what the reserves leave buys
    whole quotas, easiest first:

    - while the unreserved part covers a whole quota (the ceiling less the question's own reserve),
      the easiest questions get the ceiling and the others 0 *in this call*: their reserves stay
      unspent, so the next wave (the same call over the questions not yet funded, with the unspent
      part of this wave's quotas back in the total) still covers them;
    - once it covers no whole quota, this is the last wave: every eligible question gets
      ``min_quota``, and what is left over tops up the easiest ones (up to the ceiling).

    So every eligible question ends with at least ``min_quota`` (``min(min_quota, ceiling)``) once
    the waves are done, and the sum of one call's quotas never exceeds ``total_budget``.
    Fallback: when the total cannot cover ``min_quota`` for every eligible question, the floor is
    not kept and this is the ``min_quota`` 0 allocation (whole quotas easiest first): a share
    below the floor would buy an answer for no one, and spreading it thinner buys less than whole
    quotas do (below).

    Why not proportional: a quota below the length of the model's working cuts the working
    before its answer, so spreading a short budget over every question buys almost nothing (a
    0.5B model given 134-201 tokens each cut 90-93 of 100 GSM8K solutions and scored 3-5%). When
    the chance of a right answer falls with difficulty, funding the likeliest questions in full is
    the greedy answer to that knapsack; the unspent part of each quota comes back for the next
    questions (the ``drqa`` workflow funds in waves). The cost is that the hardest-rated
    questions may get no quota, hence no answer, at all; ``min_quota`` trades some whole quotas for
    a short attempt at every question.
    """
    if total_budget < 0:
        raise ValueError(f"total_budget must be >= 0, got {total_budget}")
    if min_quota < 0:
        raise ValueError(f"min_quota must be >= 0, got {min_quota}")
    if len(difficulties) != len(eligible):
        raise ValueError("difficulties and eligible must have the same length")
    for d in difficulties:
        if not math.isfinite(d):
            raise ValueError(f"difficulties must be finite, got {d!r}")
    quotas = [0] * len(difficulties)
    order = sorted((i for i, ok in enumerate(eligible) if ok), key=lambda i: (difficulties[i], i))
    ceiling = config.ceiling_tokens
    floor = min(min_quota, ceiling)
    if floor > 0 and order and total_budget >= floor * len(order):
        unreserved = total_budget - floor * len(order)
        whole = ceiling - floor  # what a whole quota costs beyond the question's own reserve
        for i in order:
            if unreserved < whole:
                break
            quotas[i] = ceiling
            unreserved -= whole
        if any(quotas):
            return quotas  # the rest keep their reserves for the next wave
        for i in order:  # last wave: the floor for all, the remainder to the easiest
            top_up = min(whole, unreserved)
            quotas[i] = floor + top_up
            unreserved -= top_up
        return quotas
    left = total_budget
    for i in order:
        give = min(ceiling, left)
        if give <= 0 or give < max(config.floor_tokens, 1):
            break
        quotas[i] = give
        left -= give
    return quotas


@dataclass(frozen=True)
class RetryCandidate:
    """A question after a solve round, as reallocation sees it."""

    unresolved: bool
    """No final answer yet (truncated at its quota, or unreadable)."""
    low_confidence: bool
    """Answered, but doubtful (e.g. disagrees with the probe, or low stated confidence)."""
    difficulty: float
    """Its difficulty estimate; the share of the pool it gets is proportional to it."""


def reallocate(
    pool: int, candidates: Sequence[RetryCandidate], config: AllocationConfig
) -> list[int]:
    """Extra quotas from an unspent ``pool``: unresolved questions first, then low-confidence.

    Each tier is an :func:`allocate` over what the previous tier left, so the extras sum to at
    most ``pool`` and a confident, answered question gets nothing.
    """
    if pool < 0:
        raise ValueError(f"pool must be >= 0, got {pool}")
    first = allocate(
        [max(c.difficulty, 1e-6) if c.unresolved else 0.0 for c in candidates], pool, config
    )
    rest = pool - sum(first)
    second = allocate(
        [
            max(c.difficulty, 1e-6) if (c.low_confidence and not c.unresolved) else 0.0
            for c in candidates
        ],
        rest,
        config,
    )
    return [a + b for a, b in zip(first, second, strict=True)]
