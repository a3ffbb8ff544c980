"""Program-level admission control against the REAL vLLM 0.26 scheduler on CPU (no model).

KV cache: 64 blocks of 16 tokens; admission budget 57 blocks (headroom 0.1). Fake clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests import extras

pytest.importorskip("vllm", reason=extras.SERVE)

from tests.serving_patch.vllm_harness import Driver, FakeClock, build, tokens

pytestmark = pytest.mark.vllm


@pytest.fixture(autouse=True)
def _plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("QUOTAFLOW_CONTINUUM_ADMISSION", "1")
    monkeypatch.setenv("QUOTAFLOW_CONTINUUM_ADMISSION_HEADROOM_FRACTION", "0.1")
    monkeypatch.setenv("QUOTAFLOW_CONTINUUM_ADMISSION_IDLE_S", "60")
    # Programs idle in a tool call keep their reservations even with a newcomer at the gate (the
    # early yield has its own test below).
    monkeypatch.setenv("QUOTAFLOW_CONTINUUM_ADMISSION_YIELD_S", "60")


def _in_engine(driver: Driver, request_id: str) -> bool:
    return request_id in driver.scheduler.requests


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_new_program_waits_while_working_sets_are_full_and_enters_when_one_finishes(
    model_dir: Path, kind: str
) -> None:
    driver, clock = build(model_dir, kind)
    scheduler = driver.scheduler
    driver.add("a1", tokens(1, 400), 4, {"program_id": "A", "tool_name": "bash"})  # 25 blocks
    driver.add("b1", tokens(2, 400), 4, {"program_id": "B", "tool_name": "bash"})  # 25 blocks
    driver.add("c1", tokens(3, 400), 4, {"program_id": "C", "is_last_step": 1})  # 50 + 25 > 57
    assert _in_engine(driver, "a1") and _in_engine(driver, "b1") and not _in_engine(driver, "c1")
    assert scheduler.num_gated_requests == 1
    assert scheduler.get_num_unfinished_requests() == 3  # the engine keeps stepping
    driver.run_until(lambda: driver.finished("a1") and driver.finished("b1"))
    # A and B run tools: their working sets stay reserved (pinned), so C still waits.
    for _ in range(5):
        driver.step()
    assert not _in_engine(driver, "c1") and scheduler.num_pinned_requests == 2
    clock.now += 3.0
    driver.add("a2", driver.next_prompt("a1", 20, seed=1), 3, {"program_id": "A", "is_last_step": 1})
    assert _in_engine(driver, "a2")  # an admitted program's turn goes at once
    driver.run_until(lambda: driver.finished("a2"))
    # A finished: its reservation is gone, and C enters at the next step.
    driver.step()
    assert _in_engine(driver, "c1") and scheduler.num_gated_requests == 0
    driver.run_until(lambda: driver.finished("c1"))
    counters = scheduler.continuum.counters
    assert counters.admission_waits == 1 and counters.pin_hits == 1
    assert driver.num_preemptions == 0


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_program_idle_in_a_long_tool_call_yields_to_the_gate_and_reenters_in_order(
    model_dir: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUOTAFLOW_CONTINUUM_ADMISSION_YIELD_S", "2")
    driver, clock = build(model_dir, kind)
    scheduler = driver.scheduler
    driver.add("a1", tokens(1, 400), 4, {"program_id": "A", "tool_name": "search"})  # 25 blocks
    driver.add("b1", tokens(2, 400), 4, {"program_id": "B", "tool_name": "search"})  # 25 blocks
    driver.add("c1", tokens(3, 400), 4, {"program_id": "C", "is_last_step": 1})  # 50 + 25 > 57
    driver.run_until(lambda: driver.finished("a1") and driver.finished("b1"))
    driver.step()
    assert not _in_engine(driver, "c1") and scheduler.num_pinned_requests == 2  # idle < 2 s: kept
    clock.now += 2.5
    driver.step()
    # B arrived after A: B yields its reservation and its pin, which is enough for C.
    counters = scheduler.continuum.counters
    assert counters.reservations_yielded == 1 and scheduler.num_pinned_requests == 1
    assert _in_engine(driver, "c1") and scheduler.continuum.admission.is_active("A")
    # B's next turn comes back while C runs: it waits at the gate, then enters before any newer program.
    driver.add("b2", driver.next_prompt("b1", 20, seed=2), 3, {"program_id": "B", "is_last_step": 1})
    driver.add("d1", tokens(4, 400), 4, {"program_id": "D", "is_last_step": 1})
    assert not _in_engine(driver, "b2") and not _in_engine(driver, "d1")
    assert counters.admission_reentries == 1
    driver.run_until(lambda: all(driver.finished(r) for r in ("c1", "b2", "d1")), max_steps=800)
    # B (older) entered no later than D (newer); A, still idle in its tool call, yielded to D in turn.
    assert driver.turns["b2"].admitted_step <= driver.turns["d1"].admitted_step
    assert driver.turns["c1"].admitted_step < driver.turns["b2"].admitted_step
    assert counters.reservations_yielded == 2 and not scheduler.continuum.admission.is_active("A")
    assert driver.num_preemptions == 0


def _newcomer_scenario(driver: Driver, clock: FakeClock) -> dict[str, Any]:
    """A and B (20 blocks each) run turn 1 and call a tool; a 50-block newcomer N arrives and
    runs; then A's and B's next turns arrive."""
    driver.add("a1", tokens(1, 320), 4, {"program_id": "A", "tool_name": "bash"})
    driver.add("b1", tokens(2, 320), 4, {"program_id": "B", "tool_name": "bash"})
    driver.run_until(lambda: driver.finished("a1") and driver.finished("b1"))
    clock.now += 0.5
    driver.add("n1", tokens(9, 800), 30, {"program_id": "N", "is_last_step": 1})
    for _ in range(6):
        driver.step()
    clock.now += 2.0
    driver.add("a2", driver.next_prompt("a1", 16, seed=1), 3, {"program_id": "A", "is_last_step": 1})
    driver.add("b2", driver.next_prompt("b1", 16, seed=2), 3, {"program_id": "B", "is_last_step": 1})
    driver.run_until(lambda: all(driver.finished(r) for r in ("a2", "b2", "n1")), max_steps=800)
    turns = driver.turns
    return {
        "a2_cached": turns["a2"].num_cached_tokens,
        "b2_cached": turns["b2"].num_cached_tokens,
        "n_admitted": turns["n1"].admitted_step,
        "a2_admitted": turns["a2"].admitted_step,
        "b2_admitted": turns["b2"].admitted_step,
    }


def test_stock_lets_a_newcomer_evict_the_admitted_programs_cache(model_dir: Path) -> None:
    driver, clock = build(model_dir, "stock")
    result = _newcomer_scenario(driver, clock)
    # N takes 50 of 63 blocks while A and B call tools: their cached prefixes are evicted.
    assert result["a2_cached"] + result["b2_cached"] < 2 * 320


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_admitted_programs_keep_their_cache_and_the_newcomer_waits(model_dir: Path, kind: str) -> None:
    driver, clock = build(model_dir, kind)
    result = _newcomer_scenario(driver, clock)
    # Turn 1 held 324 tokens: 20 full blocks, all reused by turn 2.
    assert result["a2_cached"] == 320 and result["b2_cached"] == 320
    # N's first turn waited until both admitted programs finished.
    assert result["n_admitted"] > max(result["a2_admitted"], result["b2_admitted"])
    assert driver.num_preemptions == 0
    assert driver.scheduler.continuum.counters.admission_waits == 1
    assert driver.num_free_blocks == 63


def test_aborted_gated_request_is_finished_and_forgotten(model_dir: Path) -> None:
    from vllm.v1.request import RequestStatus

    driver, _ = build(model_dir, "sync")
    driver.add("a1", tokens(1, 800), 4, {"program_id": "A"})
    driver.add("c1", tokens(3, 400), 4, {"program_id": "C", "is_last_step": 1})
    assert driver.scheduler.num_gated_requests == 1
    aborted = driver.scheduler.finish_requests(["c1"], RequestStatus.FINISHED_ABORTED)
    assert [r.request_id for r in aborted] == ["c1"]
    assert driver.scheduler.num_gated_requests == 0
    assert driver.scheduler.continuum.admission.num_waiting == 0
    driver.run_until(lambda: driver.finished("a1"))
    assert driver.scheduler.get_num_unfinished_requests() == 0


def test_requests_without_hints_bypass_the_gate(model_dir: Path) -> None:
    driver, _ = build(model_dir, "sync")
    driver.add("a1", tokens(1, 900), 4, {"program_id": "A"})
    driver.add("plain", tokens(2, 400), 4)
    assert _in_engine(driver, "plain") and driver.scheduler.num_gated_requests == 0
    driver.run_until(lambda: driver.finished("plain") and driver.finished("a1"), max_steps=300)


def test_idle_program_loses_its_reservation_and_reenters_ahead_of_newer_programs(model_dir: Path) -> None:
    driver, clock = build(model_dir, "sync")
    scheduler = driver.scheduler
    driver.add("a1", tokens(1, 400), 4, {"program_id": "A", "tool_name": "bash"})  # rank 0, 25 blocks
    driver.add("b1", tokens(2, 400), 4, {"program_id": "B", "tool_name": "bash"})  # rank 1, 25 blocks
    driver.run_until(lambda: driver.finished("a1") and driver.finished("b1"))
    driver.add("c1", tokens(3, 400), 4, {"program_id": "C", "is_last_step": 1})  # rank 2: waits
    driver.step()
    assert not _in_engine(driver, "c1")
    # A and B idle past admission_idle_s (60 s): their reservations and pins go, C enters.
    clock.now += 61.0
    driver.step()
    assert _in_engine(driver, "c1") and scheduler.num_pinned_requests == 0
    driver.add("d1", tokens(4, 600), 4, {"program_id": "D", "is_last_step": 1})  # rank 3, 38 blocks: waits
    assert not _in_engine(driver, "d1")
    # A comes back: it re-enters through the gate in program order, ahead of the newer D.
    driver.add("a2", driver.next_prompt("a1", 20, seed=1), 3, {"program_id": "A", "is_last_step": 1})
    assert _in_engine(driver, "a2") and not _in_engine(driver, "d1")
    counters = scheduler.continuum.counters
    assert counters.reservations_expired == 2 and counters.admission_reentries == 1
    driver.run_until(lambda: all(driver.finished(r) for r in ("a2", "c1", "d1")), max_steps=400)
    assert driver.num_free_blocks == 63 and scheduler.num_gated_requests == 0
