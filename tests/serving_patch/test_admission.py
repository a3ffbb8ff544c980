"""Unit tests of program-level admission control (pure core, fake clock, milliseconds)."""

from __future__ import annotations

import pytest

from serving_patch.config import ContinuumConfig
from serving_patch.core import ContinuumCore, ProgramHints
from serving_patch.core.admission import AdmissionControl


def _gate(blocks: int = 100, headroom: float = 0.0) -> AdmissionControl:
    return AdmissionControl(num_kv_blocks=blocks, block_size=16, headroom_fraction=headroom)


def test_programs_are_admitted_while_their_working_sets_fit() -> None:
    gate = _gate(100, headroom=0.1)  # budget 90 blocks
    assert gate.offer("a", rank=0, request_id="a0", num_prompt_tokens=40 * 16) == ["a0"]
    assert gate.offer("b", rank=1, request_id="b0", num_prompt_tokens=40 * 16) == ["b0"]
    assert gate.offer("c", rank=2, request_id="c0", num_prompt_tokens=20 * 16) == []
    assert gate.is_waiting("c0") and gate.num_active == 2 and gate.reserved_blocks == 80
    # An admitted program's later turn goes at once, even over the budget, and its
    # reservation grows with its context.
    assert gate.offer("a", rank=0, request_id="a1", num_prompt_tokens=45 * 16) == ["a1"]
    assert gate.reservation("a") == 45
    gate.observe("a", 46 * 16 + 3)
    assert gate.reservation("a") == 47
    assert gate.release() == []
    gate.finish("b")
    assert gate.release() == ["c0"]
    assert gate.active_programs() == ["a", "c"]


def test_gate_is_program_fcfs_head_of_line() -> None:
    gate = _gate(100)
    gate.offer("a", rank=0, request_id="a0", num_prompt_tokens=90 * 16)
    assert gate.offer("big", rank=1, request_id="big0", num_prompt_tokens=50 * 16) == []
    # A later, smaller program does not pass the waiting head.
    assert gate.offer("small", rank=2, request_id="s0", num_prompt_tokens=16) == []
    gate.finish("a")
    assert gate.release() == ["big0", "s0"]


def test_reentering_program_keeps_its_program_order() -> None:
    gate = _gate(100)
    gate.offer("new", rank=5, request_id="n0", num_prompt_tokens=60 * 16)
    gate.offer("newer", rank=6, request_id="m0", num_prompt_tokens=60 * 16)
    assert gate.is_waiting("m0")
    # An old program that lost its reservation comes back ahead of the newer waiting one.
    assert gate.offer("old", rank=1, request_id="o3", num_prompt_tokens=30 * 16) == ["o3"]
    gate.finish("new")
    gate.finish("old")
    assert gate.release() == ["m0"]


def test_empty_engine_admits_the_head_whatever_its_size() -> None:
    gate = _gate(10)
    assert gate.offer("huge", rank=0, request_id="h0", num_prompt_tokens=1000 * 16) == ["h0"]


def test_dropped_gated_request_leaves_the_queue() -> None:
    gate = _gate(10)
    gate.offer("a", rank=0, request_id="a0", num_prompt_tokens=10 * 16)
    gate.offer("b", rank=1, request_id="b0", num_prompt_tokens=5 * 16)
    gate.offer("c", rank=2, request_id="c0", num_prompt_tokens=5 * 16)
    assert gate.drop("b0") and not gate.drop("b0")
    gate.finish("a")
    assert gate.release() == ["c0"]
    assert gate.num_waiting == 0


def test_headroom_is_validated() -> None:
    with pytest.raises(ValueError):
        _gate(10, headroom=1.0)
    with pytest.raises(ValueError):
        ContinuumConfig(admission_headroom_fraction=-0.1)
    with pytest.raises(ValueError):
        ContinuumConfig(admission_idle_s=0.0)


# ---------------------------------------------------------------- through ContinuumCore
def _core(**changes: object) -> ContinuumCore:
    config = ContinuumConfig(admission=True, admission_headroom_fraction=0.0, admission_idle_s=60.0).replace(
        **changes
    )
    return ContinuumCore(config, num_kv_blocks=100, block_size=16)


def _arrive(core: ContinuumCore, rid: str, program: str, tokens: int, now: float, *, last: bool = False) -> list[str]:
    core.on_arrival(rid, ProgramHints(program, is_last_step=last), priority=0, arrival_time=now, now=now)
    return core.admit(rid, num_prompt_tokens=tokens)


def _finish(core: ContinuumCore, rid: str, tokens: int, now: float) -> object:
    return core.on_finished(
        rid, stopped_normally=True, pinnable=True, num_blocks=tokens // 16, num_tokens=tokens, now=now
    )


def test_core_gates_new_programs_and_admits_when_one_finishes() -> None:
    core = _core()
    assert _arrive(core, "a0", "a", 60 * 16, 0.0) == ["a0"]
    assert _arrive(core, "b0", "b", 60 * 16, 0.1) == []
    assert core.counters.admission_waits == 1
    # a's turn ends and a runs a tool: its working set stays reserved (and pinned).
    decision = _finish(core, "a0", 64 * 16, 1.0)
    assert decision.pin is not None  # type: ignore[attr-defined]
    assert decision.pin.expires_at_s == pytest.approx(61.0)  # type: ignore[attr-defined]
    assert core.admission_release() == []
    assert _arrive(core, "a1", "a", 70 * 16, 5.0, last=True) == ["a1"]
    _finish(core, "a1", 72 * 16, 6.0)
    assert core.admission is not None and not core.admission.is_active("a")
    assert core.admission_release() == ["b0"]


