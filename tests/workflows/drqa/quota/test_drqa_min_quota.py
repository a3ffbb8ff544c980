"""DRQA's minimum quota (``min_quota_tokens``): a floor reserved for every eligible question before
whole quotas go to the easiest, the total never exceeded, and 0 the old allocation."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import BadInputError
from workflows.drqa.config import option_names, run_config_from
from workflows.drqa.quota.allocation import AllocationConfig, allocate_easiest_first
from workflows.drqa.quota.plan import QuotaConfig, policy_for, solve_quotas

CFG = AllocationConfig(floor_tokens=64, ceiling_tokens=512)


def _old_easiest_first(difficulties: Sequence[float], eligible: Sequence[bool], total: int,
                       config: AllocationConfig) -> list[int]:
    """The allocation before ``min_quota`` (commit c391be9), kept here as the reference for 0."""
    quotas = [0] * len(difficulties)
    left = total
    for i in sorted((i for i, ok in enumerate(eligible) if ok), key=lambda i: (difficulties[i], i)):
        give = min(config.ceiling_tokens, left)
        if give <= 0 or give < max(config.floor_tokens, 1):
            break
        quotas[i] = give
        left -= give
    return quotas


def _waves(difficulties: list[float], eligible: list[bool], total: int, config: AllocationConfig,
           min_quota: int, spend: Any) -> tuple[list[int], int, int]:
    """Fund in waves as the drqa workflow does: each wave allocates what is left over the eligible
    questions not yet funded; ``spend(quota)`` is what a funded question spends of its quota.
    Returns (final quotas, tokens spent, number of waves)."""
    quotas = [0] * len(difficulties)
    spent = waves = 0
    while True:
        todo = [ok and q == 0 for ok, q in zip(eligible, quotas, strict=True)]
        wave = allocate_easiest_first(difficulties, todo, total - spent, config, min_quota=min_quota)
        assert sum(wave) <= total - spent  # one wave never passes what is left
        if not any(wave):
            return quotas, spent, waves
        waves += 1
        for i, q in enumerate(wave):
            if q:
                assert quotas[i] == 0 and todo[i]  # only questions not funded yet
                quotas[i] = q
                used = spend(q)
                assert 0 <= used <= q
                spent += used


def test_the_floor_goes_to_every_eligible_question_and_the_rest_easiest_first() -> None:
    diffs = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2]
    eligible = [True, True, True, False, True, True]
    # 5 eligible: 5 * 100 reserved, 1,000 over the reserves buys two whole quotas (412 each beyond
    # the question's own reserve); the other three keep their reserves for the next wave.
    first = allocate_easiest_first(diffs, eligible, 1500, CFG, min_quota=100)
    assert first == [0, 512, 0, 0, 0, 512]
    # Next wave (nothing of the first came back): 476 left, 300 reserved, no whole quota: the
    # last wave, the floor for all three and the remaining 176 to the easiest of them.
    todo = [True, False, True, False, True, False]
    last = allocate_easiest_first(diffs, todo, 1500 - sum(first), CFG, min_quota=100)
    assert last == [100, 0, 276, 0, 100, 0]
    assert sum(first) + sum(last) == 1500
    # Without the floor the two hardest get nothing at all.
    old = allocate_easiest_first(diffs, eligible, 1500, CFG)
    assert [old[0], old[4]] == [0, 0]


def test_a_budget_that_covers_only_the_floors_gives_each_the_floor() -> None:
    quotas = allocate_easiest_first([0.5, 0.2, 0.8], [True] * 3, 3 * 128 + 10, CFG, min_quota=128)
    assert quotas == [128, 138, 128]
    assert allocate_easiest_first([0.5, 0.2, 0.8], [True] * 3, 3 * 128, CFG, min_quota=128) == [128] * 3


def test_a_floor_above_the_ceiling_is_the_ceiling() -> None:
    assert allocate_easiest_first([0.3, 0.1], [True, True], 5000, CFG, min_quota=900) == [512, 512]
    assert allocate_easiest_first([0.3, 0.1], [True, True], 1024, CFG, min_quota=900) == [512, 512]


def test_fallback_when_the_total_cannot_cover_every_floor_is_the_old_allocation() -> None:
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(1, 12)
        diffs = [rng.random() for _ in range(n)]
        eligible = [rng.random() < 0.8 for _ in range(n)]
        m = sum(eligible)
        if m == 0:
            continue
        floor = rng.randint(1, 300)
        total = rng.randint(0, floor * m - 1)
        assert allocate_easiest_first(diffs, eligible, total, CFG, min_quota=floor) == \
            _old_easiest_first(diffs, eligible, total, CFG)


def test_min_quota_0_is_the_old_allocation() -> None:
    rng = random.Random(3)
    for _ in range(500):
        n = rng.randint(0, 15)
        cfg = AllocationConfig(floor_tokens=rng.choice([0, 1, 16, 64]), ceiling_tokens=rng.choice([64, 300, 512]))
        diffs = [rng.choice([0.1, 0.5, rng.random()]) for _ in range(n)]  # ties too
        eligible = [rng.random() < 0.7 for _ in range(n)]
        total = rng.randint(0, 6000)
        expected = _old_easiest_first(diffs, eligible, total, cfg)
        assert allocate_easiest_first(diffs, eligible, total, cfg) == expected
        assert allocate_easiest_first(diffs, eligible, total, cfg, min_quota=0) == expected
    # ... and the hardest questions of a short budget get nothing, as before.
    assert allocate_easiest_first([0.9, 0.1, 0.5], [True] * 3, 600, CFG) == [0, 512, 88]


@pytest.mark.parametrize("seed", range(40))
def test_over_waves_every_eligible_question_gets_the_floor_and_the_total_holds(seed: int) -> None:
    """Property sweep (the project has no hypothesis): random difficulties with ties, ineligible
    questions, floors from 1 to above the ceiling, totals from exactly the floors up, spending
    anything from nothing to the whole quota."""
    rng = random.Random(seed)
    n = rng.randint(1, 40)
    ceiling = rng.choice([32, 256, 512])
    cfg = AllocationConfig(floor_tokens=min(rng.choice([0, 16, 64]), ceiling), ceiling_tokens=ceiling)
    diffs = [rng.choice([0.05, 0.5, 1.0, rng.random()]) for _ in range(n)]
    eligible = [rng.random() < 0.85 for _ in range(n)]
    m = sum(eligible)
    floor = rng.choice([1, 24, 64, 128, cfg.ceiling_tokens, cfg.ceiling_tokens + 100])
    total = floor * m + rng.choice([0, 1, rng.randint(0, 3 * cfg.ceiling_tokens), rng.randint(0, 20_000)])
    spend = rng.choice([lambda q: q, lambda q: 0, lambda q: rng.randint(0, q), lambda q: q // 2])
    quotas, spent, waves = _waves(diffs, eligible, total, cfg, floor, spend)
    assert spent <= total
    assert all(q == 0 for q, ok in zip(quotas, eligible, strict=True) if not ok)
    assert all(min(floor, cfg.ceiling_tokens) <= q <= cfg.ceiling_tokens
               for q, ok in zip(quotas, eligible, strict=True) if ok)
    # Whoever gets the ceiling is never harder than whoever does not (easiest first).
    full = [diffs[i] for i in range(n) if eligible[i] and quotas[i] == cfg.ceiling_tokens]
    short = [diffs[i] for i in range(n) if eligible[i] and quotas[i] < cfg.ceiling_tokens]
    if full and short:
        assert max(full) <= min(short)
    assert waves <= m + 1


def test_one_call_never_exceeds_the_total_and_keeps_the_others_floors() -> None:
    rng = random.Random(11)
    for _ in range(1000):
        n = rng.randint(0, 30)
        diffs = [rng.random() for _ in range(n)]
        eligible = [rng.random() < 0.8 for _ in range(n)]
        floor = rng.randint(0, 600)
        total = rng.randint(0, 12_000)
        quotas = allocate_easiest_first(diffs, eligible, total, CFG, min_quota=floor)
        assert sum(quotas) <= total and all(q >= 0 for q in quotas)
        assert all(q == 0 for q, ok in zip(quotas, eligible, strict=True) if not ok)
        m = sum(eligible)
        if floor and m and total >= floor * m:
            unfunded = sum(1 for q, ok in zip(quotas, eligible, strict=True) if ok and q == 0)
            # A question left for a later wave still has its floor in what this wave leaves.
            assert total - sum(quotas) >= min(floor, CFG.ceiling_tokens) * unfunded


def test_bad_min_quota_is_refused() -> None:
    with pytest.raises(ValueError):
        allocate_easiest_first([0.1], [True], 100, CFG, min_quota=-1)
    with pytest.raises(ValueError):
        QuotaConfig(min_quota_tokens=-1)
    with pytest.raises(BadInputError):
        run_config_from({"method": "drqa", "total_budget": 100, "min_quota_tokens": -5})
    with pytest.raises(BadInputError):
        run_config_from({"method": "drqa", "total_budget": 100, "min_quota_tokens": "lots"})


def test_the_option_reaches_the_solve_round() -> None:
    assert "min_quota_tokens" in option_names()
    assert QuotaConfig().min_quota_tokens == 0  # the default: the old allocation
    config = run_config_from({"method": "drqa", "total_budget": 5000, "min_quota_tokens": "100",
                              "ceiling_tokens": 512})
    assert config.quota.min_quota_tokens == 100
    quotas = solve_quotas(policy_for("drqa"), [0.9, 0.1, 0.5, 0.2], [False, False, False, True], 700, config.quota)
    assert quotas == [100, 100 + 400, 100, 0]  # the resolved question keeps its probe answer
    old = solve_quotas(policy_for("drqa"), [0.9, 0.1, 0.5, 0.2], [False, False, False, True], 700,
                       run_config_from({"method": "drqa", "total_budget": 5000, "ceiling_tokens": 512}).quota)
    assert old == [0, 512, 188, 0]


def _run(tmp_path: Path, budget: int, **options: Any) -> dict[str, Any]:
    from orchestrator.runtime import Runtime
    from orchestrator.settings import Settings
    from orchestrator.tools.registry import ToolRegistry
    from workflows.drqa.sim import make_rows, sim_client

    sim = sim_client()
    steps = [1, 1, 2, 1, 12, 1, 2, 14, 1, 1, 2, 10]

    async def go() -> dict[str, Any]:
        rt = Runtime(Settings(db_url=f"sqlite:///{tmp_path / f'drqa-{budget}-{len(options)}.db'}", home=tmp_path),
                     clients={"sim": sim}, tools=ToolRegistry())
        try:
            res = await rt.run("drqa", {"rows": make_rows(steps), "dataset": "gsm8k"}, backend="sim",
                               options={"method": "drqa", "total_budget": budget, "batch_size": 4,
                                        "floor_tokens": 16, "ceiling_tokens": 450, **options})
        finally:
            await rt.aclose()
        assert res.status == "succeeded", res.error
        assert res.result is not None
        return res.result

    return asyncio.run(go())


def test_a_run_with_the_floor_funds_every_question_within_the_total(tmp_path: Path) -> None:
    # The test_workflow budget where the hardest go unfunded without a floor.
    old = _run(tmp_path, 1000, force_answer=False)
    assert any(it["quota"] == 0 and it["source"] != "probe" for it in old["items"])
    new = _run(tmp_path, 1000, force_answer=False, min_quota_tokens=40)
    assert new["reasoning_tokens"] <= 1000
    for it in new["items"]:
        assert it["source"] == "probe" or (it["quota"] >= 40 and it["wave"] is not None), it
    # A floor the budget cannot cover for all: the old allocation, still within the total.
    fallback = _run(tmp_path, 1000, force_answer=False, min_quota_tokens=400)
    assert fallback["reasoning_tokens"] <= 1000
    assert [it["quota"] for it in fallback["items"]] == [it["quota"] for it in old["items"]]
    assert math.isclose(fallback["accuracy"], old["accuracy"])
