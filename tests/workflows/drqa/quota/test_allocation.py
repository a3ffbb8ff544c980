"""Quota arithmetic: proportional, bounded, and never above the total (random inputs)."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest

from workflows.drqa.quota.allocation import (
    AllocationConfig,
    RetryCandidate,
    allocate,
    allocate_easiest_first,
    reallocate,
)
from workflows.drqa.quota.plan import QuotaConfig, plan_probe, policy_for, solve_quotas


def test_proportional_between_floor_and_ceiling() -> None:
    cfg = AllocationConfig(floor_tokens=10, ceiling_tokens=1000)
    quotas = allocate([1.0, 2.0, 3.0], 600, cfg)
    assert quotas == [100, 200, 300]


def test_ceiling_binds_and_surplus_goes_to_the_rest() -> None:
    cfg = AllocationConfig(floor_tokens=10, ceiling_tokens=250)
    quotas = allocate([1.0, 1.0, 10.0], 600, cfg)
    assert quotas[2] == 250
    assert quotas[0] == quotas[1] == 175
    assert sum(quotas) == 600


def test_floor_binds_for_easy_questions() -> None:
    cfg = AllocationConfig(floor_tokens=100, ceiling_tokens=1000)
    quotas = allocate([0.01, 1.0], 500, cfg)
    assert quotas == [100, 400]


def test_total_below_floors_funds_hardest_first() -> None:
    cfg = AllocationConfig(floor_tokens=100, ceiling_tokens=1000)
    assert allocate([0.2, 0.9, 0.5], 250, cfg) == [0, 100, 100]


def test_zero_weight_gets_nothing_and_rich_budget_caps_at_ceiling() -> None:
    cfg = AllocationConfig(floor_tokens=5, ceiling_tokens=50)
    assert allocate([0.0, 1.0, 2.0], 10_000, cfg) == [0, 50, 50]
    assert allocate([], 100, cfg) == []
    assert allocate([0.0, 0.0], 100, cfg) == [0, 0]


def test_rejects_bad_inputs() -> None:
    cfg = AllocationConfig()
    with pytest.raises(ValueError):
        allocate([1.0], -1, cfg)
    with pytest.raises(ValueError):
        allocate([float("nan")], 10, cfg)
    with pytest.raises(ValueError):
        AllocationConfig(floor_tokens=10, ceiling_tokens=5)


def test_property_never_exceeds_total_and_respects_bounds() -> None:
    rng = random.Random(1234)
    for _ in range(2000):
        n = rng.randint(0, 40)
        floor = rng.randint(0, 200)
        ceiling = floor + rng.randint(0, 2000)
        weights = [rng.choice([0.0, rng.random(), rng.random() * 100, 1e-6]) for _ in range(n)]
        total = rng.randint(0, 60_000)
        quotas = allocate(weights, total, AllocationConfig(floor, ceiling))
        assert len(quotas) == n
        assert sum(quotas) <= total
        active = [q for q, w in zip(quotas, weights, strict=True) if w > 0]
        assert all(q == 0 for q, w in zip(quotas, weights, strict=True) if w == 0)
        assert all(q == 0 or floor <= q <= ceiling for q in active)
        if active and total >= len(active) * floor:
            # Everyone is funded, and the budget is used up to rounding or to the ceilings.
            assert all(floor <= q for q in active)
            assert sum(quotas) == min(total, len(active) * ceiling)


def test_property_monotone_in_weight() -> None:
    rng = random.Random(7)
    for _ in range(500):
        n = rng.randint(2, 20)
        weights = [rng.random() + 0.01 for _ in range(n)]
        quotas = allocate(weights, rng.randint(n * 20, n * 500), AllocationConfig(20, 400))
        order = sorted(range(n), key=lambda i: weights[i])
        for a, b in itertools.pairwise(order):
            assert quotas[a] <= quotas[b] + 1  # +1: integer rounding


def test_reallocate_unresolved_before_low_confidence() -> None:
    cfg = AllocationConfig(floor_tokens=10, ceiling_tokens=100)
    cands = [
        RetryCandidate(unresolved=True, low_confidence=False, difficulty=1.0),
        RetryCandidate(unresolved=False, low_confidence=True, difficulty=1.0),
        RetryCandidate(unresolved=False, low_confidence=False, difficulty=1.0),
    ]
    assert reallocate(50, cands, cfg) == [50, 0, 0]
    assert reallocate(150, cands, cfg) == [100, 50, 0]
    assert reallocate(5, cands, cfg) == [0, 0, 0]


def test_property_reallocation_within_pool() -> None:
    rng = random.Random(99)
    for _ in range(1000):
        n = rng.randint(0, 30)
        cands = [RetryCandidate(rng.random() < 0.3, rng.random() < 0.3, rng.random()) for _ in range(n)]
        pool = rng.randint(0, 5000)
        extras = reallocate(pool, cands, AllocationConfig(rng.randint(0, 50), rng.randint(50, 600)))
        assert sum(extras) <= pool
        assert all(e == 0 for e, c in zip(extras, cands, strict=True) if not (c.unresolved or c.low_confidence))


def test_probe_plan_is_capped_by_its_fraction_of_the_total() -> None:
    rng = random.Random(3)
    for _ in range(500):
        n = rng.randint(1, 100)
        total = rng.randint(0, 100_000)
        cfg = QuotaConfig(batch_size=rng.randint(1, 8), max_probe_fraction=rng.choice([0.1, 0.3, 0.5]))
        plan = plan_probe(n, total, cfg)
        assert plan.max_spend <= int(total * cfg.max_probe_fraction)
        if plan.enabled:
            assert sorted(i for b in plan.batches for i in b) == list(range(n))
            assert all(len(b) <= cfg.batch_size for b in plan.batches)


def test_probe_disabled_when_budget_too_small() -> None:
    assert not plan_probe(100, 1000, QuotaConfig()).enabled
    plan = plan_probe(10, 10_000, QuotaConfig(batch_size=4))
    assert plan.enabled and plan.quick_max_tokens > 0 and len(plan.batches) == 3


def test_solve_quotas_by_method() -> None:
    cfg = QuotaConfig()
    diffs, resolved = [0.1, 0.9, 0.5], [True, False, False]
    proportional = solve_quotas(policy_for("drqa"), diffs, resolved, 1000, replace(cfg, strategy="proportional"))
    drqa = solve_quotas(policy_for("drqa"), diffs, resolved, 1000, cfg)
    uniform = solve_quotas(policy_for("uniform"), diffs, resolved, 999, cfg)
    unlimited = solve_quotas(policy_for("unlimited"), diffs, resolved, 10, cfg)
    assert proportional[0] == 0 and proportional[1] > proportional[2] > 0 and sum(proportional) <= 1000
    # easiest_first (default): the easiest unresolved question (0.5) gets the whole budget
    # (below the 1024 ceiling); the resolved one nothing.
    assert drqa == [0, 0, 1000]
    # The next wave skips questions already funded.
    assert solve_quotas(policy_for("drqa"), diffs, resolved, 700, cfg, funded=[False, False, True]) == [0, 700, 0]
    assert uniform == [333, 333, 333]
    assert unlimited == [cfg.unlimited_max_tokens] * 3
    with pytest.raises(ValueError):
        policy_for("nope")


def test_easiest_first_funds_whole_quotas_in_order_of_difficulty() -> None:
    cfg = AllocationConfig(floor_tokens=50, ceiling_tokens=300)
    diffs = [0.9, 0.1, 0.5, 0.1, 0.7]
    # 0.1 (index 1), 0.1 (index 3, tie by position), 0.5 get 300 each; 0.7 gets the 100 left.
    assert allocate_easiest_first(diffs, [True] * 5, 1000, cfg) == [0, 300, 300, 300, 100]
    # What is left below the floor buys nothing.
    assert allocate_easiest_first(diffs, [True] * 5, 940, cfg) == [0, 300, 300, 300, 0]
    # Ineligible questions (resolved, or funded in an earlier wave) are skipped.
    assert allocate_easiest_first(diffs, [True, False, True, False, True], 700, cfg) == [100, 0, 300, 0, 300]
    assert allocate_easiest_first(diffs, [True] * 5, 0, cfg) == [0] * 5
    with pytest.raises(ValueError):
        allocate_easiest_first(diffs, [True] * 5, -1, cfg)
    with pytest.raises(ValueError):
        allocate_easiest_first([float("nan")], [True], 10, cfg)


def test_easiest_first_never_exceeds_the_total_random() -> None:
    rng = random.Random(7)
    for _ in range(500):
        n = rng.randint(0, 30)
        diffs = [rng.random() for _ in range(n)]
        eligible = [rng.random() < 0.8 for _ in range(n)]
        floor = rng.randint(0, 100)
        cfg = AllocationConfig(floor_tokens=floor, ceiling_tokens=floor + rng.randint(0, 900))
        total = rng.randint(0, 20_000)
        quotas = allocate_easiest_first(diffs, eligible, total, cfg)
        assert sum(quotas) <= total
        assert all(q == 0 or max(floor, 1) <= q <= cfg.ceiling_tokens for q in quotas)
        assert all(q == 0 for q, ok in zip(quotas, eligible, strict=True) if not ok)
        # Nobody easier than a funded question is left out while a harder one is funded.
        funded = [diffs[i] for i, q in enumerate(quotas) if q > 0]
        unfunded = [diffs[i] for i, q in enumerate(quotas) if q == 0 and eligible[i]]
        if funded and unfunded:
            assert max(funded) <= min(unfunded)
