"""Pure policy core of the Continuum plugin: no vLLM, no torch, no I/O, an injected clock.

Every decision the scheduler adapter makes is taken here from plain values:

- :mod:`.hints`      the wire contract for program hints (``vllm_xargs``), shared with clients
- :mod:`.programs`   program table: first arrival, rank, turns, last departure, idle GC
- :mod:`.pins`       pin table: expiry, claim/hand-off, victim choice under memory pressure
- :mod:`.admission`  program-level admission: working-set reservations, a program-ordered gate
- :mod:`.durations`  tool-duration model: per-tool empirical samples, global fallback, bounded
- :mod:`.stats`      online queueing-delay and eta (turn-count predictability) estimators
- :mod:`.ttl`        TTL policies: the paper's utility rule and the fixed-threshold rule
- :mod:`.ordering`   the waiting-queue key (user priority, pinned first, program arrival)
- :mod:`.controller` :class:`ContinuumCore`, the facade the adapter calls
"""

from __future__ import annotations

from serving_patch.core.admission import AdmissionControl
from serving_patch.core.controller import ContinuumCore, PinDecision, PluginCounters
from serving_patch.core.durations import ToolDurationModel
from serving_patch.core.hints import ProgramHints
from serving_patch.core.ordering import OrderKey, order_key
from serving_patch.core.pins import Pin, PinTable
from serving_patch.core.programs import ProgramState, ProgramTable
from serving_patch.core.ttl import (
    FixedTTLPolicy,
    TTLInputs,
    TTLPolicy,
    UtilityTTLPolicy,
    make_ttl_policy,
)

__all__ = [
    "AdmissionControl",
    "ContinuumCore",
    "FixedTTLPolicy",
    "OrderKey",
    "Pin",
    "PinDecision",
    "PinTable",
    "PluginCounters",
    "ProgramHints",
    "ProgramState",
    "ProgramTable",
    "TTLInputs",
    "TTLPolicy",
    "ToolDurationModel",
    "UtilityTTLPolicy",
    "make_ttl_policy",
    "order_key",
]
