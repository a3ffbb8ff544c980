"""Continuum as a vLLM 0.26 scheduler plugin: a thin mixin over ``Scheduler``/``AsyncScheduler``.

Load it with::

    --scheduler-cls serving_patch.vllm_adapter.ContinuumAsyncScheduler --scheduling-policy priority

(``ContinuumScheduler`` with ``--no-async-scheduling``). Hints arrive as ``vllm_xargs``
(the contract in :mod:`serving_patch.core.hints`). Every decision is taken by
:class:`serving_patch.core.ContinuumCore`; this module only translates vLLM events:

- ``add_request``: record the arrival; the core returns the request's waiting-queue key.
- waiting queues (priority policy): :class:`ProgramOrderQueue` replaces vLLM's heap and orders
  by the core's key (:mod:`serving_patch.core.ordering`). ``Request.priority`` is never
  rewritten, and requests without hints compare exactly as in stock vLLM. Under memory
  pressure vLLM still preempts the running request with the largest ``(priority,
  arrival_time)``, as stock does.
- ``_free_request``/``_free_blocks``: a normally finished, non-last turn of a known program
  keeps its blocks (the request stays registered in the KV manager, with ``ref_cnt`` held).
- ``schedule``: expire pins first; after vLLM admitted new turns, hand their program's pin off.
- ``allocate_slots`` (wrapped on the instance): when an allocation fails, release pins of
  programs newer than the requester's (latest arrival first) and retry, before vLLM preempts or
  gives up; when nothing else runs, any pin may go, so a pin never deadlocks the engine.
- ``reset_prefix_cache``/``shutdown``: release every pin first.
- admission control (``QUOTAFLOW_CONTINUUM_ADMISSION=1``): ``add_request`` holds a turn whose
  program is not admitted at a gate outside vLLM's queues (the core decides, in program order,
  by the admitted programs' working sets); ``schedule`` first drops reservations of programs
  that idled too long and queues what the gate admits; ``finish_requests`` takes aborted gated
  requests out; gated requests count as unfinished, so the engine keeps stepping.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from serving_patch.compat import require_supported_vllm
from serving_patch.config import ContinuumConfig
from serving_patch.core import ContinuumCore, OrderKey, Pin, ProgramHints, order_key

require_supported_vllm()

from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.interface import PauseState
from vllm.v1.core.sched.output import SchedulerOutput
from vllm.v1.core.sched.request_queue import RequestQueue, SchedulingPolicy
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import Request, RequestStatus

logger = logging.getLogger(__name__)

__all__ = ["ContinuumAsyncScheduler", "ContinuumMixin", "ContinuumScheduler", "ProgramOrderQueue"]


class ProgramOrderQueue(RequestQueue):
    """vLLM's priority heap, ordered by a key the plugin owns instead of ``Request.__lt__``.

    ``key_of`` gives a request's key when it enters (a preempted request re-enters with the
    key it had). Entries carry a counter after the key, so two requests never compare. As in
    vLLM's heap, "prepend" means "add": the key alone decides the position.
    """

    def __init__(self, key_of: Callable[[Request], OrderKey]) -> None:
        self._key_of = key_of
        self._entries: list[tuple[OrderKey, int, Request]] = []
        self._num_added = 0

    def add_request(self, request: Request) -> None:
        self._num_added += 1
        heapq.heappush(self._entries, (self._key_of(request), self._num_added, request))

    def pop_request(self) -> Request:
        if not self._entries:
            raise IndexError("pop from empty heap")
        return heapq.heappop(self._entries)[2]

    def peek_request(self) -> Request:
        if not self._entries:
            raise IndexError("peek from empty heap")
        return self._entries[0][2]

    def prepend_request(self, request: Request) -> None:
        self.add_request(request)

    def prepend_requests(self, requests: RequestQueue) -> None:
        for request in requests:
            self.add_request(request)

    def peek_key(self) -> OrderKey:
        """The key of the request :meth:`peek_request` returns."""
        if not self._entries:
            raise IndexError("peek from empty heap")
        return self._entries[0][0]

    def remove_request(self, request: Request) -> None:
        for index, entry in enumerate(self._entries):
            if entry[2] is request:
                self._entries[index] = self._entries[-1]
                self._entries.pop()
                heapq.heapify(self._entries)
                return
        raise ValueError("request not in queue")

    def remove_requests(self, requests: Iterable[Request]) -> None:
        removed = {id(request) for request in requests}
        self._entries = [entry for entry in self._entries if id(entry[2]) not in removed]
        heapq.heapify(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Request]:
        entries = self._entries[:]
        while entries:
            yield heapq.heappop(entries)[2]


class ContinuumMixin:
    """Program-level FCFS and KV-cache TTL pins on top of a vLLM scheduler class."""

    # Set by the vLLM Scheduler base class.
    requests: dict[str, Request]
    running: list[Request]
    waiting: RequestQueue
    skipped_waiting: RequestQueue
    kv_cache_manager: Any
    block_size: int
    policy: SchedulingPolicy
    connector: Any
    defer_block_free: bool

    continuum: ContinuumCore
    """The pure policy core."""
    continuum_clock: Callable[[], float]
    """Clock of every plugin decision (seconds); tests replace it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        config = ContinuumConfig.from_env()
        num_blocks = int(self.kv_cache_manager.block_pool.num_gpu_blocks)
        self.continuum = ContinuumCore(config, num_kv_blocks=num_blocks, block_size=self.block_size)
        self.continuum_clock = time.monotonic
        self._pinned_requests: dict[str, Request] = {}
        self._gated: dict[str, Request] = {}
        self._pins_to_take: dict[str, Pin] = {}
        self._metrics_sink = None
        if config.metrics:
            from serving_patch.metrics import MetricsSink

            self._metrics_sink = MetricsSink()
        if self.policy == SchedulingPolicy.PRIORITY:
            self.waiting = ProgramOrderQueue(self._order_of)
            self.skipped_waiting = ProgramOrderQueue(self._order_of)
        else:
            logger.warning(
                "Continuum plugin without --scheduling-policy priority: pins work, but the "
                "program-level order (pinned programs first, then program arrival) is not applied"
            )
        self._wrap_allocate_slots()
        logger.info(
            "Continuum plugin active: ttl_policy=%s, %d KV blocks, pins may hold %d, admission %s",
            config.ttl_policy,
            num_blocks,
            self.continuum.max_pinned_blocks,
            f"on ({self.continuum.admission.budget_blocks} blocks)" if self.continuum.admission else "off",
        )

    # ------------------------------------------------------------------ vLLM hooks
    def add_request(self, request: Request) -> None:
        request_id = request.request_id
        if request_id in self.requests or request_id in self._gated or request.sampling_params is None:
            super().add_request(request)  # type: ignore[misc]
            return
        hints = ProgramHints.parse(request.sampling_params.extra_args, priority=request.priority)
        self.continuum.on_arrival(
            request_id,
            hints,
            priority=request.priority,
            arrival_time=request.arrival_time,
            now=self.continuum_clock(),
        )
        if self.continuum.admission is None or hints is None:
            super().add_request(request)  # type: ignore[misc]
            return
        self._gated[request_id] = request
        self._queue_admitted(self.continuum.admit(request_id, num_prompt_tokens=request.num_prompt_tokens))

    def _queue_admitted(self, request_ids: Iterable[str]) -> None:
        for request_id in request_ids:
            request = self._gated.pop(request_id, None)
            if request is not None:
                super().add_request(request)  # type: ignore[misc]

    def finish_requests(self, request_ids: Any, finished_status: RequestStatus) -> list[Request]:
        gated: list[Request] = []
        if self._gated:
            if request_ids is None:
                ids = list(self._gated)
            else:
                ids = [request_ids] if isinstance(request_ids, str) else list(request_ids)
                request_ids = [rid for rid in ids if rid not in self._gated]
            now = self.continuum_clock()
            for rid in ids:
                request = self._gated.pop(rid, None)
                if request is None:
                    continue
                request.status = finished_status
                self.continuum.on_finished(
                    rid, stopped_normally=False, pinnable=False, num_blocks=0,
                    num_tokens=request.num_prompt_tokens, now=now,
                )
                gated.append(request)
        finished: list[Request] = super().finish_requests(request_ids, finished_status)  # type: ignore[misc]
        return gated + list(finished or [])

    def get_num_unfinished_requests(self) -> int:
        num: int = super().get_num_unfinished_requests()  # type: ignore[misc]
        if self._gated and getattr(self, "_pause_state", PauseState.UNPAUSED) == PauseState.UNPAUSED:
            num += len(self._gated)
        return num

    @property
    def num_gated_requests(self) -> int:
        """Requests held at the admission gate."""
        return len(self._gated)

    def _select_waiting_queue_for_scheduling(self) -> RequestQueue | None:
        waiting, skipped = self.waiting, self.skipped_waiting
        # vLLM compares the two heads with Request.__lt__; compare the plugin's keys instead.
        if isinstance(waiting, ProgramOrderQueue) and isinstance(skipped, ProgramOrderQueue) and (
            waiting and skipped
        ):
            return waiting if waiting.peek_key() < skipped.peek_key() else skipped
        return super()._select_waiting_queue_for_scheduling()  # type: ignore[misc,no-any-return]

    def schedule(self, *args: Any, **kwargs: Any) -> SchedulerOutput:
        now = self.continuum_clock()
        for pin in self.continuum.expire(now):
            self._release_pin(pin)
        self.continuum.collect_garbage(now)
        if self.continuum.admission is not None:
            for pin in self.continuum.expire_reservations(now):
                self._release_pin(pin)
            self._queue_admitted(self.continuum.admission_release())
        output: SchedulerOutput = super().schedule(*args, **kwargs)  # type: ignore[misc]
        for new_request in output.scheduled_new_reqs:
            request_id = new_request.req_id
            request = self.requests.get(request_id)
            if request is None:
                continue
            num_cached = request.num_computed_tokens - output.num_scheduled_tokens.get(request_id, 0)
            handed_off = self.continuum.on_admitted(
                request_id,
                num_cached_tokens=max(0, num_cached),
                block_size=self.block_size,
                now=now,
            )
            if handed_off is not None:
                # The new turn now holds its own references on the shared prefix blocks.
                self._release_pin(handed_off)
        self._sync_metrics()
        return output

    def _free_request(self, request: Request, delay_free_blocks: bool = False) -> Any:
        config = self.continuum.config
        stopped = request.status == RequestStatus.FINISHED_STOPPED or (
            config.pin_length_capped and request.status == RequestStatus.FINISHED_LENGTH_CAPPED
        )
        pinnable = self._pinnable(delay_free_blocks)
        num_blocks = 0
        if stopped and pinnable:
            block_ids = self.kv_cache_manager.get_block_ids(request.request_id)
            num_blocks = len(block_ids[0]) if block_ids else 0
        decision = self.continuum.on_finished(
            request.request_id,
            stopped_normally=stopped,
            pinnable=pinnable,
            num_blocks=num_blocks,
            num_tokens=request.num_computed_tokens,
            now=self.continuum_clock(),
        )
        for old in decision.release:
            self._release_pin(old)
        if decision.pin is not None:
            self._pins_to_take[request.request_id] = decision.pin
        return super()._free_request(request, delay_free_blocks)  # type: ignore[misc]

    def _pinnable(self, delay_free_blocks: bool) -> bool:
        """Whether a finished turn's blocks may be held. A KV connector, or a free it defers, owns
        the block lifetime: no pin. Except vLLM's native CPU offloading, on request
        (``pin_with_offloading``): it defers no free itself, fences a block's pending stores when
        the block is reused, and the free vLLM defers under async scheduling with it (a step in
        flight may still write the blocks) is what a pin's release goes through
        (``_free_request_blocks``, fenced by the request's last scheduled step)."""
        if delay_free_blocks:
            return False
        if self.connector is None:
            return not self.defer_block_free
        return self.continuum.config.pin_with_offloading and self._pins_beside(self.connector)

    def _pins_beside(self, connector: Any) -> bool:
        """Whether pins may stand beside this connector: vLLM's native CPU offloading exactly (a
        subclass may own block lifetimes its own way). The CPU simulator's tier overrides it."""
        from vllm.distributed.kv_transfer.kv_connector.v1.offloading_connector import OffloadingConnector

        return type(connector) is OffloadingConnector

    def _free_blocks(self, request: Request) -> None:
        pin = self._pins_to_take.pop(request.request_id, None)
        if pin is None:
            super()._free_blocks(request)  # type: ignore[misc]
            return
        # Keep the blocks: the request stays known to the KV manager (ref_cnt held), so
        # the blocks never reach the free queue and the next turn hits them.
        self._pinned_requests[request.request_id] = request
        del self.requests[request.request_id]

    def reset_prefix_cache(self, *args: Any, **kwargs: Any) -> bool:
        self.release_all_pins()
        return bool(super().reset_prefix_cache(*args, **kwargs))  # type: ignore[misc]

    def shutdown(self) -> None:
        self.release_all_pins()
        self._gated.clear()
        self._sync_metrics()
        super().shutdown()  # type: ignore[misc]

    def _order_of(self, request: Request) -> OrderKey:
        # Requests that did not arrive through add_request (none in vLLM's own paths) get the
        # key of a request without hints: vLLM's own order.
        return self.continuum.order_of(request.request_id) or order_key(
            priority=request.priority,
            arrival_time=request.arrival_time,
            request_id=request.request_id,
        )

    # ------------------------------------------------------------------ pins
    def release_all_pins(self) -> int:
        """Release every pin now; returns how many were released."""
        pins = self.continuum.release_all()
        for pin in pins:
            self._release_pin(pin)
        return len(pins)

    def _release_pin(self, pin: Pin) -> None:
        request = self._pinned_requests.pop(pin.request_id, None)
        if request is not None:
            self._free_request_blocks(request)  # type: ignore[attr-defined]

    def _wrap_allocate_slots(self) -> None:
        allocate = self.kv_cache_manager.allocate_slots

        def allocate_slots(request: Request, *args: Any, **kwargs: Any) -> Any:
            blocks = allocate(request, *args, **kwargs)
            while blocks is None:
                victim = self._pressure_victim(request)
                if victim is None:
                    return None
                self._release_pin(victim)
                blocks = allocate(request, *args, **kwargs)
            return blocks

        self.kv_cache_manager.allocate_slots = allocate_slots

    def _pressure_victim(self, request: Request) -> Pin | None:
        # Program-level FCFS: a request may break the pins of programs that arrived after its
        # own; older programs' pins outrank it (vLLM then preempts the youngest running
        # request instead). When nothing else runs, waiting for a TTL would only idle the
        # engine, so any pin may go: no deadlock, no failed allocation because of a pin.
        others_running = any(r is not request for r in self.running)
        victims = self.continuum.pressure_victims(request.request_id, allow_any=not others_running)
        if not victims:
            return None
        return self.continuum.force_release(victims[0].program_id)

    def _sync_metrics(self) -> None:
        if self._metrics_sink is not None:
            self._metrics_sink.sync(
                self.continuum.counters,
                num_pins=len(self.continuum.pins),
                num_pinned_blocks=self.continuum.pins.num_blocks,
                num_waiting=len(self._gated),
                num_reserved_blocks=self.continuum.admission.reserved_blocks if self.continuum.admission else 0,
            )

    @property
    def num_pinned_requests(self) -> int:
        """Finished turns whose blocks are held."""
        return len(self._pinned_requests)


class ContinuumScheduler(ContinuumMixin, Scheduler):
    """Continuum over vLLM's synchronous scheduler (``--no-async-scheduling``)."""


class ContinuumAsyncScheduler(ContinuumMixin, AsyncScheduler):
    """Continuum over vLLM's asynchronous scheduler (vLLM's default)."""
