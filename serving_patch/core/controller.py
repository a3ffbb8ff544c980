"""ContinuumCore: the pure facade the vLLM adapter calls at each scheduler hook.

The adapter translates vLLM objects into plain values (ids, counts, a clock reading); the core
returns decisions (a queue-order key, a pin to take, pins to release). It never touches blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from serving_patch.config import ContinuumConfig
from serving_patch.core.admission import AdmissionControl
from serving_patch.core.durations import ToolDurationModel
from serving_patch.core.hints import ProgramHints
from serving_patch.core.ordering import OrderKey, order_key
from serving_patch.core.pins import Pin, PinTable
from serving_patch.core.programs import ProgramTable
from serving_patch.core.stats import EtaEstimator, QueueDelayWindow
from serving_patch.core.ttl import PrefillProfile, TTLInputs, make_ttl_policy


@dataclass
class PluginCounters:
    """Monotonic counters of the plugin (exported as ``quotaflow_continuum_*_total``)."""

    pins_created: int = 0
    """Turns whose KV cache was pinned."""
    pin_hits: int = 0
    """Next turns admitted while their program's pin held, with a prefix hit."""
    handoffs: int = 0
    """Pins handed off to the program's admitted next turn (hit or not)."""
    expiries: int = 0
    """Pins released because their TTL passed."""
    forced_releases: int = 0
    """Pins released early because an allocation failed (memory pressure)."""
    pins_refused: int = 0
    """Pins not taken because the pinned share of the KV cache was at its cap."""
    tokens_reused: int = 0
    """Prompt tokens served from a pinned prefix instead of being prefilled again."""
    admission_waits: int = 0
    """Turns held at the admission gate (their program's working set did not fit)."""
    admission_reentries: int = 0
    """Programs that lost their reservation and came back through the gate."""
    reservations_expired: int = 0
    """Reservations dropped because their program idled past ``admission_idle_s``."""
    reservations_yielded: int = 0
    """Reservations of programs idle in a tool call given up to programs waiting at the gate."""


@dataclass
class _Tracked:
    hints: ProgramHints | None
    rank: int
    arrival_s: float
    had_pin: bool
    order: OrderKey
    admitted: bool = False

    @property
    def program_id(self) -> str | None:
        return self.hints.program_id if self.hints else None


@dataclass(frozen=True)
class PinDecision:
    """What to do with a finished turn's blocks."""

    pin: Pin | None = None
    """Keep the turn's blocks under this pin (None: free them as usual)."""
    release: list[Pin] = field(default_factory=list)
    """Older pins to release now (the program's superseded or final pin)."""


