"""Tool-duration model: empirical samples per tool, a global pool, bounded memory."""

from __future__ import annotations

from collections import OrderedDict, deque

GLOBAL = "__all__"
"""Name of the pooled distribution over every tool."""
UNKNOWN_TOOL = "__unknown__"
"""Key for durations whose turn named no tool."""


class ToolDurationModel:
    """Recent tool durations, per tool and pooled.

    Lookup follows the paper's cold start: the tool's own samples once it has more than
    ``min_samples``; else the pooled samples once they exceed ``min_samples``; else None (the
    policy then uses its default TTL). Each tool keeps its last ``max_samples_per_tool``
    durations; at most ``max_tools`` tools are tracked (least recently observed dropped).
    """

    def __init__(self, *, min_samples: int, max_samples_per_tool: int, max_tools: int) -> None:
        self.min_samples = min_samples
        self._max_samples = max_samples_per_tool
        self._max_tools = max_tools
        self._per_tool: OrderedDict[str, deque[float]] = OrderedDict()
        self._pooled: deque[float] = deque(maxlen=max_samples_per_tool)

    @property
    def num_tools(self) -> int:
        """Tools currently tracked."""
        return len(self._per_tool)

    def num_samples(self, tool_name: str | None = None) -> int:
        """Samples kept for ``tool_name`` (pooled when None)."""
        if tool_name is None:
            return len(self._pooled)
        return len(self._per_tool.get(tool_name, ()))

    def observe(self, tool_name: str | None, duration_s: float) -> None:
        """Record one duration (seconds) for ``tool_name``."""
        key = tool_name or UNKNOWN_TOOL
        samples = self._per_tool.get(key)
        if samples is None:
            samples = deque(maxlen=self._max_samples)
            self._per_tool[key] = samples
            while len(self._per_tool) > self._max_tools:
                self._per_tool.popitem(last=False)
        self._per_tool.move_to_end(key)
        samples.append(duration_s)
        self._pooled.append(duration_s)

    def samples_for(self, tool_name: str | None) -> tuple[str, list[float]] | None:
        """(source, sorted samples) for the tool, the pooled fallback, or None on cold start."""
        own = self._per_tool.get(tool_name or UNKNOWN_TOOL)
        if own is not None and len(own) > self.min_samples:
            return tool_name or UNKNOWN_TOOL, sorted(own)
        if len(self._pooled) > self.min_samples:
            return GLOBAL, sorted(self._pooled)
        return None

    def mean_for(self, tool_name: str | None) -> float | None:
        """Mean of the tool's own samples (any count), or None if never seen."""
        own = self._per_tool.get(tool_name or UNKNOWN_TOOL)
        if not own:
            return None
        return sum(own) / len(own)
