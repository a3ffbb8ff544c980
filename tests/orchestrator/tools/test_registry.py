"""ToolRegistry: lookup, validation against the schema, units, timeouts, errors as observations."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrator.errors import BadInputError, ConfigError, ToolError
from orchestrator.tools.base import Tool, ToolResult, ToolSpec
from orchestrator.tools.registry import ToolRegistry, normalize_args, validate_args

LOOKUP_SCHEMA = {
    "type": "object",
    "properties": {
        "query": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "k": {"type": "integer", "minimum": 1, "maximum": 10},
        "mode": {"enum": ["fast", "exact"]},
        "strict": {"type": "boolean"},
    },
    "required": ["query"],
    "additionalProperties": False,
}


def make_tool(name: str = "lookup", fn: Any = None, timeout_s: float = 5.0, **spec: Any) -> Tool:
    async def echo(args: dict[str, Any]) -> ToolResult:
        return ToolResult(f"got {args}")

    return Tool(
        ToolSpec(
            name,
            "test tool",
            spec.pop("parameters", LOOKUP_SCHEMA),
            unit="query",
            units=lambda a: len(a["query"]) if isinstance(a["query"], list) else 1,
            timeout_s=timeout_s,
            **spec,
        ),
        fn or echo,
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_register_get_list_and_subset_keep_order() -> None:
    reg = ToolRegistry([make_tool("a"), make_tool("b"), make_tool("c")])
    assert reg.names() == ["a", "b", "c"]
    assert [s.name for s in reg.specs()] == ["a", "b", "c"]
    assert reg.get("b").name == "b" and "c" in reg and len(reg) == 3
    sub = reg.subset(["c", "a"])
    assert sub.names() == ["c", "a"] and "b" not in sub
    assert reg.as_openai_tools()[0]["function"]["parameters"] == LOOKUP_SCHEMA


def test_duplicate_unknown_and_invalid_schema_are_config_errors() -> None:
    reg = ToolRegistry([make_tool("a")])
    with pytest.raises(ConfigError, match="already registered"):
        reg.register(make_tool("a"))
    reg.register(make_tool("a"), replace=True)
    with pytest.raises(ConfigError, match="unknown tools \\['zzz'\\]"):
        reg.subset(["a", "zzz"])
    with pytest.raises(ToolError, match="available tools: a"):
        reg.get("zzz")
    with pytest.raises(ConfigError, match="'bad' has an invalid parameters schema: 7 is not valid"):
        reg.register(
            make_tool("bad", parameters={"type": "object", "properties": {"x": {"type": 7}}})
        )


@pytest.mark.parametrize(
    ("args", "which", "expected"),
    [
        ({}, "'query'", "required"),
        ({"query": 3}, "'query'", "string or array"),
        ({"query": "x", "k": 0}, "'k'", "integer from 1 to 10"),
        ({"query": "x", "k": "two"}, "'k'", "integer from 1 to 10"),
        ({"query": "x", "mode": "slow"}, "'mode'", 'one of "fast", "exact"'),
        ({"query": "x", "strict": "yes"}, "'strict'", "boolean"),
        ({"query": "x", "colour": "red"}, "'colour'", "no such argument"),
    ],
)
def test_validation_errors_name_the_argument_and_what_was_expected(
    args: dict[str, Any], which: str, expected: str
) -> None:
    spec = make_tool().spec
    with pytest.raises(BadInputError) as info:
        validate_args(spec, args)
    assert which in info.value.what
    assert expected in info.value.expected


def test_plain_string_fills_the_single_required_string_parameter() -> None:
    spec = make_tool().spec
    assert normalize_args(spec, "  capital of France ") == {"query": "capital of France"}
    assert normalize_args(spec, '{"query": "a", "k": 2}') == {"query": "a", "k": 2}
    assert normalize_args(spec, None) == {}
    two_required = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "required": ["a", "b"],
    }
    with pytest.raises(BadInputError):
        normalize_args(make_tool(parameters=two_required).spec, "text")
    with pytest.raises(BadInputError):
        normalize_args(spec, 42)


def test_units_follow_the_spec_and_rejected_calls_cost_nothing() -> None:
    reg = ToolRegistry([make_tool()])
    assert reg.units_for("lookup", {"query": ["a", "b", "c"]}) == 3
    assert reg.units_for("lookup", "one query") == 1
    assert reg.units_for("lookup", {"query": 5}) == 0
    assert reg.units_for("nosuch", {"query": "a"}) == 0


def test_invoke_success_passes_normalized_args_and_records_duration() -> None:
    reg = ToolRegistry([make_tool()])
    result = run(reg.invoke("lookup", "eiffel tower"))
    assert not result.is_error
    assert result.content == "got {'query': 'eiffel tower'}"
    assert result.metadata["duration_s"] >= 0


def test_every_failure_is_an_observation_with_advice() -> None:
    async def boom(_args: dict[str, Any]) -> ToolResult:
        raise RuntimeError("disk on fire")

    async def refuses(_args: dict[str, Any]) -> ToolResult:
        raise ToolError("no page at that url")

    async def wrong_type(_args: dict[str, Any]) -> Any:
        return "not a ToolResult"

    reg = ToolRegistry(
        [
            make_tool("boom", boom),
            make_tool("refuses", refuses),
            make_tool("wrong", wrong_type),
            make_tool(),
        ]
    )
    unknown = run(reg.invoke("serach", {"query": "x"}))
    assert unknown.is_error and unknown.metadata["error"] == "unknown_tool"
    assert "available tools: boom, refuses, wrong, lookup" in unknown.content

    bad = run(reg.invoke("lookup", {"query": "x", "k": 99}))
    assert bad.is_error and bad.metadata["error"] == "bad_arguments"
    assert "'k'" in bad.content and "Call it again as lookup(query:" in bad.content

    crashed = run(reg.invoke("boom", {"query": "x"}))
    assert crashed.is_error and crashed.metadata["error"] == "exception"
    assert "RuntimeError: disk on fire" in crashed.content

    refused = run(reg.invoke("refuses", {"query": "x"}))
    assert refused.is_error and refused.content == "Error: no page at that url"

    assert run(reg.invoke("wrong", {"query": "x"})).metadata["error"] == "exception"


def test_timeout_cancels_the_tool_and_tells_the_agent() -> None:
    cancelled = asyncio.Event()

    async def hangs(_args: dict[str, Any]) -> ToolResult:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    async def go() -> ToolResult:
        reg = ToolRegistry([make_tool("slow", hangs, timeout_s=0.05)])
        result = await reg.invoke("slow", {"query": "x"})
        assert cancelled.is_set()
        return result

    result = run(go())
    assert result.is_error and result.metadata["error"] == "timeout"
    assert "within 0.05 s" in result.content
