from __future__ import annotations

import pytest

from budget.costs import (
    CostBreakdown,
    ModelPrice,
    PriceTable,
    load_price_table,
    parse_price_table,
    unified_cost,
)
from budget.errors import PriceTableError
from orchestrator.types import Usage

TABLE = PriceTable(
    default=ModelPrice(input=1.0, cached_input=0.5, output=2.0),
    models={"Org/Big-Model": ModelPrice(input=10.0, cached_input=1.0, output=30.0)},
    default_tool_price=0.001,
    tools={"browse": 0.002},
)


def test_model_price_charges_cached_part_at_cached_price() -> None:
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=100_000)
    # 600k fresh * $10 + 400k cached * $1 + 100k out * $30 per 1M tokens
    assert TABLE.price_for("Org/Big-Model").cost(usage) == pytest.approx(6.0 + 0.4 + 3.0)


def test_cached_count_above_input_is_clamped() -> None:
    usage = Usage(input_tokens=100, cached_input_tokens=500, output_tokens=0)
    assert TABLE.default.cost(usage) == pytest.approx(100 * 0.5e-6)


def test_price_lookup_exact_case_insensitive_basename_default() -> None:
    big = TABLE.models["Org/Big-Model"]
    assert TABLE.price_for("Org/Big-Model") is big
    assert TABLE.price_for("org/big-model") is big
    assert TABLE.price_for("big-model") is big
    assert TABLE.price_for("other/thing") is TABLE.default


def test_unified_cost_adds_tokens_and_tool_units() -> None:
    cost = unified_cost(
        {"Org/Big-Model": Usage(input_tokens=2_000, output_tokens=500), "tiny": Usage(input_tokens=1_000_000)},
        {"search": 7, "browse": 3},
        TABLE,
    )
    assert cost.by_model["Org/Big-Model"] == pytest.approx(2_000 * 10e-6 + 500 * 30e-6)
    assert cost.by_model["tiny"] == pytest.approx(1.0)
    assert cost.by_tool == pytest.approx({"search": 0.007, "browse": 0.006})
    assert cost.total_usd == pytest.approx(0.02 + 0.015 + 1.0 + 0.013)
    both = cost + CostBreakdown(1.0, 0.5, {"tiny": 1.0}, {"search": 0.5})
    assert both.total_usd == pytest.approx(cost.total_usd + 1.5)
    assert both.by_model["tiny"] == pytest.approx(2.0)


def test_default_table_ships_default_entry_and_bats_tool_price() -> None:
    table = load_price_table(None)
    assert table.tool_price("search") == pytest.approx(0.001)
    assert table.tool_price("browse") == pytest.approx(0.001)
    qwen = table.price_for("Qwen/Qwen2.5-Coder-0.5B-Instruct")
    assert qwen is not table.default
    assert table.price_for("qwen2.5-coder-0.5b-instruct") is qwen
    assert table.price_for("never-heard-of-it") is table.default


def test_user_table_file_is_read(tmp_path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        'v = 1\n[tools]\ndefault = 0.01\nsearch = 0.005\n'
        '[models.default]\ninput = 2.0\noutput = 4.0\n'
    )
    table = load_price_table(path)
    assert table.tool_price("search") == 0.005
    assert table.tool_price("browse") == 0.01
    assert table.default.cached_input == 2.0  # no cache discount given: fresh price


@pytest.mark.parametrize(
    "data",
    [
        {"models": {}},
        {"models": {"default": {"input": 1.0}}},
        {"models": {"default": {"input": -1.0, "output": 1.0}}},
        {"v": 2, "models": {"default": {"input": 1.0, "output": 1.0}}},
        {"models": {"default": {"input": 1.0, "output": 1.0}}, "tools": {"search": "cheap"}},
    ],
)
def test_bad_tables_raise_config_error(data) -> None:
    with pytest.raises(PriceTableError):
        parse_price_table(data)


def test_missing_or_broken_file_raises_config_error(tmp_path) -> None:
    with pytest.raises(PriceTableError, match="cannot read"):
        load_price_table(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[models.default\n")
    with pytest.raises(PriceTableError, match="TOML"):
        load_price_table(bad)