class ContinuumCore:
    """Program table, pins, durations and TTL policy behind a handful of event methods."""

    def __init__(self, config: ContinuumConfig, *, num_kv_blocks: int, block_size: int = 16) -> None:
        self.config = config
        self.num_kv_blocks = num_kv_blocks
        self.admission: AdmissionControl | None = None
        if config.admission:
            self.admission = AdmissionControl(
                num_kv_blocks=num_kv_blocks,
                block_size=block_size,
                headroom_fraction=config.admission_headroom_fraction,
            )
        # Under admission control the reservations bound what pins hold: no separate cap.
        fraction = 1.0 if config.admission else config.max_pinned_fraction
        self.max_pinned_blocks = int(fraction * num_kv_blocks)
        self.programs = ProgramTable(
            idle_timeout_s=config.program_idle_timeout_s, max_programs=config.max_programs
        )
        self.pins = PinTable()
        self.durations = ToolDurationModel(
            min_samples=config.min_samples,
            max_samples_per_tool=config.max_samples_per_tool,
            max_tools=config.max_tools,
        )
        self.queue_delay = QueueDelayWindow(window=config.queue_delay_window)
        self.eta = EtaEstimator(window=config.eta_window, min_programs=config.eta_min_programs)
        self.policy = make_ttl_policy(
            config.ttl_policy,
            self.durations,
            profile=PrefillProfile(
                config.prefill_a_s, config.prefill_b_s_per_token, config.prefill_c_s_per_token2
            ),
            default_ttl_s=config.default_ttl_s,
            fixed_threshold_s=config.fixed_threshold_s,
            max_ttl_s=config.max_ttl_s,
        )
        self.counters = PluginCounters()
        self._requests: dict[str, _Tracked] = {}
        self._last_gc_s: float | None = None

    # ------------------------------------------------------------------ events
    def on_arrival(
        self,
        request_id: str,
        hints: ProgramHints | None,
        *,
        priority: int,
        arrival_time: float,
        now: float,
    ) -> OrderKey:
        """A request arrived; returns its waiting-queue key. Claims its program's pin.

        ``priority`` and ``arrival_time`` are the request's own (vLLM's fields, left unchanged).
        """
        had_pin = False
        if hints is None:
            rank = self.programs.next_rank()
            order = order_key(priority=priority, arrival_time=arrival_time, request_id=request_id)
        else:
            arrival = self.programs.on_arrival(hints.program_id, now, arrival_time=arrival_time)
            rank = arrival.program.rank
            if arrival.tool_duration_s is not None:
                self.durations.observe(arrival.tool_name, arrival.tool_duration_s)
            had_pin = self.pins.claim(hints.program_id, request_id) is not None
            order = order_key(
                priority=priority,
                arrival_time=arrival_time,
                request_id=request_id,
                program_arrival_time=arrival.program.program_arrival_time,
                pinned=had_pin,
            )
        self._requests[request_id] = _Tracked(hints, rank, now, had_pin, order)
        return order

    def admit(self, request_id: str, *, num_prompt_tokens: int) -> list[str]:
        """Admission control of an arrived request: the request ids that may enter the engine's
        queue now (this one, or not yet, and possibly earlier gated ones; in program order).

        Without admission control, or for a request without hints, that is the request itself.
        """
        tracked = self._requests.get(request_id)
        if self.admission is None or tracked is None or tracked.program_id is None:
            return [request_id]
        program_id = tracked.program_id
        program = self.programs.get(program_id)
        if not self.admission.is_active(program_id) and program is not None and program.num_turns > 1:
            self.counters.admission_reentries += 1
        released = self.admission.offer(
            program_id, rank=tracked.rank, request_id=request_id, num_prompt_tokens=num_prompt_tokens
        )
        if request_id not in released:
            self.counters.admission_waits += 1
        return released

    def admission_release(self) -> list[str]:
        """Gated request ids that fit now, in program order (the adapter queues them)."""
        return self.admission.release() if self.admission is not None else []

    def expire_reservations(self, now: float) -> list[Pin]:
        """Drop reservations of programs idle past ``admission_idle_s`` (or forgotten);
        returns their pins, which the adapter releases."""
        if self.admission is None:
            return []
        released: list[Pin] = []
        for program_id in self.admission.active_programs():
            program = self.programs.get(program_id)
            if program is not None and (
                program.num_in_flight > 0 or now - program.last_seen_s < self.config.admission_idle_s
            ):
                continue
            self.admission.finish(program_id)
            self.counters.reservations_expired += 1
            pin = self.pins.pop(program_id)
            if pin is not None:
                self.counters.expiries += 1
                released.append(pin)
        return released + self._yield_reservations(now)

    def _yield_reservations(self, now: float) -> list[Pin]:
        """Under pressure, programs idle in a tool call for ``admission_yield_s`` give up their
        reservations (latest-arrived first) until the gate's first program fits; their pins go too.
        Nobody yields when all the idle programs together would not make room."""
        assert self.admission is not None
        shortfall = self.admission.shortfall()
        if shortfall <= 0:
            return []
        idle = []
        for program_id in self.admission.active_programs():
            program = self.programs.get(program_id)
            if program is not None and program.num_in_flight == 0 and (
                now - program.last_seen_s >= self.config.admission_yield_s
            ):
                idle.append(program)
        yielding: list[str] = []
        for program in sorted(idle, key=lambda p: p.rank, reverse=True):
            if shortfall <= 0:
                break
            shortfall -= self.admission.reservation(program.program_id)
            yielding.append(program.program_id)
        if shortfall > 0:
            return []
        released: list[Pin] = []
        for program_id in yielding:
            self.admission.finish(program_id)
            self.counters.reservations_yielded += 1
            pin = self.pins.pop(program_id)
            if pin is not None:
                released.append(pin)
        return released

    def on_admitted(
        self, request_id: str, *, num_cached_tokens: int, block_size: int, now: float
    ) -> Pin | None:
        """The request got its blocks for the first time; returns the pin to hand off, if any.

        Handing off only now (not at arrival) keeps the prefix safe while the turn waits.
        """
        tracked = self._requests.get(request_id)
        if tracked is None or tracked.admitted:
            return None
        tracked.admitted = True
        if tracked.program_id is None:
            return None
        pin = self.pins.get(tracked.program_id)
        if pin is not None and pin.claimed_by == request_id:
            self.pins.pop(tracked.program_id)
            self.counters.handoffs += 1
            if num_cached_tokens > 0:
                self.counters.pin_hits += 1
                self.counters.tokens_reused += min(num_cached_tokens, pin.num_blocks * block_size)
            return pin
        program = self.programs.get(tracked.program_id)
        if program is not None and program.num_turns > 1 and not tracked.had_pin:
            self.queue_delay.observe(now - tracked.arrival_s)
        return None

    def on_finished(
        self,
        request_id: str,
        *,
        stopped_normally: bool,
        pinnable: bool,
        num_blocks: int,
        num_tokens: int,
        now: float,
    ) -> PinDecision:
        """A request finished; decide whether its blocks are pinned.

        ``stopped_normally``: the turn ended on a stop condition (not aborted or errored).
        ``pinnable``: the adapter can hold the blocks (no KV connector delaying the free).
        """
        tracked = self._requests.pop(request_id, None)
        if tracked is None:
            return PinDecision()
        if not tracked.admitted:
            self.pins.unclaim(request_id)
        hints = tracked.hints
        if hints is None:
            return PinDecision()
        program_id = hints.program_id
        self.programs.on_departure(program_id, now, tool_name=hints.tool_name)
        if self.admission is not None:
            self.admission.drop(request_id)
            self.admission.observe(program_id, num_tokens)
        if hints.is_last_step:
            if self.admission is not None:
                self.admission.finish(program_id)
            program = self.programs.forget(program_id)
            if program is not None and stopped_normally:
                self.eta.observe_program(program.num_turns)
            return self._release_of(program_id)
        if not (stopped_normally and pinnable) or num_blocks <= 0:
            return PinDecision()
        if self.admission is not None:
            # The program's working set is reserved: its blocks stay for as long as the
            # reservation does (released earlier only under memory pressure).
            if not self.admission.is_active(program_id):
                return self._release_of(program_id)
            ttl = self.config.admission_idle_s
        else:
            ttl = self._ttl_s(hints, num_tokens)
        return self._pin(program_id, request_id, tracked.rank, num_blocks, num_tokens, ttl, now)

    def _ttl_s(self, hints: ProgramHints, num_tokens: int) -> float:
        return self.policy.ttl_s(
            TTLInputs(
                tool_name=hints.tool_name,
                num_context_tokens=num_tokens,
                queue_delay_s=self.queue_delay.mean_s,
                eta=self.eta.eta,
                ttl_hint_s=hints.ttl_hint_s,
            )
        )

    def _pin(
        self, program_id: str, request_id: str, rank: int, num_blocks: int, num_tokens: int, ttl: float,
        now: float,
    ) -> PinDecision:
        if ttl <= 0.0:
            return self._release_of(program_id)
        previous = self.pins.get(program_id)
        held_elsewhere = self.pins.num_blocks - (previous.num_blocks if previous else 0)
        if held_elsewhere + num_blocks > self.max_pinned_blocks:
            self.counters.pins_refused += 1
            return self._release_of(program_id)
        pin = Pin(
            program_id=program_id,
            request_id=request_id,
            program_rank=rank,
            num_blocks=num_blocks,
            num_tokens=num_tokens,
            pinned_at_s=now,
            expires_at_s=now + ttl,
        )
        superseded = self.pins.add(pin)
        self.counters.pins_created += 1
        return PinDecision(pin=pin, release=[superseded] if superseded else [])

    def _release_of(self, program_id: str) -> PinDecision:
        old = self.pins.pop(program_id)
        return PinDecision(release=[old] if old else [])

    # ------------------------------------------------------------------ releases
    def expire(self, now: float) -> list[Pin]:
        """Remove and return pins whose TTL passed and whose program is not waiting."""
        expired = self.pins.expired(now)
        for pin in expired:
            self.pins.pop(pin.program_id)
        self.counters.expiries += len(expired)
        return expired

    def pressure_victims(self, request_id: str, *, allow_any: bool) -> list[Pin]:
        """Pins that may be released so ``request_id`` can allocate, in release order.

        Without ``allow_any`` only programs that arrived after the requester's program are
        candidates (program-level FCFS: a newer program does not break an older one's pin).
        The requester's own program's pin is never a candidate: it is the hit being used.
        """
        tracked = self._requests.get(request_id)
        exclude = tracked.program_id if tracked else None
        min_rank = None if allow_any or tracked is None else tracked.rank
        return self.pins.victims(exclude_program=exclude, min_rank=min_rank)

    def force_release(self, program_id: str) -> Pin | None:
        """Release a pin because of memory pressure."""
        pin = self.pins.pop(program_id)
        if pin is not None:
            self.counters.forced_releases += 1
        return pin

    def release_all(self) -> list[Pin]:
        """Remove every pin and every admission reservation (prefix-cache reset, shutdown).

        Admitted programs then re-enter through the gate in program order, as after an idle
        expiry; requests waiting at the gate keep their places.
        """
        pins = list(self.pins)
        for pin in pins:
            self.pins.pop(pin.program_id)
        if self.admission is not None:
            self.admission.drop_reservations()
        return pins

    def collect_garbage(self, now: float) -> list[str]:
        """Forget idle programs, at most once per ``gc_interval_s``."""
        if self._last_gc_s is not None and now - self._last_gc_s < self.config.gc_interval_s:
            return []
        self._last_gc_s = now
        keep = {pin.program_id for pin in self.pins}
        return self.programs.collect_idle(now, keep=keep)

    # ------------------------------------------------------------------ views
    def order_of(self, request_id: str) -> OrderKey | None:
        """The waiting-queue key given at arrival; None for a request that did not arrive."""
        tracked = self._requests.get(request_id)
        return tracked.order if tracked else None

    def is_tracked(self, request_id: str) -> bool:
        """Whether the request arrived through :meth:`on_arrival` and has not finished."""
        return request_id in self._requests
