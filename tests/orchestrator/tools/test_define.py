"""@tool: schema from annotations and docstring, units, sync and async functions."""

from __future__ import annotations

import asyncio
import threading
from typing import Literal

import pytest

from orchestrator.errors import ConfigError
from orchestrator.tools.base import ToolResult
from orchestrator.tools.define import tool
from orchestrator.tools.registry import ToolRegistry


@tool(unit="query", units="queries", timeout_s=3.0)
async def lookup(
    queries: list[str], limit: int = 3, mode: Literal["a", "b"] = "a", note: str | None = None
) -> str:
    """Look words up in the glossary.

    More text that is not the summary.

    Args:
        queries: words to look up,
            one unit each.
        limit: entries per word.
    """
    return f"{queries} {limit} {mode} {note}"


def test_schema_from_annotations_defaults_and_docstring() -> None:
    spec = lookup.spec
    assert spec.name == "lookup" and spec.unit == "query" and spec.timeout_s == 3.0
    assert spec.description == "Look words up in the glossary."
    props = spec.parameters["properties"]
    assert props["queries"] == {
        "type": "array",
        "items": {"type": "string"},
        "description": "words to look up, one unit each.",
    }
    assert props["limit"] == {"type": "integer", "description": "entries per word.", "default": 3}
    assert props["mode"]["enum"] == ["a", "b"]
    assert props["note"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    assert spec.parameters["required"] == ["queries"]
    assert spec.parameters["additionalProperties"] is False


def test_units_by_parameter_and_invocation_through_registry() -> None:
    reg = ToolRegistry([lookup])
    assert reg.units_for("lookup", {"queries": ["x", "y"]}) == 2
    result = asyncio.run(reg.invoke("lookup", {"queries": ["x"], "limit": 2}))
    assert result.content == "['x'] 2 a None"
    bad = asyncio.run(reg.invoke("lookup", {"queries": ["x"], "mode": "c"}))
    assert bad.is_error and "'mode'" in bad.content


def test_sync_function_runs_off_the_event_loop_and_values_are_encoded() -> None:
    seen: list[str] = []

    @tool(name="total", description="Add numbers.", units=2)
    def add(xs: list[float], label: str = ":param x: not a param line") -> dict[str, float]:
        """:param xs: the numbers"""
        seen.append(threading.current_thread().name)
        return {"sum": sum(xs)}

    assert add.spec.name == "total" and add.spec.description == "Add numbers."
    assert add.spec.parameters["properties"]["xs"]["description"] == "the numbers"
    assert add.spec.units({"xs": [1]}) == 2
    result = asyncio.run(ToolRegistry([add]).invoke("total", {"xs": [1, 2.5]}))
    assert result.content == '{"sum": 3.5}'
    assert seen and seen[0] != threading.main_thread().name


def test_tool_result_passes_through_and_bare_decorator_works() -> None:
    @tool
    async def flag(on: bool) -> ToolResult:
        """Flip a flag."""
        return ToolResult("flipped", is_error=not on)

    assert flag.spec.parameters["properties"]["on"] == {"type": "boolean"}
    assert asyncio.run(ToolRegistry([flag]).invoke("flag", {"on": False})).is_error


def test_undescribable_signatures_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="\\*args"):

        @tool
        def variadic(*names: str) -> str:
            return ""

    with pytest.raises(ConfigError, match="names no parameter"):

        @tool(units="missing")
        def f(x: str) -> str:
            return x

    with pytest.raises(ConfigError, match="cannot derive"):

        @tool
        def g(x: complex) -> str:
            return ""