def test_core_without_hints_or_admission_passes_requests_through() -> None:
    core = _core()
    core.on_arrival("plain", None, priority=0, arrival_time=0.0, now=0.0)
    assert core.admit("plain", num_prompt_tokens=10_000) == ["plain"]
    off = ContinuumCore(ContinuumConfig(), num_kv_blocks=100)
    off.on_arrival("x", ProgramHints("p"), priority=0, arrival_time=0.0, now=0.0)
    assert off.admit("x", num_prompt_tokens=10_000) == ["x"]
    assert off.admission is None and off.admission_release() == [] and off.expire_reservations(99.0) == []


def test_idle_reservation_expires_with_its_pin_and_the_program_reenters() -> None:
    core = _core(admission_yield_s=60.0)  # no early yield: the idle expiry alone
    _arrive(core, "a0", "a", 60 * 16, 0.0)
    _finish(core, "a0", 60 * 16, 1.0)
    assert _arrive(core, "b0", "b", 60 * 16, 2.0) == []
    assert core.expire_reservations(30.0) == []
    pins = core.expire_reservations(61.0)
    assert [p.program_id for p in pins] == ["a"] and core.counters.reservations_expired == 1
    assert core.admission_release() == ["b0"]
    # a comes back later: it re-enters through the gate, in program order.
    assert _arrive(core, "a1", "a", 62 * 16, 70.0) == []
    assert core.counters.admission_reentries == 1


def test_aborted_gated_turn_leaves_the_gate() -> None:
    core = _core()
    _arrive(core, "a0", "a", 90 * 16, 0.0)
    assert _arrive(core, "b0", "b", 60 * 16, 0.1) == []
    core.on_finished("b0", stopped_normally=False, pinnable=False, num_blocks=0, num_tokens=0, now=0.2)
    assert core.admission is not None and core.admission.num_waiting == 0
    _finish(core, "a0", 90 * 16, 1.0)


def test_admission_pins_are_not_capped_by_the_pinned_share() -> None:
    core = _core(max_pinned_fraction=0.1)
    assert core.max_pinned_blocks == 100


def test_release_all_drops_reservations_but_keeps_the_gate() -> None:
    core = _core()
    _arrive(core, "a0", "a", 90 * 16, 0.0)
    assert _arrive(core, "b0", "b", 60 * 16, 0.1) == []
    core.release_all()
    assert core.admission is not None and core.admission.num_active == 0
    assert core.admission_release() == ["b0"]


def test_under_pressure_programs_idle_in_a_tool_call_yield_latest_first() -> None:
    # Budget 100 blocks. a (rank 0) and b (rank 1) hold 40 each and run tools; c needs 50.
    core = _core()
    for rid, program, now in (("a0", "a", 0.0), ("b0", "b", 0.1)):
        assert _arrive(core, rid, program, 40 * 16, now) == [rid]
        _finish(core, rid, 40 * 16, now + 1.0)
    assert _arrive(core, "c0", "c", 50 * 16, 1.2) == []
    assert core.admission is not None and core.admission.shortfall() == 30
    # Not idle long enough yet (admission_yield_s = 2 s): nobody yields.
    assert core.expire_reservations(2.5) == []
    # b arrived last: it yields first, and that is enough for c.
    pins = core.expire_reservations(3.2)
    assert [p.program_id for p in pins] == ["b"] and core.counters.reservations_yielded == 1
    assert core.admission.is_active("a") and not core.admission.is_active("b")
    assert core.admission_release() == ["c0"]
    # b comes back: it re-enters through the gate (c's 50 + a's 40 leave no room for its 40).
    assert _arrive(core, "b1", "b", 42 * 16, 4.0) == []
    assert core.counters.admission_reentries == 1


def test_a_program_with_a_turn_in_flight_never_yields() -> None:
    core = _core()
    assert _arrive(core, "a0", "a", 60 * 16, 0.0) == ["a0"]  # running, not idle
    assert _arrive(core, "b0", "b", 60 * 16, 0.1) == []
    assert core.expire_reservations(50.0) == [] and core.counters.reservations_yielded == 0
    assert core.admission is not None and core.admission.is_active("a")


def test_without_pressure_idle_reservations_stay_until_the_idle_limit() -> None:
    core = _core()
    _arrive(core, "a0", "a", 60 * 16, 0.0)
    _finish(core, "a0", 60 * 16, 1.0)
    assert core.expire_reservations(30.0) == []  # nobody waits at the gate
    assert core.admission is not None and core.admission.is_active("a")


def test_yield_setting_is_validated() -> None:
    with pytest.raises(ValueError, match="admission_yield_s"):
        ContinuumConfig(admission_yield_s=-1.0)
    with pytest.raises(ValueError, match="admission_yield_s"):
        ContinuumConfig(admission_yield_s=float("nan"))


def test_idle_programs_do_not_yield_when_together_they_would_not_make_room() -> None:
    # a (idle) holds 30 and b (running) 40 of 100 blocks; c needs 70. Without a, b's 40 and c's
    # 70 still exceed 100: a keeps its reservation, and c waits for b.
    core = _core()
    assert _arrive(core, "a0", "a", 30 * 16, 0.0) == ["a0"]
    _finish(core, "a0", 30 * 16, 0.5)
    assert _arrive(core, "b0", "b", 40 * 16, 0.6) == ["b0"]
    assert _arrive(core, "c0", "c", 70 * 16, 0.7) == []
    assert core.expire_reservations(10.0) == [] and core.counters.reservations_yielded == 0
    assert core.admission is not None and core.admission.is_active("a")
