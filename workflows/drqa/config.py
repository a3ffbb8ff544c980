"""Options of a ``drqa`` run, read from the run's options (``ctx.config``) or the task."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

from workflows.drqa.quota.allocation import AllocationConfig
from workflows.drqa.quota.difficulty import DifficultyConfig
from workflows.drqa.quota.plan import QuotaConfig, policy_for
from orchestrator.errors import BadInputError

__all__ = ["DRQARunConfig", "option_names", "run_config_from"]

_C = TypeVar("_C", QuotaConfig, DifficultyConfig)


@dataclass(frozen=True)
class DRQARunConfig:
    """Everything a ``drqa`` run needs besides its items."""

    method: str = "drqa"
    """``drqa``, ``uniform`` or ``unlimited``."""
    total_budget: int | None = None
    """Output (reasoning) tokens for the whole dataset; required except for ``unlimited``."""
    quota: QuotaConfig = field(default_factory=QuotaConfig)
    """Probe, allocation and re-allocation knobs."""
    max_concurrency: int = 64
    """LLM calls in flight at once within a stage."""
    temperature: float = 0.0
    """Sampling temperature of probe and solve calls."""
    retry_temperature: float = 0.7
    """Temperature of the second, independent solve given to low-confidence questions."""


_QUOTA_KEYS = {f.name for f in fields(QuotaConfig)} - {"allocation", "reallocation", "difficulty"}
_DIFFICULTY_KEYS = {f.name for f in fields(DifficultyConfig)}


def option_names() -> set[str]:
    """Every key :func:`run_config_from` reads."""
    return (_QUOTA_KEYS | _DIFFICULTY_KEYS
            | {"method", "total_budget", "budget_tokens", "max_concurrency", "temperature", "retry_temperature",
               "floor_tokens", "ceiling_tokens", "realloc_floor_tokens", "realloc_ceiling_tokens"})


def run_config_from(*sources: Mapping[str, Any]) -> DRQARunConfig:
    """Merge flat option dicts (later ones win) into a :class:`DRQARunConfig`.

    Recognised keys: ``method``, ``total_budget`` (alias ``budget_tokens``), ``max_concurrency``,
    ``temperature``, ``retry_temperature``, every :class:`QuotaConfig` scalar field,
    ``floor_tokens``/``ceiling_tokens`` (solve quotas), ``realloc_floor_tokens``/
    ``realloc_ceiling_tokens``, and every :class:`DifficultyConfig` field. Others are ignored
    (the run's options also carry runtime keys).
    """
    merged: dict[str, Any] = {}
    for src in sources:
        merged.update({k: v for k, v in src.items() if v is not None})
    method = str(merged.get("method", "drqa"))
    policy_for(method)  # validates the name
    budget = merged.get("total_budget", merged.get("budget_tokens"))
    total_budget = int(budget) if budget is not None else None
    if total_budget is None and method != "unlimited":
        raise BadInputError("total_budget", f"a token budget for method {method!r} (--budget-tokens N)")
    if total_budget is not None and total_budget < 0:
        raise BadInputError("total_budget", "a non-negative number of tokens", str(total_budget))
    quota = _with_options(QuotaConfig(), _QUOTA_KEYS, merged, "quota")
    alloc, realloc = quota.allocation, quota.reallocation
    quota = replace(
        quota,
        allocation=AllocationConfig(
            int(merged.get("floor_tokens", alloc.floor_tokens)),
            int(merged.get("ceiling_tokens", alloc.ceiling_tokens)),
        ),
        reallocation=AllocationConfig(
            int(merged.get("realloc_floor_tokens", realloc.floor_tokens)),
            int(merged.get("realloc_ceiling_tokens", realloc.ceiling_tokens)),
        ),
        difficulty=_with_options(quota.difficulty, _DIFFICULTY_KEYS, merged, "difficulty"),
    )
    return DRQARunConfig(
        method=method,
        total_budget=total_budget,
        quota=quota,
        max_concurrency=int(merged.get("max_concurrency", 64)),
        temperature=float(merged.get("temperature", 0.0)),
        retry_temperature=float(merged.get("retry_temperature", 0.7)),
    )


def _with_options(defaults: _C, keys: set[str], merged: Mapping[str, Any], what: str) -> _C:
    """``defaults`` with the ``keys`` that ``merged`` has, each typed like its field; a value of
    the wrong type (or one the dataclass refuses) is a :class:`BadInputError` naming ``what``."""
    try:
        return replace(defaults, **{k: _typed(defaults, k, merged[k]) for k in keys if k in merged})
    except ValueError as exc:
        raise BadInputError(f"{what} options", f"valid DRQA {what} options", str(exc)) from None


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _typed(defaults: Any, key: str, value: Any) -> Any:
    """``value`` as the type of ``defaults.key`` (options may arrive as strings: '0.1', 'false').

    A string where a number belongs once reached the arithmetic as ``budget * '0'``.
    """
    kind = type(getattr(defaults, key))
    if kind is str or isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if kind is bool:
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ValueError(f"{key}: expected true or false, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key}: expected {kind.__name__}, got {value!r}") from None
