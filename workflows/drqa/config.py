"""Options of a ``drqa`` run, read from the run's options (``ctx.config``) or the task.

Values are typed by :mod:`orchestrator.options`, the converter every workflow uses: ``"false"``
is False, ``"0.1"`` is a number, keys that are not DRQA options are ignored (the run's options
also carry runtime keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar, get_type_hints

from orchestrator.errors import BadInputError
from orchestrator.options import check_ranges, config_from_options
from workflows.drqa.quota.allocation import AllocationConfig
from workflows.drqa.quota.difficulty import DifficultyConfig
from workflows.drqa.quota.plan import QuotaConfig, policy_for

__all__ = ["DRQARunConfig", "option_names", "option_types", "run_config_from"]

_C = TypeVar("_C")


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

    def __post_init__(self) -> None:
        check_ranges(self, max_concurrency=(1, None), temperature=(0.0, 2.0), retry_temperature=(0.0, 2.0))


_RUN_KEYS = ("method", "total_budget", "max_concurrency", "temperature", "retry_temperature")
_NESTED = ("allocation", "reallocation", "difficulty")
_QUOTA_KEYS = {f.name for f in fields(QuotaConfig)} - set(_NESTED)
_DIFFICULTY_KEYS = {f.name for f in fields(DifficultyConfig)}
_REALLOC_KEYS = {"realloc_floor_tokens": "floor_tokens", "realloc_ceiling_tokens": "ceiling_tokens"}
"""The flat option names of the re-allocation bounds (the solve bounds keep the field names)."""


def option_types() -> dict[str, Any]:
    """Every key :func:`run_config_from` reads, with the type its value is converted to."""
    run, quota = get_type_hints(DRQARunConfig), get_type_hints(QuotaConfig)
    bounds, difficulty = get_type_hints(AllocationConfig), get_type_hints(DifficultyConfig)
    return {
        **{k: run[k] for k in _RUN_KEYS}, "budget_tokens": run["total_budget"],
        **{k: quota[k] for k in _QUOTA_KEYS}, **difficulty, **bounds,
        **{k: bounds[name] for k, name in _REALLOC_KEYS.items()},
    }


def option_names() -> set[str]:
    """Every key :func:`run_config_from` reads."""
    return set(option_types())


def run_config_from(*sources: Mapping[str, Any]) -> DRQARunConfig:
    """Merge flat option dicts (later ones win) into a :class:`DRQARunConfig`.

    Recognised keys: ``method``, ``total_budget`` (alias ``budget_tokens``), ``max_concurrency``,
    ``temperature``, ``retry_temperature``, every :class:`QuotaConfig` scalar field,
    ``floor_tokens``/``ceiling_tokens`` (solve quotas), ``realloc_floor_tokens``/
    ``realloc_ceiling_tokens``, and every :class:`DifficultyConfig` field. Others are ignored.
    A value that does not fit its option is a :class:`BadInputError`.
    """
    merged: dict[str, Any] = {}
    for src in sources:
        merged.update({k: v for k, v in src.items() if v is not None})
    if "total_budget" not in merged and "budget_tokens" in merged:
        merged["total_budget"] = merged["budget_tokens"]
    run = config_from_options(DRQARunConfig, {k: merged[k] for k in _RUN_KEYS if k in merged}, what="drqa option")
    policy_for(run.method)  # validates the name
    if run.total_budget is None and run.method != "unlimited":
        raise BadInputError("total_budget", f"a token budget for method {run.method!r} (--budget-tokens N)")
    if run.total_budget is not None and run.total_budget < 0:
        raise BadInputError("total_budget", "a non-negative number of tokens", str(run.total_budget))
    defaults = QuotaConfig()
    quota = _options(QuotaConfig, {k: v for k, v in merged.items() if k in _QUOTA_KEYS}, defaults, "quota")
    realloc = {_REALLOC_KEYS[k]: v for k, v in merged.items() if k in _REALLOC_KEYS}
    quota = replace(
        quota,
        allocation=_options(AllocationConfig, merged, defaults.allocation, "allocation"),
        reallocation=_options(AllocationConfig, realloc, defaults.reallocation, "reallocation"),
        difficulty=_options(DifficultyConfig, merged, defaults.difficulty, "difficulty"),
    )
    return replace(run, quota=quota)


def _options(cls: type[_C], options: Mapping[str, Any], base: _C, what: str) -> _C:
    """``base`` with the fields of ``cls`` that ``options`` names, typed by the shared converter;
    a value it refuses is a :class:`BadInputError` that says it is a DRQA option."""
    try:
        return config_from_options(cls, options, what=what, base=base)
    except BadInputError as exc:
        raise BadInputError(exc.what, f"valid DRQA {what} options: {exc.expected}", exc.detail) from None
