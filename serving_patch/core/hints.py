"""Request hints sent by the client as ``vllm_xargs`` (``SamplingParams.extra_args``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: ``extra_args`` keys the plugin reads; the orchestrator's ``ProgramHints.to_xargs`` writes them.
PROGRAM_ID_KEY = "program_id"
IS_LAST_STEP_KEY = "is_last_step"
TOOL_NAME_KEY = "tool_name"
TTL_HINT_KEY = "ttl_hint_s"
TURN_KEY = "turn"

_TRUE_STRINGS = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True)
class RequestHints:
    """What one request says about the agent program it belongs to."""

    program_id: str | None = None
    """Stable id of the program (agent run); None for requests outside any program."""
    is_last_step: bool = False
    """The program ends after this turn: its KV cache is never pinned."""
    tool_name: str | None = None
    """The tool the program waits on after this turn; keys the duration model."""
    ttl_hint_s: float | None = None
    """Client override of the TTL in seconds (clamped by the policy's maximum)."""
    turn: int | None = None
    """Turn index as the client counts it (informational)."""


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_STRINGS
    return bool(value)


def _as_float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) and out >= 0.0 else None


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_hints(extra_args: Mapping[str, Any] | None) -> RequestHints:
    """Read hints from ``extra_args``, tolerating the shapes JSON clients send (0/1, "true")."""
    if not extra_args:
        return RequestHints()
    program_id = extra_args.get(PROGRAM_ID_KEY)
    tool_name = extra_args.get(TOOL_NAME_KEY)
    return RequestHints(
        program_id=str(program_id) if program_id not in (None, "") else None,
        is_last_step=_as_bool(extra_args.get(IS_LAST_STEP_KEY, False)),
        tool_name=str(tool_name) if tool_name not in (None, "") else None,
        ttl_hint_s=_as_float(extra_args.get(TTL_HINT_KEY)),
        turn=_as_int(extra_args.get(TURN_KEY)),
    )
