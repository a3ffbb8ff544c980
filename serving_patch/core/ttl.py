"""TTL policies: how long to keep a finished turn's KV cache for its program's next turn.

Utility rule (Continuum, arXiv 2511.02230): with D the duration of the tool the program now
runs, pick

    tau* = argmax_tau  P(D <= tau) * (T * eta + C_reload) - tau

over tau in {0} and every observed duration, where T is the mean queueing delay of turns that
lost their cache, eta the turn-count predictability and C_reload the time to prefill the
context again. Memory cost and benefit both scale with the turn's KV footprint, which cancels.

Fixed rule (the released preview code): pin for ``threshold`` seconds when the tool's mean
duration is at most ``threshold`` (unseen tools included), otherwise do not pin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from serving_patch.core.durations import ToolDurationModel


@dataclass(frozen=True)
class TTLInputs:
    """Everything a TTL policy may look at for one finished turn."""

    tool_name: str | None
    """Tool the program now waits on (None when the client did not say)."""
    num_context_tokens: int
    """Tokens the next turn would have to prefill again if the cache were lost."""
    queue_delay_s: float
    """T: mean queueing delay of turns that arrived without a pin."""
    eta: float
    """Turn-count predictability in [0, 1]."""
    ttl_hint_s: float | None = None
    """Client override; used as is (clamped) when given."""


@dataclass(frozen=True)
class PrefillProfile:
    """Quadratic prefill-time model: seconds = a + b * n + c * n**2 for n context tokens."""

    a_s: float = 0.0
    """Fixed cost per prefill, seconds."""
    b_s_per_token: float = 1.0e-4
    """Linear cost, seconds per token."""
    c_s_per_token2: float = 1.0e-9
    """Quadratic (attention) cost, seconds per token squared."""

    def seconds(self, num_tokens: int) -> float:
        """Predicted prefill time of ``num_tokens`` tokens."""
        n = float(max(0, num_tokens))
        return self.a_s + self.b_s_per_token * n + self.c_s_per_token2 * n * n


class TTLPolicy(Protocol):
    """Decides a TTL (seconds; 0 means do not pin) for a finished turn."""

    def ttl_s(self, inputs: TTLInputs) -> float: ...


def best_tau(sorted_durations: list[float], benefit_s: float) -> float:
    """argmax over tau in {0} and the samples of P(D <= tau) * benefit - tau (ties: smallest)."""
    n = len(sorted_durations)
    best, best_utility = 0.0, 0.0
    for i, tau in enumerate(sorted_durations):
        # Only the last of equal samples gives the full P(D <= tau).
        if i + 1 < n and sorted_durations[i + 1] == tau:
            continue
        utility = (i + 1) / n * benefit_s - tau
        if utility > best_utility:
            best, best_utility = tau, utility
    return best


class UtilityTTLPolicy:
    """The paper's utility rule with a default TTL on cold start."""

    def __init__(
        self,
        durations: ToolDurationModel,
        *,
        profile: PrefillProfile,
        default_ttl_s: float,
        max_ttl_s: float,
    ) -> None:
        self._durations = durations
        self._profile = profile
        self._default_ttl_s = default_ttl_s
        self._max_ttl_s = max_ttl_s

    def ttl_s(self, inputs: TTLInputs) -> float:
        if inputs.ttl_hint_s is not None:
            return min(inputs.ttl_hint_s, self._max_ttl_s)
        found = self._durations.samples_for(inputs.tool_name)
        if found is None:
            return min(self._default_ttl_s, self._max_ttl_s)
        _, samples = found
        benefit = inputs.queue_delay_s * inputs.eta + self._profile.seconds(inputs.num_context_tokens)
        return min(best_tau(samples, benefit), self._max_ttl_s)


class FixedTTLPolicy:
    """Pin for ``threshold_s`` unless the tool's mean duration is longer than that."""

    def __init__(self, durations: ToolDurationModel, *, threshold_s: float, max_ttl_s: float) -> None:
        self._durations = durations
        self._threshold_s = threshold_s
        self._max_ttl_s = max_ttl_s

    def ttl_s(self, inputs: TTLInputs) -> float:
        if inputs.ttl_hint_s is not None:
            return min(inputs.ttl_hint_s, self._max_ttl_s)
        mean = self._durations.mean_for(inputs.tool_name)
        if mean is not None and mean > self._threshold_s:
            return 0.0
        return min(self._threshold_s, self._max_ttl_s)


def make_ttl_policy(
    name: str,
    durations: ToolDurationModel,
    *,
    profile: PrefillProfile,
    default_ttl_s: float,
    fixed_threshold_s: float,
    max_ttl_s: float,
) -> TTLPolicy:
    """Build the policy called ``name`` ("utility" or "fixed")."""
    if name == "utility":
        return UtilityTTLPolicy(
            durations, profile=profile, default_ttl_s=default_ttl_s, max_ttl_s=max_ttl_s
        )
    if name == "fixed":
        return FixedTTLPolicy(durations, threshold_s=fixed_threshold_s, max_ttl_s=max_ttl_s)
    raise ValueError(f"unknown TTL policy {name!r}: expected 'utility' or 'fixed'")
