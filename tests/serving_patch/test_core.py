"""Unit tests of the pure Continuum policy core (no vLLM, fake clock, milliseconds)."""

from __future__ import annotations

import pytest

from serving_patch.config import ContinuumConfig
from serving_patch.core import (
    ContinuumCore,
    FixedTTLPolicy,
    PinTable,
    ProgramHints,
    ProgramTable,
    ToolDurationModel,
    TTLInputs,
    UtilityTTLPolicy,
    order_key,
)
from serving_patch.core.durations import GLOBAL
from serving_patch.core.pins import Pin
from serving_patch.core.stats import EtaEstimator, QueueDelayWindow
from serving_patch.core.ttl import PrefillProfile, best_tau, make_ttl_policy


def _pin(program_id: str, rank: int, *, expires: float = 10.0, blocks: int = 4) -> Pin:
    return Pin(program_id, f"r-{program_id}", rank, blocks, blocks * 16, 0.0, expires)


# ---------------------------------------------------------------- hints and ordering
def test_order_key_orders_priority_then_pinned_then_program_arrival() -> None:
    pinned_late = order_key(priority=0, arrival_time=9.0, request_id="a", program_arrival_time=5.0, pinned=True)
    early_program = order_key(priority=0, arrival_time=8.0, request_id="b", program_arrival_time=1.0)
    plain_between = order_key(priority=0, arrival_time=2.0, request_id="c")
    late_program = order_key(priority=0, arrival_time=7.0, request_id="d", program_arrival_time=3.0)
    urgent = order_key(priority=-1, arrival_time=10.0, request_id="e")
    assert sorted([late_program, plain_between, pinned_late, urgent, early_program]) == [
        urgent, pinned_late, early_program, plain_between, late_program
    ]


def test_order_key_of_requests_without_hints_is_vllms_order() -> None:
    # vLLM's Request.__lt__: (priority, arrival_time, request_id).
    requests = [(1, 0.5, "z"), (0, 2.0, "a"), (0, 1.0, "b"), (0, 1.0, "a"), (-3, 9.0, "q")]
    keys = {r: order_key(priority=r[0], arrival_time=r[1], request_id=r[2]) for r in requests}
    assert sorted(requests, key=keys.__getitem__) == sorted(requests)


