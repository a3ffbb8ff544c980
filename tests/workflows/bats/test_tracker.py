from __future__ import annotations

import pytest

from orchestrator.context import ToolBudgetView
from orchestrator.errors import ConfigError
from workflows.bats.tracker import (
    Regime,
    TrackerConfig,
    any_exhausted,
    policy_prompt,
    regime_for,
    remaining_fraction,
    tracker_block,
)


def views(search_used: float, browse_used: float, limit: float = 10) -> list[ToolBudgetView]:
    return [
        ToolBudgetView("search", "query", search_used, limit),
        ToolBudgetView("browse", "url", browse_used, limit),
    ]


def test_block_shows_used_and_remaining_per_tool_in_tool_units() -> None:
    block = tracker_block([*views(3, 1), ToolBudgetView("calc", "call", 2, None)])
    lines = block.splitlines()
    assert lines[0] == "<budget>" and lines[-1] == "</budget>"
    assert "Search Budget Used: 3, Search Budget Remaining: 7 (of 10 queries)" in lines
    assert "Browse Budget Used: 1, Browse Budget Remaining: 9 (of 10 urls)" in lines
    assert "Calc Budget Used: 2, Calc Budget Remaining: no limit (calls)" in lines
    # The paper's form: no line reads as one of the agent's actions (the old one did).
    from workflows.actions import parse_actions

    assert parse_actions(block, ("search", "browse", "calc")) == []
    assert "regime: high" in lines


def test_block_never_shows_negative_remaining() -> None:
    block = tracker_block([ToolBudgetView("search", "query", 12, 10)])
    assert "Search Budget Used: 12, Search Budget Remaining: 0 " in block
    assert "regime: critical" in block


@pytest.mark.parametrize(
    ("search_used", "expected"),
    [(0, Regime.HIGH), (3, Regime.HIGH), (4, Regime.MEDIUM), (7, Regime.MEDIUM),
     (8, Regime.LOW), (9, Regime.LOW), (9.5, Regime.CRITICAL), (10, Regime.CRITICAL)],
)
def test_regime_follows_tightest_tool(search_used: float, expected: Regime) -> None:
    assert regime_for(views(search_used, 0)) is expected


def test_any_depleted_tool_is_critical_even_if_others_are_full() -> None:
    v = [ToolBudgetView("search", "query", 0, 100), ToolBudgetView("browse", "url", 2, 2)]
    assert any_exhausted(v)
    assert regime_for(v) is Regime.CRITICAL
    assert remaining_fraction(v) == 0.0


def test_unlimited_tools_are_high_and_never_exhausted() -> None:
    v = [ToolBudgetView("search", "query", 50, None)]
    assert regime_for(v) is Regime.HIGH
    assert not any_exhausted(v)


def test_thresholds_are_configurable() -> None:
    strict = TrackerConfig(high_at=0.9, medium_at=0.5, low_at=0.2)
    assert regime_for(views(2, 0), strict) is Regime.MEDIUM
    assert regime_for(views(2, 0)) is Regime.HIGH
    assert regime_for(views(6, 0), strict) is Regime.LOW
    with pytest.raises(ConfigError):
        TrackerConfig(high_at=0.2, medium_at=0.5)


def test_policy_prompt_lists_every_regime_and_starting_point() -> None:
    text = policy_prompt(views(5, 0))
    for regime in Regime:
        assert f"- {regime.value} (" in text
    assert "You start in the medium regime." in text
    assert "up to 3 searches and 2 pages per turn" in text
    assert "Search Budget Used: 5, Search Budget Remaining: 5 (of 10 queries)" in text
