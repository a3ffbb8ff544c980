"""The Budget Tracker (BATS, arXiv 2511.17006): what the agent is told about its tool budget.

Pure functions over :class:`~orchestrator.context.ToolBudgetView`:

- :func:`tracker_block` renders the compact block appended after every tool response
  (per tool: units used and remaining, in the tool's own unit);
- :func:`regime_for` classifies the remaining budget into a :class:`Regime` (high, medium, low,
  critical) from the smallest remaining fraction over the tools;
- :func:`policy_prompt` is the first-turn guideline: how broad the next queries may be in each
  regime, and which regime the agent starts in.

The tracker only informs; enforcement is the ledger's job (a depleted tool is refused there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from orchestrator.context import ToolBudgetView
from orchestrator.errors import ConfigError

__all__ = [
    "DEFAULT_POLICIES",
    "Regime",
    "RegimePolicy",
    "TrackerConfig",
    "any_exhausted",
    "echo_stops",
    "policy_prompt",
    "regime_for",
    "remaining_fraction",
    "tracker_block",
]


class Regime(StrEnum):
    """How much of the tightest tool budget is left."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    CRITICAL = "critical"


@dataclass(frozen=True)
class RegimePolicy:
    """How broad the agent may search in one regime."""

    max_queries_per_turn: int
    """Search query strings the agent should issue in one turn at most."""
    max_urls_per_turn: int
    """Pages the agent should open in one turn at most."""
    advice: str
    """One sentence telling the agent what to do in this regime."""


DEFAULT_POLICIES: dict[Regime, RegimePolicy] = {
    Regime.HIGH: RegimePolicy(
        3, 2, "explore broadly: try different angles on the question and open the most promising pages"
    ),
    Regime.MEDIUM: RegimePolicy(
        2, 1, "converge: refine your queries around the best lead and open only pages that fill a gap"
    ),
    Regime.LOW: RegimePolicy(
        1, 1, "verify: check the one fact your answer depends on, or answer now"
    ),
    Regime.CRITICAL: RegimePolicy(
        1, 0, "finish: never call a tool with 0 left; make at most one essential call, then answer with your best guess"
    ),
}


