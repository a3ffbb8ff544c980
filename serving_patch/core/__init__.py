"""Pure policy core of the Continuum plugin: no vLLM, no torch, no I/O, an injected clock.

Every decision the scheduler adapter makes is taken here from plain values:

- :mod:`.hints`      request hints (program id, last step, tool, TTL hint) from ``extra_args``
- :mod:`.programs`   program table: first arrival, rank, turns, last departure, idle GC
- :mod:`.pins`       pin table: expiry, claim/hand-off, victim choice under memory pressure
- :mod:`.durations`  tool-duration model: per-tool empirical samples, global fallback, bounded
- :mod:`.stats`      online queueing-delay and eta (turn-count predictability) estimators
- :mod:`.ttl`        TTL policies: the paper's utility rule and the fixed-threshold rule
- :mod:`.ordering`   the integer priority key handed to vLLM's priority queue
- :mod:`.controller` :class:`ContinuumCore`, the facade the adapter calls
"""

from __future__ import annotations

from serving_patch.core.controller import ContinuumCore, PinDecision, PluginCounters
from serving_patch.core.durations import ToolDurationModel
from serving_patch.core.hints import RequestHints, parse_hints
from serving_patch.core.ordering import priority_key
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
    "ContinuumCore",
    "FixedTTLPolicy",
    "Pin",
    "PinDecision",
    "PinTable",
    "PluginCounters",
    "ProgramState",
    "ProgramTable",
    "RequestHints",
    "TTLInputs",
    "TTLPolicy",
    "ToolDurationModel",
    "UtilityTTLPolicy",
    "make_ttl_policy",
    "parse_hints",
    "priority_key",
]
