"""Online estimators the utility TTL needs: queueing delay T and turn predictability eta."""

from __future__ import annotations

import math
from collections import deque


class QueueDelayWindow:
    """Sliding-window mean queueing delay of turns whose program had no pin (cache evicted)."""

    def __init__(self, *, window: int) -> None:
        self._delays: deque[float] = deque(maxlen=window)

    def observe(self, delay_s: float) -> None:
        """Record one turn's wait between arrival and admission."""
        self._delays.append(max(0.0, delay_s))

    @property
    def mean_s(self) -> float:
        """Mean delay; 0 before any sample (the paper initialises T to 0)."""
        return sum(self._delays) / len(self._delays) if self._delays else 0.0


class EtaEstimator:
    """eta = -Corr(k, N - k) over turns of finished programs (k served turns, N total).

    1 when every program has the same number of turns (turns done predicts turns left),
    about 0 for geometric turn counts. ``default`` until ``min_programs`` programs finished.
    """

    def __init__(self, *, window: int, min_programs: int, default: float = 1.0) -> None:
        self._turn_counts: deque[int] = deque(maxlen=window)
        self._min_programs = min_programs
        self._default = default
        self._cached: float | None = None

    def observe_program(self, num_turns: int) -> None:
        """Record a finished program's total number of turns."""
        if num_turns > 0:
            self._turn_counts.append(num_turns)
            self._cached = None

    @property
    def eta(self) -> float:
        """Current estimate, clamped to [0, 1]."""
        if len(self._turn_counts) < self._min_programs:
            return self._default
        if self._cached is None:
            self._cached = self._compute()
        return self._cached

    def _compute(self) -> float:
        # Pearson correlation over the pairs (k, N - k), k = 1..N, of every program.
        n = sx = sy = sxx = syy = sxy = 0.0
        for total in self._turn_counts:
            ks = range(1, total + 1)
            for k in ks:
                x, y = float(k), float(total - k)
                n += 1
                sx += x
                sy += y
                sxx += x * x
                syy += y * y
                sxy += x * y
        var_x = n * sxx - sx * sx
        var_y = n * syy - sy * sy
        if var_x <= 0 or var_y <= 0:
            return self._default
        corr = (n * sxy - sx * sy) / math.sqrt(var_x * var_y)
        return min(1.0, max(0.0, -corr))
