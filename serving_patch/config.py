"""Typed configuration of the Continuum plugin, and the one place that reads it from the environment.

The vLLM engine core runs in its own process, built from ``--scheduler-cls``; the launcher
passes this configuration there as ``QUOTAFLOW_CONTINUUM_*`` environment variables
(:meth:`ContinuumConfig.to_env`), and the scheduler reads them back with
:meth:`ContinuumConfig.from_env`. Nothing else in the plugin reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Literal

ENV_PREFIX = "QUOTAFLOW_CONTINUUM_"
"""Prefix of every environment variable of the plugin (the field name in upper case follows)."""

TTLPolicyName = Literal["utility", "fixed"]


@dataclass(frozen=True)
class ContinuumConfig:
    """Knobs of the Continuum scheduler plugin (defaults follow the paper and preview code)."""

    ttl_policy: TTLPolicyName = "fixed"
    """TTL rule: "fixed" (pin for ``fixed_threshold_s`` unless the tool runs longer on average) or
    "utility" (the paper's argmax over observed tool durations). Fixed is the default because it
    measured better on the H200 (docs/benchmarks.md): fed this engine's real prefill cost
    (~0.1 s for a typical context), the utility rule pins only the shortest tool calls, and so
    does not stop stock vLLM's cache collapse past the knee (1.02x where fixed gave 1.42x)."""
    default_ttl_s: float = 2.0
    """TTL used by the utility rule until enough durations were observed (cold start)."""
    fixed_threshold_s: float = 2.0
    """Fixed rule: pin for this long unless the tool's mean duration exceeds it."""
    max_ttl_s: float = 30.0
    """Upper bound on any TTL, client hints included."""
    min_samples: int = 100
    """K: a tool's own distribution is used above K samples, the pooled one above K in total."""
    max_samples_per_tool: int = 1000
    """Durations kept per tool (and in the pooled distribution)."""
    max_tools: int = 256
    """Tools tracked at once; the least recently observed is dropped beyond this."""
    max_pinned_fraction: float = 0.5
    """Share of the KV cache's blocks that pins may hold together; a pin beyond it is refused."""
    program_idle_timeout_s: float = 600.0
    """A program with no turn in flight and no pin is forgotten after this much idle time."""
    max_programs: int = 100_000
    """Hard limit on programs remembered (oldest idle dropped first)."""
    gc_interval_s: float = 10.0
    """How often the scheduler runs the idle-program collection."""
    queue_delay_window: int = 256
    """Turns in the sliding window of the queueing-delay estimate T."""
    eta_window: int = 256
    """Finished programs in the window of the eta estimate."""
    eta_min_programs: int = 10
    """Finished programs needed before eta is estimated (1.0 before)."""
    prefill_a_s: float = 0.0
    """Prefill profile: fixed seconds per prefill."""
    prefill_b_s_per_token: float = 1.0e-4
    """Prefill profile: seconds per context token."""
    prefill_c_s_per_token2: float = 1.0e-9
    """Prefill profile: seconds per context token squared."""
    pin_length_capped: bool = False
    """Also pin turns that stopped at max_tokens (a benchmark with dummy weights needs it)."""
    metrics: bool = True
    """Export the plugin's Prometheus metrics from the engine process."""
    pin_with_offloading: bool = False
    """Keep TTL pins when vLLM's native CPU offloading (its ``OffloadingConnector``,
    ``--kv-offloading-backend native``) is attached. Off, a KV connector turns pinning off, as it
    does for any other connector (LMCache, NIXL, ...), which own the lifetime of the blocks they
    move. The native connector frees no block late (its ``request_finished`` never defers the
    free) and fences a block's pending stores when the block is reused, so a pin only delays that
    reuse; vLLM's own tests of its scheduler side pass with the plugin (tests/serving_patch). Off
    by default until a GPU run measures it (bench/NOTEBOOK.md §27: the simulator predicts pins beside
    the CPU tier recover what the tier alone loses to reloads after every tool call)."""
    admission: bool = False
    """Program-level admission control: a program's turns go to the engine only while the
    admitted programs' working sets (their largest contexts, in KV blocks) fit in the KV cache
    less ``admission_headroom_fraction``; other programs wait at a gate in program order instead
    of evicting admitted ones. Admitted programs' pins then last as long as their reservation
    (``admission_idle_s``) and are released earlier only under memory pressure."""
    admission_headroom_fraction: float = 0.1
    """Share of the KV cache kept out of the admission budget (growth of running turns)."""
    admission_idle_s: float = 120.0
    """An admitted program with no turn in flight for this long loses its reservation and its
    pin (a client that went away); its next turn goes through the gate again, in program order."""
    admission_yield_s: float = 2.0
    """Under pressure (the gate's first program does not fit), an admitted program idle in a tool
    call for at least this long yields its reservation and its pin, the latest-arrived program
    first, until the gate's first program fits; its next turn re-enters through the gate in
    program order. Without pressure reservations last up to ``admission_idle_s``. A value of
    ``admission_idle_s`` or more never yields early."""

    def __post_init__(self) -> None:
        if self.ttl_policy not in ("utility", "fixed"):
            raise ValueError(
                f"ttl_policy={self.ttl_policy!r}: expected 'utility' or 'fixed'"
            )
        if not 0.0 <= self.admission_headroom_fraction < 1.0:
            raise ValueError(
                f"admission_headroom_fraction={self.admission_headroom_fraction}: expected a share in [0, 1)"
            )
        if self.admission_idle_s <= 0.0:
            raise ValueError(f"admission_idle_s={self.admission_idle_s}: expected a positive duration")
        if not self.admission_yield_s >= 0.0:
            raise ValueError(f"admission_yield_s={self.admission_yield_s}: expected a duration >= 0")
        if not 0.0 <= self.max_pinned_fraction <= 1.0:
            raise ValueError(
                f"max_pinned_fraction={self.max_pinned_fraction}: expected a share in [0, 1]"
            )

    def to_env(self) -> dict[str, str]:
        """Environment variables that make :meth:`from_env` return this configuration."""
        out: dict[str, str] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            out[ENV_PREFIX + field.name.upper()] = str(int(value)) if isinstance(value, bool) else str(value)
        return out

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ContinuumConfig:
        """Read the configuration from ``QUOTAFLOW_CONTINUUM_*`` variables (defaults elsewhere)."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is None:
                continue
            default = field.default
            try:
                if isinstance(default, bool):
                    values[field.name] = raw.strip().lower() in ("1", "true", "yes", "on")
                elif isinstance(default, int):
                    values[field.name] = int(raw)
                elif isinstance(default, float):
                    values[field.name] = float(raw)
                else:
                    values[field.name] = raw.strip()
            except ValueError as exc:
                raise ValueError(
                    f"{ENV_PREFIX + field.name.upper()}={raw!r}: expected a {type(default).__name__}"
                ) from exc
        return cls(**values)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> ContinuumConfig:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
