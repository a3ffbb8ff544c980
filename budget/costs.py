"""Unified cost (BATS): tokens at the model's prices plus a price per tool unit, in US dollars.

    C_unified = sum over models of  (input - cached) * p_in + cached * p_cached + output * p_out
              + sum over tools of   units * p_tool

Prices come from a TOML table users can edit (``budget/prices.toml`` is the default; see its
header for the format). Everything here is pure except :func:`load_price_table`, which reads the
file it is given.

Token convention (the OpenAI usage report's): ``Usage.input_tokens`` counts every prompt token
and ``Usage.cached_input_tokens`` the part of them served from the prefix cache.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from budget.errors import PriceTableError

__all__ = [
    "DEFAULT_TOOL_PRICE_USD",
    "CostBreakdown",
    "ModelPrice",
    "PriceTable",
    "load_price_table",
    "parse_price_table",
    "unified_cost",
]

DEFAULT_TOOL_PRICE_USD = 0.001
"""Price of one tool unit when the table names none (the BATS paper's average)."""



class Usage(Protocol):
    """Token counts of one or more calls (``orchestrator.types.Usage`` has this shape)."""

    @property
    def input_tokens(self) -> int: ...
    @property
    def cached_input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...


_PER_TOKEN = 1e-6  # table prices are per 1M tokens
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelPrice:
    """One model's token prices in US dollars per 1M tokens."""

    input: float
    """Prompt tokens not served from the prefix cache."""
    cached_input: float
    """Prompt tokens served from the prefix cache."""
    output: float
    """Generated tokens, reasoning included."""

    def cost(self, usage: Usage) -> float:
        """Dollars for ``usage`` at these prices."""
        return self.cost_of(usage.input_tokens, usage.cached_input_tokens, usage.output_tokens)

    def cost_of(self, input_tokens: int, cached_input_tokens: int, output_tokens: int) -> float:
        """Dollars for these token counts (``input_tokens`` includes the cached ones)."""
        cached = min(max(cached_input_tokens, 0), max(input_tokens, 0))
        fresh = max(input_tokens, 0) - cached
        return _PER_TOKEN * (fresh * self.input + cached * self.cached_input + max(output_tokens, 0) * self.output)


@dataclass(frozen=True)
class PriceTable:
    """Token prices per model (with a default entry) and a price per unit per tool."""

    default: ModelPrice
    """Prices for a model the table does not name."""
    models: Mapping[str, ModelPrice] = field(default_factory=dict)
    """Prices by model name as the backend reports it."""
    default_tool_price: float = DEFAULT_TOOL_PRICE_USD
    """Dollars per unit for a tool the table does not name."""
    tools: Mapping[str, float] = field(default_factory=dict)
    """Dollars per unit (one query string, one URL) by tool name."""

    def price_for(self, model: str) -> ModelPrice:
        """Prices for ``model``: exact name (or an entry's ``aliases``), then case-insensitive on
        the part after the last ``/`` without an ``-instruct``/``-chat``/``-it`` suffix (so
        ``Qwen/Qwen2.5-Coder-0.5B-Instruct`` and the served name ``qwen2.5-coder-0.5b`` find each
        other), else the default."""
        if model in self.models:
            return self.models[model]
        folded = {_fold(name): price for name, price in self.models.items()}
        return folded.get(_fold(model), self.default)

    def highest(self) -> ModelPrice:
        """The highest price of each kind over every model of the table (what a call to a model
        not known yet may cost at most)."""
        prices = [self.default, *self.models.values()]
        return ModelPrice(input=max(p.input for p in prices), cached_input=max(p.cached_input for p in prices),
                          output=max(p.output for p in prices))

    def tool_price(self, tool: str) -> float:
        """Dollars per unit of ``tool``."""
        return self.tools.get(tool, self.default_tool_price)


_SUFFIXES = ("-instruct", "-chat", "-it")


def _fold(name: str) -> str:
    base = name.rsplit("/", 1)[-1].lower()
    for suffix in _SUFFIXES:
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


@dataclass(frozen=True)
class CostBreakdown:
    """Unified cost of a run (or of many runs added together), in US dollars."""

    token_usd: float
    """Tokens of every model at its prices."""
    tool_usd: float
    """Tool units at their prices."""
    by_model: dict[str, float] = field(default_factory=dict)
    """Token dollars per model."""
    by_tool: dict[str, float] = field(default_factory=dict)
    """Tool dollars per tool."""

    @property
    def total_usd(self) -> float:
        return self.token_usd + self.tool_usd

    def __add__(self, other: CostBreakdown) -> CostBreakdown:
        return CostBreakdown(
            self.token_usd + other.token_usd,
            self.tool_usd + other.tool_usd,
            _merge(self.by_model, other.by_model),
            _merge(self.by_tool, other.by_tool),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_usd": self.total_usd,
            "token_usd": self.token_usd,
            "tool_usd": self.tool_usd,
            "by_model": dict(self.by_model),
            "by_tool": dict(self.by_tool),
        }


def _merge(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0.0) + v
    return out


def unified_cost(
    usage_by_model: Mapping[str, Usage],
    tool_calls: Mapping[str, float],
    table: PriceTable,
) -> CostBreakdown:
    """Unified cost of the given token usage (per model) and tool units (per tool)."""
    by_model = {m: table.price_for(m).cost(u) for m, u in usage_by_model.items()}
    by_tool = {t: units * table.tool_price(t) for t, units in tool_calls.items()}
    return CostBreakdown(sum(by_model.values()), sum(by_tool.values()), by_model, by_tool)


def _price_entry(where: str, raw: Any) -> ModelPrice:
    if not isinstance(raw, Mapping):
        raise PriceTableError(f"price table {where}: expected a table with input, cached_input, output")
    try:
        input_ = float(raw["input"])
        output = float(raw["output"])
        # A provider without a cache discount: cached tokens cost as much as fresh ones.
        cached = float(raw.get("cached_input", input_))
    except (KeyError, TypeError, ValueError) as exc:
        raise PriceTableError(
            f"price table {where}: expected numbers input, output (and optional cached_input) "
            f"in dollars per 1M tokens ({exc!r})"
        ) from None
    if min(input_, cached, output) < 0:
        raise PriceTableError(f"price table {where}: prices must not be negative")
    return ModelPrice(input=input_, cached_input=cached, output=output)


def parse_price_table(data: Mapping[str, Any], *, source: str = "<table>") -> PriceTable:
    """A :class:`PriceTable` from parsed TOML (see ``budget/prices.toml`` for the format)."""
    version = data.get("v", _FORMAT_VERSION)
    if version != _FORMAT_VERSION:
        raise PriceTableError(f"price table {source}: format v={version!r} unknown; expected v = {_FORMAT_VERSION}")
    raw_models = data.get("models", {})
    if not isinstance(raw_models, Mapping) or "default" not in raw_models:
        raise PriceTableError(f"price table {source}: expected a [models.default] entry")
    models = {name: _price_entry(f"{source} [models.{name!r}]", raw) for name, raw in raw_models.items()}
    for name, raw in raw_models.items():
        aliases = raw.get("aliases", []) if isinstance(raw, Mapping) else []
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise PriceTableError(f"price table {source} [models.{name!r}]: aliases must be a list of model names")
        for alias in aliases:
            models.setdefault(alias, models[name])
    default = models.pop("default")
    raw_tools = data.get("tools", {})
    if not isinstance(raw_tools, Mapping):
        raise PriceTableError(f"price table {source}: [tools] must map tool names to dollars per unit")
    try:
        tools = {str(k): float(v) for k, v in raw_tools.items()}
    except (TypeError, ValueError):
        raise PriceTableError(f"price table {source}: [tools] values must be dollars per unit (numbers)") from None
    default_tool = tools.pop("default", DEFAULT_TOOL_PRICE_USD)
    return PriceTable(default=default, models=models, default_tool_price=default_tool, tools=tools)


def load_price_table(path: str | Path | None = None) -> PriceTable:
    """Read a price table: ``path``, or the default ``budget/prices.toml`` when None."""
    if path is None:
        text = resources.files("budget").joinpath("prices.toml").read_text(encoding="utf-8")
        source = "budget/prices.toml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise PriceTableError(f"price table {path}: cannot read it ({exc.strerror}); check the path") from None
        source = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PriceTableError(f"price table {source}: not valid TOML ({exc})") from None
    return parse_price_table(data, source=source)
