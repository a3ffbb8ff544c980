"""``@tool``: turn a typed Python function into a :class:`~orchestrator.tools.base.Tool`.

    from orchestrator.tools.define import tool

    @tool(unit="query", units="queries")
    async def lookup(queries: list[str], limit: int = 3) -> str:
        \"\"\"Look words up in the glossary.

        Args:
            queries: words to look up, one unit each.
            limit: entries per word.
        \"\"\"
        ...

The JSON schema comes from the annotations (str, int, float, bool, list[...], dict, Literal[...],
``X | None``), parameter descriptions from a Google-style ``Args:`` section or ``:param x:`` lines,
the tool description from the docstring's first paragraph. Sync functions run in a worker thread
so the registry's timeout still applies. A returned ``str`` becomes the observation; a
``ToolResult`` is passed through; anything else is JSON-encoded.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import re
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union, get_args, get_origin

from orchestrator.errors import ConfigError
from orchestrator.tools.base import Tool, ToolResult, ToolSpec, UnitsFn, one_unit

__all__ = ["schema_for_annotation", "tool"]

_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def schema_for_annotation(annotation: Any) -> dict[str, Any]:
    """JSON schema for one parameter annotation; ConfigError for a type it cannot express."""
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple):
        schema: dict[str, Any] = {"type": "array"}
        homogeneous_tuple = origin is tuple and len(args) == 2 and args[1] is Ellipsis
        if homogeneous_tuple or (args and origin is not tuple):
            schema["items"] = schema_for_annotation(args[0])
        return schema
    if origin is dict or annotation is dict:
        return {"type": "object"}
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        parts = [schema_for_annotation(a) for a in members]
        if type(None) in args:
            parts.append({"type": "null"})
        return parts[0] if len(parts) == 1 else {"anyOf": parts}
    raise ConfigError(f"cannot derive a JSON schema for annotation {annotation!r}")


_PARAM_LINE = re.compile(r"^\s*:param\s+(\w+)\s*:\s*(.+)$")
_ARG_LINE = re.compile(r"^\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) from a Google- or Sphinx-style docstring."""
    doc = inspect.cleandoc(doc or "")
    summary = doc.split("\n\n", 1)[0].replace("\n", " ").strip()
    params: dict[str, str] = {}
    in_args = False
    for line in doc.splitlines():
        sphinx = _PARAM_LINE.match(line)
        if sphinx:
            params[sphinx.group(1)] = sphinx.group(2).strip()
            continue
        if line.strip() in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
            continue
        if in_args:
            if line and not line.startswith((" ", "\t")):
                in_args = False
                continue
            match = _ARG_LINE.match(line)
            if match and len(line) - len(line.lstrip()) <= 4:
                params[match.group(1)] = match.group(2).strip()
            elif params and line.strip():
                last = list(params)[-1]
                params[last] += " " + line.strip()
    if summary.startswith(("Args:", ":param")):
        summary = ""
    return summary, params


def _units_fn(units: int | str | UnitsFn | None, param_names: list[str]) -> UnitsFn:
    if units is None:
        return one_unit
    if isinstance(units, int):
        fixed = units
        return lambda _args: fixed
    if isinstance(units, str):
        if units not in param_names:
            raise ConfigError(f"units={units!r} names no parameter; parameters: {param_names}")
        key = units

        def count(args: dict[str, Any]) -> int:
            value = args.get(key)
            return len(value) if isinstance(value, list) else (0 if value is None else 1)

        return count
    return units


def _to_result(value: Any) -> ToolResult:
    if isinstance(value, ToolResult):
        return value
    if isinstance(value, str):
        return ToolResult(content=value)
    return ToolResult(content=json.dumps(value, default=str))


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    unit: str = "call",
    units: int | str | UnitsFn | None = None,
    timeout_s: float = 30.0,
) -> Any:
    """Build a Tool from a function (usable bare, ``@tool``, or with options, ``@tool(...)``).

    name: the tool's name (default: the function's name).
    description: shown to the agent (default: the docstring's first paragraph).
    unit: the unit of account the budget counts in.
    units: cost of one call: a fixed int, the name of a parameter (one unit per list item, or
        one for a scalar), or a function of the argument dict. Default: one unit per call.
    timeout_s: wall-clock limit of one call.
    """

    def build(func: Callable[..., Any]) -> Tool:
        signature = inspect.signature(func)
        hints = typing.get_type_hints(func)
        summary, param_docs = _parse_docstring(func.__doc__ or "")
        properties: dict[str, Any] = {}
        required: list[str] = []
        for pname, param in signature.parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ConfigError(f"tool {func.__name__}: *args/**kwargs cannot be described")
            schema = schema_for_annotation(hints.get(pname, param.annotation))
            if pname in param_docs:
                schema["description"] = param_docs[pname]
            if param.default is inspect.Parameter.empty:
                required.append(pname)
            else:
                schema["default"] = param.default
            properties[pname] = schema
        parameters = {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }
        spec = ToolSpec(
            name=name or func.__name__,
            description=description or summary or func.__name__,
            parameters=parameters,
            unit=unit,
            units=_units_fn(units, list(properties)),
            timeout_s=timeout_s,
        )
        if inspect.iscoroutinefunction(func):

            async def call(args: dict[str, Any]) -> ToolResult:
                return _to_result(await func(**args))

        else:

            async def call(args: dict[str, Any]) -> ToolResult:
                return _to_result(await asyncio.to_thread(functools.partial(func, **args)))

        return Tool(spec=spec, fn=call)

    return build(fn) if fn is not None else build