def _hints(program_id: str, **fields: object) -> ProgramHints:
    return ProgramHints(program_id, **fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------- program table
def test_program_table_ranks_and_duration_samples() -> None:
    table = ProgramTable(idle_timeout_s=100.0, max_programs=10)
    first = table.on_arrival("a", 1.0)
    assert first.program.rank == 0 and first.tool_duration_s is None
    assert table.on_arrival("b", 2.0).program.rank == 1
    table.on_departure("a", 3.0, tool_name="bash")
    again = table.on_arrival("a", 3.75)
    assert again.program.rank == 0 and again.program.num_turns == 2
    assert again.tool_name == "bash" and again.tool_duration_s == pytest.approx(0.75)


def test_program_table_collects_idle_but_keeps_busy_and_pinned() -> None:
    table = ProgramTable(idle_timeout_s=10.0, max_programs=100)
    for pid in ("idle", "pinned", "busy"):
        table.on_arrival(pid, 0.0)
    table.on_departure("idle", 1.0, tool_name=None)
    table.on_departure("pinned", 1.0, tool_name=None)
    assert table.collect_idle(5.0, keep=set()) == []
    assert table.collect_idle(20.0, keep={"pinned"}) == ["idle"]
    assert "busy" in table and "pinned" in table and "idle" not in table


def test_program_table_size_limit_drops_oldest_idle() -> None:
    table = ProgramTable(idle_timeout_s=1e9, max_programs=2)
    for i, pid in enumerate("abc"):
        table.on_arrival(pid, float(i))
        table.on_departure(pid, float(i), tool_name=None)
    assert table.collect_idle(3.0, keep=set()) == ["a"]
    assert len(table) == 2


# ---------------------------------------------------------------- pin table
def test_pin_table_expiry_skips_claimed_pins() -> None:
    pins = PinTable()
    pins.add(_pin("a", 0, expires=1.0))
    pins.add(_pin("b", 1, expires=1.0))
    pins.claim("a", "next-a")
    assert [p.program_id for p in pins.expired(2.0)] == ["b"]
    pins.unclaim("next-a")
    assert {p.program_id for p in pins.expired(2.0)} == {"a", "b"}


def test_pin_table_victims_latest_arrival_first_and_filters() -> None:
    pins = PinTable()
    for rank, pid in enumerate("abcd"):
        pins.add(_pin(pid, rank))
    pins.claim("d", "next-d")
    assert [p.program_id for p in pins.victims()] == ["c", "b", "a", "d"]
    assert [p.program_id for p in pins.victims(exclude_program="c", min_rank=0)] == ["b", "d"]


def test_pin_table_add_returns_superseded_pin() -> None:
    pins = PinTable()
    assert pins.add(_pin("a", 0, blocks=3)) is None
    old = pins.add(Pin("a", "r2", 0, 5, 80, 1.0, 3.0))
    assert old is not None and old.num_blocks == 3 and pins.num_blocks == 5


# ---------------------------------------------------------------- durations
def test_duration_model_cold_start_pooled_then_per_tool() -> None:
    model = ToolDurationModel(min_samples=3, max_samples_per_tool=5, max_tools=2)
    for d in (1.0, 2.0, 3.0):
        model.observe("bash", d)
    assert model.samples_for("bash") is None  # not more than K samples yet
    model.observe("edit", 0.5)
    source, samples = model.samples_for("edit")  # type: ignore[misc]
    assert source == GLOBAL and samples == [0.5, 1.0, 2.0, 3.0]
    model.observe("bash", 0.1)
    assert model.samples_for("bash") == ("bash", [0.1, 1.0, 2.0, 3.0])


def test_duration_model_memory_is_bounded() -> None:
    model = ToolDurationModel(min_samples=1, max_samples_per_tool=4, max_tools=2)
    for i in range(100):
        model.observe(f"tool{i % 3}", float(i))
    assert model.num_tools == 2
    assert model.num_samples("tool0") <= 4 and model.num_samples() == 4
    assert model.mean_for("tool9") is None


# ---------------------------------------------------------------- TTL policies
def test_best_tau_is_argmax_of_the_utility() -> None:
    samples = [0.1, 0.2, 0.2, 5.0]
    # benefit 2: tau=0.2 gives 0.75*2-0.2=1.3; tau=5 gives 2-5<0; tau=0.1 gives 0.4.
    assert best_tau(samples, 2.0) == 0.2
    # benefit tiny: pinning never pays.
    assert best_tau(samples, 0.1) == 0.0
    # benefit huge: cover the tail.
    assert best_tau(samples, 100.0) == 5.0


def test_utility_policy_cold_start_then_rule_and_hint() -> None:
    model = ToolDurationModel(min_samples=2, max_samples_per_tool=100, max_tools=8)
    profile = PrefillProfile(a_s=0.0, b_s_per_token=1e-3, c_s_per_token2=0.0)
    policy = UtilityTTLPolicy(model, profile=profile, default_ttl_s=2.0, max_ttl_s=4.0)
    inputs = TTLInputs(tool_name="bash", num_context_tokens=1000, queue_delay_s=0.5, eta=1.0)
    assert policy.ttl_s(inputs) == 2.0
    for d in (0.3, 0.4, 10.0):
        model.observe("bash", d)
    # benefit = 0.5*1 + 1.0 = 1.5: tau=0.4 -> 2/3*1.5-0.4=0.6 beats tau=0.3 -> 0.2 and tau=10.
    assert policy.ttl_s(inputs) == 0.4
    short_ctx = TTLInputs(tool_name="bash", num_context_tokens=10, queue_delay_s=0.0, eta=1.0)
    assert policy.ttl_s(short_ctx) == 0.0
    hinted = TTLInputs(tool_name="bash", num_context_tokens=10, queue_delay_s=0.0, eta=1.0, ttl_hint_s=9.0)
    assert policy.ttl_s(hinted) == 4.0


def test_fixed_policy_pins_short_and_unknown_tools_only() -> None:
    model = ToolDurationModel(min_samples=100, max_samples_per_tool=100, max_tools=8)
    policy = FixedTTLPolicy(model, threshold_s=2.0, max_ttl_s=30.0)
    model.observe("slow", 5.0)
    model.observe("fast", 0.5)

    def ttl(tool: str) -> float:
        return policy.ttl_s(TTLInputs(tool, 100, 0.0, 1.0))

    assert (ttl("slow"), ttl("fast"), ttl("never-seen")) == (0.0, 2.0, 2.0)


def test_make_ttl_policy_rejects_unknown_name() -> None:
    model = ToolDurationModel(min_samples=1, max_samples_per_tool=1, max_tools=1)
    with pytest.raises(ValueError, match="unknown TTL policy"):
        make_ttl_policy("lru", model, profile=PrefillProfile(), default_ttl_s=1, fixed_threshold_s=1, max_ttl_s=1)


def test_eta_and_queue_delay_estimators() -> None:
    fixed = EtaEstimator(window=50, min_programs=3)
    assert fixed.eta == 1.0
    for _ in range(5):
        fixed.observe_program(6)
    assert fixed.eta == pytest.approx(1.0)
    mixed = EtaEstimator(window=50, min_programs=3)
    for n in (1, 1, 1, 1, 2, 3, 8, 20):
        mixed.observe_program(n)
    assert 0.0 <= mixed.eta < 0.9
    window = QueueDelayWindow(window=2)
    assert window.mean_s == 0.0
    for d in (10.0, 1.0, 3.0):
        window.observe(d)
    assert window.mean_s == 2.0


# ---------------------------------------------------------------- controller
def _core(**changes: object) -> ContinuumCore:
    config = ContinuumConfig(ttl_policy="fixed", fixed_threshold_s=2.0).replace(**changes)
    return ContinuumCore(config, num_kv_blocks=100)


def test_core_pins_stopped_turn_and_hands_off_at_admission() -> None:
    core = _core()
    hints = _hints("p", tool_name="bash")
    core.on_arrival("t1", hints, priority=0, arrival_time=0.0, now=0.0)
    core.on_admitted("t1", num_cached_tokens=0, block_size=16, now=0.0)
    decision = core.on_finished("t1", stopped_normally=True, pinnable=True, num_blocks=4, num_tokens=70, now=1.0)
    assert decision.pin is not None and decision.pin.expires_at_s == 3.0
    key = core.on_arrival("t2", hints, priority=0, arrival_time=1.5, now=1.5)
    assert key == order_key(priority=0, arrival_time=1.5, request_id="t2", program_arrival_time=0.0, pinned=True)
    assert core.order_of("t2") == key
    assert core.expire(10.0) == []  # claimed: the next turn is waiting
    handed = core.on_admitted("t2", num_cached_tokens=64, block_size=16, now=1.6)
    assert handed is decision.pin and len(core.pins) == 0
    assert (core.counters.pin_hits, core.counters.tokens_reused) == (1, 64)
    assert core.durations.num_samples("bash") == 1


def test_core_never_pins_last_step_aborted_or_unknown_program() -> None:
    core = _core()
    core.on_arrival("last", _hints("p", is_last_step=True), priority=0, arrival_time=0, now=0)
    assert (
        core.on_finished("last", stopped_normally=True, pinnable=True, num_blocks=4, num_tokens=64, now=1).pin is None
    )
    assert "p" not in core.programs
    core.on_arrival("abort", _hints("q"), priority=0, arrival_time=0, now=0)
    assert (
        core.on_finished("abort", stopped_normally=False, pinnable=True, num_blocks=4, num_tokens=64, now=1).pin is None
    )
    core.on_arrival("anon", None, priority=0, arrival_time=0, now=0)
    assert (
        core.on_finished("anon", stopped_normally=True, pinnable=True, num_blocks=4, num_tokens=64, now=1).pin is None
    )
    assert (
        core.on_finished("never-arrived", stopped_normally=True, pinnable=True, num_blocks=4, num_tokens=64, now=1).pin
        is None
    )
    assert core.counters.pins_created == 0


def test_core_last_step_releases_the_programs_pin() -> None:
    core = _core()
    hints = _hints("p")
    core.on_arrival("t1", hints, priority=0, arrival_time=0, now=0)
    core.on_finished("t1", stopped_normally=True, pinnable=True, num_blocks=4, num_tokens=64, now=1)
    core.on_arrival("t2", _hints("p", is_last_step=True), priority=0, arrival_time=2, now=2)
    decision = core.on_finished("t2", stopped_normally=True, pinnable=True, num_blocks=5, num_tokens=80, now=3)
    assert decision.pin is None and [p.request_id for p in decision.release] == ["t1"]


def test_core_expiry_and_cap() -> None:
    core = _core(max_pinned_fraction=0.1)  # 10 of 100 blocks
    for i, blocks in enumerate((6, 6)):
        core.on_arrival(f"r{i}", _hints(f"p{i}"), priority=0, arrival_time=0, now=0)
        core.on_finished(f"r{i}", stopped_normally=True, pinnable=True, num_blocks=blocks, num_tokens=96, now=0)
    assert len(core.pins) == 1 and core.counters.pins_refused == 1
    assert core.expire(1.0) == []
    assert [p.program_id for p in core.expire(2.0)] == ["p0"]
    assert core.counters.expiries == 1


def test_core_pressure_victims_respect_program_order() -> None:
    core = _core()
    for i in range(3):
        core.on_arrival(f"r{i}", _hints(f"p{i}"), priority=0, arrival_time=0, now=0)
        core.on_finished(f"r{i}", stopped_normally=True, pinnable=True, num_blocks=2, num_tokens=32, now=0)
    core.on_arrival("p1-next", _hints("p1"), priority=0, arrival_time=0.1, now=0.1)
    assert [p.program_id for p in core.pressure_victims("p1-next", allow_any=False)] == ["p2"]
    assert [p.program_id for p in core.pressure_victims("p1-next", allow_any=True)] == ["p2", "p0"]
    assert core.force_release("p2") is not None and core.counters.forced_releases == 1


def test_core_records_queue_delay_of_unpinned_later_turns_and_gc() -> None:
    core = _core(gc_interval_s=5.0, program_idle_timeout_s=10.0)
    hints = _hints("p")
    core.on_arrival("t1", hints, priority=0, arrival_time=0, now=0)
    core.on_admitted("t1", num_cached_tokens=0, block_size=16, now=4.0)  # first turn: not counted
    core.on_finished("t1", stopped_normally=True, pinnable=False, num_blocks=2, num_tokens=32, now=5)
    core.on_arrival("t2", hints, priority=0, arrival_time=6, now=6)
    core.on_admitted("t2", num_cached_tokens=0, block_size=16, now=7.5)
    assert core.queue_delay.mean_s == 1.5
    core.on_finished("t2", stopped_normally=True, pinnable=False, num_blocks=2, num_tokens=32, now=8)
    assert core.collect_garbage(9.0) == []
    assert core.collect_garbage(12.0) == []  # rate limited
    assert core.collect_garbage(20.0) == ["p"]


def test_config_env_round_trip_and_errors() -> None:
    config = ContinuumConfig(ttl_policy="fixed", max_ttl_s=7.5, min_samples=3, pin_length_capped=True)
    assert ContinuumConfig.from_env(config.to_env()) == config
    assert ContinuumConfig.from_env({}) == ContinuumConfig()
    with pytest.raises(ValueError, match="QUOTAFLOW_CONTINUUM_MIN_SAMPLES"):
        ContinuumConfig.from_env({"QUOTAFLOW_CONTINUUM_MIN_SAMPLES": "many"})
    with pytest.raises(ValueError, match="ttl_policy"):
        ContinuumConfig(ttl_policy="lru")  # type: ignore[arg-type]
