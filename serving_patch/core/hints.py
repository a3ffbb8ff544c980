"""The wire contract for program hints: the one definition of what a client tells the plugin.

A client (the QuotaFlow runtime, the benches, any OpenAI client) sends the hints of a request as
``vllm_xargs`` in the request body; vLLM copies them into ``SamplingParams.extra_args``, where
the scheduler plugin reads them. Both ends use :class:`ProgramHints`: ``to_xargs()`` writes,
``ProgramHints.parse()`` reads. This module imports nothing but the standard library, so the
runtime (``orchestrator.types`` re-exports the class), the plugin and the benches share it.

Wire format:

=================  ==========  ==================================================================
key                type        meaning
=================  ==========  ==================================================================
``program_id``     str         stable id of the agent program (run); without it the request
                               carries no hints and is scheduled exactly as stock vLLM does
``turn``           int         index of the agent turn: the number of tool waits of the program
                               before this request (0 for the first turn). Chat calls between
                               two tool waits share a turn, and a resumed program continues
                               its count (clients count from durable state, not per process).
                               Informational: the plugin does not schedule by it
``is_last_step``   0/1         the program ends after this request: its KV cache is never pinned
``tool_name``      str         the tool the program will wait on after this request; keys the
                               plugin's tool-duration model. Absent when none follows
``ttl_hint_s``     float       the client's pin TTL in seconds, overriding the TTL rule; the
                               plugin clamps it to its ``max_ttl_s``; 0 asks for no pin
=================  ==========  ==================================================================

Booleans travel as 0/1 because vLLM turns JSON ``true`` into ``1``; :meth:`ProgramHints.parse`
accepts either, numbers sent as strings, and ignores keys it does not know.

The format evolves by adding keys only; a key whose meaning changes gets a new name. With
unknown keys ignored and missing keys defaulted, any client and plugin pair interoperates, so
the xargs carry no version number (they share one flat namespace with other vLLM plugins).

``priority`` is not in ``vllm_xargs``. It is vLLM's own request field (``priority`` in the
OpenAI body, ``Request.priority`` in the engine), which stock vLLM honours under
``--scheduling-policy priority`` and which other readers (KV connectors' priority limits) see.
The plugin orders waiting requests by ``(priority, pinned program first, program arrival)`` and
never rewrites the field; so a client sets ``ProgramHints.priority`` and sends it as the body's
``priority`` (lower is served first), and the plugin reads it back from the request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "IS_LAST_STEP_KEY",
    "PROGRAM_ID_KEY",
    "TOOL_NAME_KEY",
    "TTL_HINT_KEY",
    "TURN_KEY",
    "ProgramHints",
]

PROGRAM_ID_KEY = "program_id"
TURN_KEY = "turn"
IS_LAST_STEP_KEY = "is_last_step"
TOOL_NAME_KEY = "tool_name"
TTL_HINT_KEY = "ttl_hint_s"

_TRUE_STRINGS = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True)
class ProgramHints:
    """What the serving layer should know about the agent program a request belongs to."""

    program_id: str
    """Stable id of the program (agent run)."""
    turn: int = 0
    """Index of the agent turn: tool waits of the program before this request (0 first)."""
    is_last_step: bool = False
    """The program ends after this request: its KV cache is never pinned."""
    tool_name: str | None = None
    """The tool the program will wait on after this request (None: none, or unknown)."""
    ttl_hint_s: float | None = None
    """Pin TTL in seconds chosen by the client (clamped by the plugin's maximum; 0: no pin)."""
    priority: int = 0
    """vLLM request priority (lower first); sent as the body's ``priority``, not in xargs."""

    def to_xargs(self) -> dict[str, str | int | float]:
        """The ``vllm_xargs`` of a request carrying these hints."""
        out: dict[str, str | int | float] = {
            PROGRAM_ID_KEY: self.program_id,
            TURN_KEY: self.turn,
            IS_LAST_STEP_KEY: int(self.is_last_step),
        }
        if self.tool_name:
            out[TOOL_NAME_KEY] = self.tool_name
        if self.ttl_hint_s is not None:
            out[TTL_HINT_KEY] = float(self.ttl_hint_s)
        return out

    @classmethod
    def parse(cls, extra_args: Mapping[str, Any] | None, *, priority: int = 0) -> ProgramHints | None:
        """Read hints from ``extra_args``; None when the request names no program.

        ``priority`` is the request's own vLLM priority (``Request.priority``). Values of the
        wrong shape fall back to the field's default instead of failing the request.
        """
        if not extra_args:
            return None
        program_id = _as_str(extra_args.get(PROGRAM_ID_KEY))
        if program_id is None:
            return None
        return cls(
            program_id=program_id,
            turn=_as_int(extra_args.get(TURN_KEY)) or 0,
            is_last_step=_as_bool(extra_args.get(IS_LAST_STEP_KEY, False)),
            tool_name=_as_str(extra_args.get(TOOL_NAME_KEY)),
            ttl_hint_s=_as_seconds(extra_args.get(TTL_HINT_KEY)),
            priority=priority,
        )


def _as_str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_STRINGS
    return bool(value)


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _as_seconds(value: Any) -> float | None:
    out = _as_float(value)
    return out if out is not None and out >= 0.0 else None


def _as_int(value: Any) -> int | None:
    out = _as_float(value)
    return int(out) if out is not None and out == int(out) else None
