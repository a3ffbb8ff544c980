"""The Continuum plugin against the REAL vLLM 0.26 scheduler on CPU (no model, no GPU).

KV cache: 64 blocks of 16 tokens (63 usable). Fixed TTL of 2 s on a fake clock.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tests import extras

pytest.importorskip("vllm", reason=extras.SERVE)

from tests.serving_patch.vllm_harness import Driver, FakeClock, build, make_scheduler, tokens

pytestmark = pytest.mark.vllm


@pytest.fixture(autouse=True)
def _plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("QUOTAFLOW_CONTINUUM_TTL_POLICY", "fixed")
    monkeypatch.setenv("QUOTAFLOW_CONTINUUM_FIXED_THRESHOLD_S", "2.0")
    monkeypatch.setenv("QUOTAFLOW_CONTINUUM_MAX_PINNED_FRACTION", "1.0")


def _filler_scenario(driver: Driver, clock: FakeClock) -> dict[str, Any]:
    """A's turn 1 finishes; a 59-block filler B arrives; then A's turn 2 (89 tokens) arrives.

    A background request C keeps running meanwhile, so the engine is never idle. B fits beside
    C (stock) but not beside C and A's 5 pinned blocks (plugin).
    """
    driver.add("c", tokens(3, 16), 20, {"program_id": "C", "is_last_step": 1})
    driver.add("a1", tokens(1, 64), 4, {"program_id": "A", "tool_name": "bash"})
    driver.run_until(lambda: driver.finished("a1"))
    clock.now += 0.1
    driver.add("b", tokens(2, 944), 2, {"program_id": "B", "is_last_step": 1})
    for _ in range(3):
        driver.step()
    clock.now += 0.4
    driver.add("a2", driver.next_prompt("a1", 20, seed=1), 3, {"program_id": "A", "is_last_step": 1})
    arrival_step = driver.num_steps
    driver.run_until(lambda: all(driver.finished(r) for r in ("a2", "b", "c")), max_steps=400)
    a2, b = driver.turns["a2"], driver.turns["b"]
    assert a2.admitted_step is not None and b.admitted_step is not None
    return {
        "a2_cached": a2.num_cached_tokens,
        "a2_wait_steps": a2.admitted_step - arrival_step,
        "b_before_a2": b.admitted_step < a2.admitted_step,
    }


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_pinned_turn_reuses_all_full_blocks_without_head_of_line_blocking(
    model_dir: Path, kind: str
) -> None:
    from prometheus_client import REGISTRY

    reused_before = REGISTRY.get_sample_value("quotaflow_continuum_reused_tokens_total") or 0.0
    driver, clock = build(model_dir, kind)
    result = _filler_scenario(driver, clock)
    # Turn 1 computed 64 prompt + 4 output tokens: 4 full blocks = 64 tokens, all reused.
    assert result["a2_cached"] == 64
    # The filler heads the queue and cannot fit beside the pin, yet A's next turn is admitted
    # in the first step after it arrives (pinned programs first), and B runs only later.
    assert result["a2_wait_steps"] == 1
    assert not result["b_before_a2"]
    counters = driver.scheduler.continuum.counters
    assert (counters.pins_created, counters.pin_hits, counters.tokens_reused) == (1, 1, 64)
    assert driver.scheduler.num_pinned_requests == 0
    reused_after = REGISTRY.get_sample_value("quotaflow_continuum_reused_tokens_total")
    assert reused_after == reused_before + 64  # exported by the scheduler's metrics sink
    # Everything finished: every block is back in the free pool.
    assert driver.num_free_blocks == 63


@pytest.mark.parametrize("kind", ["stock", "sync", "async"])
def test_program_order_keeps_the_users_priority_readable(model_dir: Path, kind: str) -> None:
    driver, _ = build(model_dir, kind, max_num_seqs=1, policy="priority")
    no_pin = {"ttl_hint_s": 0}  # program order alone, no pinned-first
    driver.add("a1", tokens(1, 32), 2, {"program_id": "A", **no_pin}, arrival_time=1.0)
    driver.run_until(lambda: driver.finished("a1"))
    driver.add("blocker", tokens(2, 16), 8, arrival_time=2.0)  # holds the one running slot
    driver.step()
    driver.add("b1", tokens(3, 32), 2, {"program_id": "B", **no_pin}, arrival_time=3.0)
    driver.add("a2", driver.next_prompt("a1", 8, seed=1), 2, {"program_id": "A", **no_pin}, arrival_time=4.0)
    driver.add("anon", tokens(4, 32), 2, arrival_time=5.0)
    driver.add("urgent", tokens(5, 32), 2, priority=-1, arrival_time=6.0)
    names = ("blocker", "b1", "a2", "anon", "urgent")
    driver.run_until(lambda: all(driver.finished(r) for r in names), max_steps=200)
    order = sorted(names, key=lambda r: driver.turns[r].admitted_step or 0)
    if kind == "stock":
        assert order == ["blocker", "urgent", "b1", "a2", "anon"]
    else:
        # A started before B, so its next turn goes first; requests without hints keep vLLM's
        # order, and the user's priority outranks program order.
        assert order == ["blocker", "urgent", "a2", "b1", "anon"]
    assert driver.turns["urgent"].request.priority == -1
    assert all(driver.turns[r].request.priority == 0 for r in names if r != "urgent")


def _random_trace(driver: Driver, seed: int) -> list[tuple[Any, ...]]:
    """Random requests without hints (priorities -3..3, tied arrival times); every decision."""
    rng = random.Random(seed)
    trace: list[tuple[Any, ...]] = []
    for step in range(160):
        if step < 100 and rng.random() < 0.35:
            for _ in range(rng.randint(1, 3)):
                index = len(driver.turns)
                driver.add(
                    f"r{index}",
                    tokens(100 * seed + index, rng.randint(8, 220)),
                    rng.randint(1, 40),
                    priority=rng.randint(-3, 3),
                    arrival_time=rng.choice([0.25, 0.5, rng.random()]),
                )
        out = driver.step()
        trace.append((
            [new.req_id for new in out.scheduled_new_reqs],
            sorted(out.num_scheduled_tokens.items()),
            sorted(out.preempted_req_ids),
        ))
    return trace


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("async_scheduling", [False, True], ids=["sync", "async"])
def test_requests_without_hints_are_scheduled_exactly_as_stock(
    model_dir: Path, async_scheduling: bool, seed: int
) -> None:
    from vllm.v1.core.sched.async_scheduler import AsyncScheduler
    from vllm.v1.core.sched.scheduler import Scheduler

    from serving_patch.vllm_adapter import ContinuumAsyncScheduler, ContinuumScheduler

    classes = (
        (AsyncScheduler, ContinuumAsyncScheduler) if async_scheduling else (Scheduler, ContinuumScheduler)
    )
    stock, plugin = (
        _random_trace(
            Driver(make_scheduler(
                model_dir, cls, num_blocks=48, policy="priority", async_scheduling=async_scheduling,
                max_num_seqs=6, max_num_batched_tokens=256,
            )),
            seed,
        )
        for cls in classes
    )
    assert any(preempted for _, _, preempted in stock)  # the victim choice is exercised
    assert plugin == stock


def test_stock_scheduler_loses_part_of_the_prefix(model_dir: Path) -> None:
    driver, clock = build(model_dir, "stock")
    result = _filler_scenario(driver, clock)
    assert result["b_before_a2"]
    assert result["a2_cached"] is not None and result["a2_cached"] <= 48


def test_expiry_frees_the_pinned_blocks(model_dir: Path) -> None:
    driver, clock = build(model_dir, "sync")
    driver.add("a1", tokens(1, 64), 4, {"program_id": "A"})
    driver.run_until(lambda: driver.finished("a1"))
    assert driver.scheduler.num_pinned_requests == 1
    assert driver.num_free_blocks == 63 - 5
    clock.now += 1.9
    driver.step()
    assert driver.num_free_blocks == 58
    clock.now += 0.2
    driver.step()
    assert driver.scheduler.num_pinned_requests == 0 and driver.num_free_blocks == 63
    assert driver.scheduler.continuum.counters.expiries == 1


def test_last_step_aborted_and_length_capped_turns_are_never_pinned(model_dir: Path) -> None:
    from vllm.v1.request import RequestStatus

    driver, _ = build(model_dir, "sync")
    driver.add("last", tokens(1, 64), 4, {"program_id": "A", "is_last_step": 1})
    driver.add("capped", tokens(2, 64), 4, {"program_id": "B"}, stop=False)
    driver.add("aborted", tokens(3, 64), 50, {"program_id": "C"})
    driver.add("anonymous", tokens(4, 64), 4)
    driver.run_until(lambda: driver.finished("last") and driver.finished("capped"))
    driver.scheduler.finish_requests("aborted", RequestStatus.FINISHED_ABORTED)
    driver.run_until(lambda: driver.finished("anonymous"))
    assert driver.turns["capped"].request.status == RequestStatus.FINISHED_LENGTH_CAPPED
    assert driver.scheduler.num_pinned_requests == 0
    assert driver.scheduler.continuum.counters.pins_created == 0
    assert driver.num_free_blocks == 63


def test_memory_pressure_releases_pins_instead_of_failing(model_dir: Path) -> None:
    driver, _ = build(model_dir, "sync")
    for i in range(6):  # 6 programs x 5 blocks pinned = 30 of 63 blocks
        driver.add(f"p{i}", tokens(10 + i, 64), 4, {"program_id": f"P{i}"})
    driver.run_until(lambda: all(driver.finished(f"p{i}") for i in range(6)))
    assert driver.scheduler.num_pinned_requests == 6 and driver.num_free_blocks == 33
    # A newer program's 50-block prompt with nothing running: pins go, latest program first.
    driver.add("big", tokens(99, 800), 2, {"program_id": "Z", "is_last_step": 1})
    driver.step()
    assert driver.turns["big"].admitted_step == driver.num_steps
    counters = driver.scheduler.continuum.counters
    assert counters.forced_releases == 4  # 33 + 4 * 5 = 53 >= 51 blocks needed
    assert {p.program_id for p in driver.scheduler.continuum.pins} == {"P0", "P1"}
    driver.run_until(lambda: driver.finished("big"))
    assert driver.num_preemptions == 0


def test_running_request_takes_newer_programs_pins_before_being_preempted(model_dir: Path) -> None:
    driver, _ = build(model_dir, "sync")
    # A running request (older program) decodes long enough to need the blocks a pin holds.
    driver.add("long", tokens(5, 600), 300, {"program_id": "L", "is_last_step": 1})
    driver.add("p", tokens(6, 300), 2, {"program_id": "P"})
    driver.run_until(lambda: driver.finished("p"))
    assert driver.scheduler.num_pinned_requests == 1
    driver.run_until(lambda: driver.finished("long"), max_steps=600)
    assert driver.num_preemptions == 0
    assert driver.scheduler.continuum.counters.forced_releases == 1


def test_older_programs_pin_outranks_a_newer_running_request(model_dir: Path) -> None:
    driver, _ = build(model_dir, "sync")
    driver.add("a1", tokens(1, 64), 4, {"program_id": "A"})  # rank 0, pinned: 5 blocks
    driver.run_until(lambda: driver.finished("a1"))
    driver.add("c", tokens(2, 16), 200, {"program_id": "C", "is_last_step": 1})  # rank 1
    driver.add("l", tokens(3, 640), 200, {"program_id": "L", "is_last_step": 1})  # rank 2
    # 5 pinned + up to 14 (C) + up to 53 (L) blocks > 63: someone must give way.
    driver.run_until(lambda: driver.finished("c"), max_steps=400)
    # While C ran, the youngest program (L) was preempted; A's pin was kept.
    assert driver.num_preemptions >= 1
    assert driver.scheduler.continuum.pins.get("A") is not None
    assert driver.scheduler.continuum.counters.forced_releases == 0
    # With C gone, L resumes beside the pin (58 free blocks) and finishes.
    driver.run_until(lambda: driver.finished("l"), max_steps=600)
    assert driver.scheduler.continuum.counters.forced_releases == 0
    assert driver.num_free_blocks == 63 - 5


def test_reset_prefix_cache_and_shutdown_release_pins(model_dir: Path) -> None:
    driver, _ = build(model_dir, "async")
    driver.add("a1", tokens(1, 64), 4, {"program_id": "A"})
    driver.run_until(lambda: driver.finished("a1"))
    assert driver.scheduler.num_pinned_requests == 1
    assert driver.scheduler.reset_prefix_cache() is True
    assert driver.scheduler.num_pinned_requests == 0 and driver.num_free_blocks == 63
    driver.add("b1", tokens(2, 64), 4, {"program_id": "B"})
    driver.run_until(lambda: driver.finished("b1"))
    driver.scheduler.shutdown()
    assert driver.scheduler.num_pinned_requests == 0 and driver.num_free_blocks == 63


def test_version_check_refuses_other_vllm_series() -> None:
    from serving_patch.compat import (
        UnsupportedVLLMError,
        check_vllm_version,
        require_supported_vllm,
    )

    assert require_supported_vllm().startswith("0.26.")
    check_vllm_version("0.26.3")
    for bad in ("0.25.1", "0.10.2", "1.0.0", "0.26"):
        with pytest.raises(UnsupportedVLLMError, match=r"supports vLLM 0\.26\.x only"):
            check_vllm_version(bad)