@dataclass(frozen=True)
class TrackerConfig:
    """Regime thresholds on the remaining fraction of the tightest tool budget."""

    high_at: float = 0.7
    """At least this fraction left (on every limited tool): high regime."""
    medium_at: float = 0.3
    """At least this fraction left: medium regime."""
    low_at: float = 0.1
    """At least this fraction left: low regime; below it, or any tool at 0: critical."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_at <= self.medium_at <= self.high_at <= 1.0:
            raise ConfigError(
                "tracker thresholds must satisfy 0 <= low_at <= medium_at <= high_at <= 1, "
                f"got low_at={self.low_at}, medium_at={self.medium_at}, high_at={self.high_at}"
            )


def remaining_fraction(views: Sequence[ToolBudgetView]) -> float:
    """The smallest remaining/limit over tools with a positive limit (1.0 when none is limited)."""
    fractions = [
        (v.remaining or 0.0) / v.limit for v in views if v.limit is not None and v.limit > 0
    ]
    if any(v.limit is not None and v.limit <= 0 for v in views):
        return 0.0
    return min(fractions, default=1.0)


def any_exhausted(views: Sequence[ToolBudgetView]) -> bool:
    """True when some limited tool has nothing left (the BATS loop stops there)."""
    return any(v.remaining is not None and v.remaining <= 0 for v in views)


def regime_for(views: Sequence[ToolBudgetView], config: TrackerConfig | None = None) -> Regime:
    """The regime the agent is in, from the tightest tool budget."""
    config = config or TrackerConfig()
    if any_exhausted(views):
        return Regime.CRITICAL
    frac = remaining_fraction(views)
    if frac >= config.high_at:
        return Regime.HIGH
    if frac >= config.medium_at:
        return Regime.MEDIUM
    if frac >= config.low_at:
        return Regime.LOW
    return Regime.CRITICAL


def _plural(unit: str) -> str:
    if unit.endswith("y") and unit[-2:-1] not in "aeiou":
        return unit[:-1] + "ies"
    if unit.endswith(("s", "x", "ch", "sh")):
        return unit + "es"
    return unit + "s"


def _title(tool: str) -> str:
    return tool[:1].upper() + tool[1:]


def _num(x: float) -> str:
    return f"{x:g}"


def tracker_block(
    views: Sequence[ToolBudgetView],
    config: TrackerConfig | None = None,
    *,
    show_regime: bool = True,
) -> str:
    """The block appended after every tool response, one line per tool in the paper's form
    ("<Tool> Budget Used: u, <Tool> Budget Remaining: r"), e.g.::

        <budget>
        Search Budget Used: 3, Search Budget Remaining: 7 (of 10 queries)
        Browse Budget Used: 1, Browse Budget Remaining: 4 (of 5 urls)
        regime: medium
        </budget>

    No line has the agent's action syntax (``search: ...``): an agent that repeats the block
    writes no action, and :func:`echo_stops` ends its reply there. (The block's lines were
    ``search: 3 used, 7 left (of 10 queries)`` before; the Tracker's agent copied them as queries.)
    """
    lines = ["<budget>"]
    for v in views:
        name = _title(v.tool)
        left = "no limit" if v.limit is None else _num(v.remaining or 0.0)
        of = f"({_plural(v.unit)})" if v.limit is None else f"(of {_num(v.limit)} {_plural(v.unit)})"
        lines.append(f"{name} Budget Used: {_num(v.used)}, {name} Budget Remaining: {left} {of}")
    if show_regime:
        lines.append(f"regime: {regime_for(views, config).value}")
    lines.append("</budget>")
    return "\n".join(lines)


BLOCK_ECHO_STOPS = ("<budget>", "\nbudget", "\nBudget", "\nregime:", "Budget Used:", "Budget Remaining:")
"""Stop strings for the agent's own reply where it is shown the budget block: the block is the
environment's, never the agent's, but a small model imitates it after its action lines
(Qwen2.5-Coder-0.5B, 2026-12-04: 640 of 836 cut agent replies were the block's lines repeated until
the token limit, bench/NOTEBOOK.md §16). The reply ends where the imitation starts, keeping the
actions before it. Line starts, the tag, and the block's own "Budget Used:"/"Budget Remaining:",
which no query or answer writes (:func:`echo_stops` adds each tool's "<Tool> Budget")."""


def echo_stops(tools: Sequence[str]) -> tuple[str, ...]:
    """:data:`BLOCK_ECHO_STOPS` and each tool's line start in the block (``Search Budget``), so a
    reply that imitates a line ends before its first word, on its own line or after an action."""
    return (*BLOCK_ECHO_STOPS, *(f"{_title(t)} Budget" for t in tools))


def policy_prompt(
    views: Sequence[ToolBudgetView],
    config: TrackerConfig | None = None,
    policies: dict[Regime, RegimePolicy] | None = None,
) -> str:
    """First-turn budget policy: the guideline per regime and the regime the agent starts in."""
    config = config or TrackerConfig()
    policies = policies or DEFAULT_POLICIES
    bounds = {
        Regime.HIGH: f"at least {config.high_at:.0%} left",
        Regime.MEDIUM: f"{config.medium_at:.0%} to {config.high_at:.0%} left",
        Regime.LOW: f"{config.low_at:.0%} to {config.medium_at:.0%} left",
        Regime.CRITICAL: f"under {config.low_at:.0%} left or any tool at 0",
    }
    lines = [
        (
            "Budget policy. Every tool call costs units (one per query, one per page) and a tool "
            "with 0 left is refused. After each tool response a <budget> block shows what is left. "
            "Choose how broad to search by the regime of your tightest budget:"
        ),
    ]
    for regime in Regime:
        p = policies[regime]
        lines.append(
            f"- {regime.value} ({bounds[regime]}): up to {p.max_queries_per_turn} "
            f"{'search' if p.max_queries_per_turn == 1 else 'searches'} and "
            f"{p.max_urls_per_turn} {'page' if p.max_urls_per_turn == 1 else 'pages'} per turn; {p.advice}."
        )
    current = regime_for(views, config)
    lines.append(f"You start in the {current.value} regime.")
    lines.append(tracker_block(views, config, show_regime=False))
    return "\n".join(lines)
