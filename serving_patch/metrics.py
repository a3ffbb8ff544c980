"""Prometheus metrics of the Continuum plugin, defined once.

The scheduler lives in vLLM's engine-core process, while ``/metrics`` is served by the API
server process. The side channel is prometheus_client's multiprocess mode, which vLLM's API
server already uses whenever ``PROMETHEUS_MULTIPROC_DIR`` is set: the launcher sets it to a
fresh directory, every process writes its samples there, and the API server's
``MultiProcessCollector`` merges them. Gauges use ``livesum`` (summed over live engine cores).

Exposed names (counters get ``_total`` from prometheus_client):

- ``quotaflow_continuum_pins_active``             pins held now
- ``quotaflow_continuum_pinned_blocks``           KV blocks held by pins now
- ``quotaflow_continuum_pins_created_total``      turns pinned
- ``quotaflow_continuum_pin_hits_total``          next turns admitted with a hit on their pin
- ``quotaflow_continuum_pin_handoffs_total``      pins handed to the admitted next turn
- ``quotaflow_continuum_pin_expiries_total``      pins released at TTL expiry
- ``quotaflow_continuum_pin_forced_releases_total`` pins released under memory pressure
- ``quotaflow_continuum_pins_refused_total``      pins refused by the pinned-share cap
- ``quotaflow_continuum_reused_tokens_total``     prompt tokens reused thanks to a pin
- ``quotaflow_continuum_admission_waits_total``   turns held at the admission gate
- ``quotaflow_continuum_admission_reentries_total`` programs that came back through the gate
- ``quotaflow_continuum_reservations_expired_total`` reservations dropped after idling
- ``quotaflow_continuum_reservations_yielded_total`` reservations given up to programs at the gate
- ``quotaflow_continuum_admission_waiting``       requests at the admission gate now
- ``quotaflow_continuum_reserved_blocks``         KV blocks reserved by admitted programs now
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from serving_patch.core.controller import PluginCounters

PREFIX = "quotaflow_continuum_"

#: PluginCounters field -> (metric name without _total, help).
COUNTERS: dict[str, tuple[str, str]] = {
    "pins_created": ("pins_created", "Finished turns whose KV cache was pinned for their program."),
    "pin_hits": ("pin_hits", "Next turns admitted with a prefix hit on their program's pin."),
    "handoffs": ("pin_handoffs", "Pins handed off to the program's admitted next turn."),
    "expiries": ("pin_expiries", "Pins released because their TTL passed."),
    "forced_releases": ("pin_forced_releases", "Pins released early under KV memory pressure."),
    "pins_refused": ("pins_refused", "Pins refused because pins held their maximum KV share."),
    "tokens_reused": ("reused_tokens", "Prompt tokens served from a pinned prefix, not prefilled."),
    "admission_waits": ("admission_waits", "Turns held at the admission gate (working sets full)."),
    "admission_reentries": ("admission_reentries", "Programs that lost their reservation and came back."),
    "reservations_expired": ("reservations_expired", "Reservations dropped after their program idled."),
    "reservations_yielded": (
        "reservations_yielded", "Reservations of programs idle in a tool call given up to programs at the gate."
    ),
}

_metrics: dict[str, Any] | None = None


def _process_metrics() -> dict[str, Any]:
    """The metric objects of this process, created on first use (one registration per process)."""
    global _metrics
    if _metrics is None:
        from prometheus_client import Counter, Gauge

        created: dict[str, Any] = {
            field: Counter(PREFIX + name, help_text) for field, (name, help_text) in COUNTERS.items()
        }
        created["pins_active"] = Gauge(
            PREFIX + "pins_active", "Pins held now.", multiprocess_mode="livesum"
        )
        created["pinned_blocks"] = Gauge(
            PREFIX + "pinned_blocks", "KV blocks held by pins now.", multiprocess_mode="livesum"
        )
        created["admission_waiting"] = Gauge(
            PREFIX + "admission_waiting", "Requests held at the admission gate now.", multiprocess_mode="livesum"
        )
        created["reserved_blocks"] = Gauge(
            PREFIX + "reserved_blocks", "KV blocks reserved by admitted programs now.", multiprocess_mode="livesum"
        )
        _metrics = created
    return _metrics


class MetricsSink:
    """Pushes one scheduler's counters to the process's Prometheus metrics as deltas."""

    def __init__(self) -> None:
        self._metrics = _process_metrics()
        self._last = asdict(PluginCounters())

    def sync(
        self, counters: PluginCounters, *, num_pins: int, num_pinned_blocks: int, num_waiting: int = 0,
        num_reserved_blocks: int = 0,
    ) -> None:
        """Add what changed since the previous call and set the gauges."""
        now = asdict(counters)
        for field, value in now.items():
            delta = value - self._last[field]
            if delta > 0:
                self._metrics[field].inc(delta)
        self._last = now
        self._metrics["pins_active"].set(num_pins)
        self._metrics["pinned_blocks"].set(num_pinned_blocks)
        self._metrics["admission_waiting"].set(num_waiting)
        self._metrics["reserved_blocks"].set(num_reserved_blocks)
