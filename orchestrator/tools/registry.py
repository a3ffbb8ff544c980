"""The tool registry: lookup by name, argument validation, units of account, safe invocation.

Every failure of a tool call (unknown tool, arguments that do not match the schema, an exception
inside the tool, a timeout) comes back from :meth:`ToolRegistry.invoke` as a
:class:`~orchestrator.tools.base.ToolResult` with ``is_error=True`` and a message that tells the
agent what to do next; nothing is raised into the workflow.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from orchestrator.errors import BadInputError, ConfigError, ToolError
from orchestrator.tools.base import Tool, ToolResult, ToolSpec

if TYPE_CHECKING:
    import jsonschema

__all__ = [
    "ToolRegistry",
    "describe_parameters",
    "describe_schema",
    "normalize_args",
    "validate_args",
]


def _accepts_string(schema: dict[str, Any]) -> bool:
    """Whether a parameter schema admits a plain string (directly or through anyOf/oneOf)."""
    kind = schema.get("type")
    if kind == "string" or (isinstance(kind, list) and "string" in kind):
        return True
    return any(_accepts_string(s) for s in schema.get("anyOf", []) + schema.get("oneOf", []))


def _sole_string_parameter(spec: ToolSpec) -> str | None:
    """The name of the tool's only required parameter when that parameter accepts a string."""
    required = spec.parameters.get("required", [])
    if len(required) != 1:
        return None
    name = required[0]
    prop = spec.parameters.get("properties", {}).get(name, {})
    return name if _accepts_string(prop) else None


def normalize_args(spec: ToolSpec, raw: Any) -> dict[str, Any]:
    """Turn what an agent wrote into an argument object, before validation.

    Accepts a dict, ``None`` (no arguments), a JSON object in a string, or, when the tool has
    exactly one required parameter that accepts a string, a plain string for that parameter
    (small models write ``search: some query``). Raises BadInputError otherwise.
    """
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                return parsed
        sole = _sole_string_parameter(spec)
        if sole is not None:
            return {sole: text}
    raise BadInputError(
        f"arguments of tool {spec.name!r}",
        "a JSON object of named arguments",
        f"got {type(raw).__name__} {str(raw)[:80]!r}",
    )


def describe_schema(schema: dict[str, Any]) -> str:
    """A short English description of a parameter schema ("integer from 1 to 20")."""
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(describe_schema(s) for s in schema[key])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(describe_schema({**schema, "type": k}) for k in kind)
    if kind == "string":
        return "non-empty string" if schema.get("minLength", 0) >= 1 else "string"
    if kind in ("integer", "number"):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            return f"{kind} from {low} to {high}"
        if low is not None:
            return f"{kind} of at least {low}"
        return f"{kind} of at most {high}" if high is not None else str(kind)
    if kind == "array":
        text = "non-empty array" if schema.get("minItems", 0) >= 1 else "array"
        items = schema.get("items")
        return f"{text} of ({describe_schema(items)})" if isinstance(items, dict) else text
    return str(kind) if kind else "any value"


def describe_parameters(spec: ToolSpec) -> str:
    """``name(arg: kind, required; ...)``: the call signature in words, for error messages."""
    required = set(spec.parameters.get("required", []))
    parts = [
        f"{name}: {describe_schema(schema)}" + (", required" if name in required else "")
        for name, schema in spec.parameters.get("properties", {}).items()
    ]
    return f"{spec.name}({'; '.join(parts)})"


def _describe_error(error: jsonschema.ValidationError, spec: ToolSpec) -> tuple[str, str]:
    """(which argument, what was expected) for one schema violation."""
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"argument {missing!r}", "a value (it is required)"
    if error.validator == "additionalProperties":
        allowed = set(spec.parameters.get("properties", {}))
        extra = sorted(set(error.instance) - allowed) if isinstance(error.instance, dict) else []
        return (
            f"argument {', '.join(map(repr, extra)) or '?'}",
            f"no such argument (allowed: {', '.join(sorted(allowed)) or 'none'})",
        )
    path = ".".join(str(p) for p in error.absolute_path)
    what = f"argument {path!r}" if path else "arguments"
    schema = error.schema if isinstance(error.schema, dict) else {}
    return what, f"{describe_schema(schema)}; got {json.dumps(error.instance)[:80]}"


def _validator_class(schema: dict[str, Any]) -> Any:
    # jsonschema takes ~0.1 s to import; only code that validates pays for it.
    import jsonschema

    return jsonschema.validators.validator_for(schema)


def validate_args(spec: ToolSpec, args: dict[str, Any]) -> None:
    """Check ``args`` against the tool's JSON schema; raise BadInputError naming the argument."""
    validator = _validator_class(spec.parameters)(spec.parameters)
    errors = sorted(validator.iter_errors(args), key=lambda e: list(e.absolute_path))
    if errors:
        what, expected = _describe_error(errors[0], spec)
        raise BadInputError(f"tool {spec.name!r} {what}", expected)


class ToolRegistry:
    """A named set of tools. Registration order is kept (it is the order agents see)."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.register(t)

    def register(self, tool: Tool, *, replace: bool = False) -> Tool:
        """Add ``tool``; a second tool with the same name is a ConfigError unless ``replace``."""
        if tool.name in self._tools and not replace:
            raise ConfigError(
                f"a tool named {tool.name!r} is already registered; pass replace=True"
            )
        import jsonschema

        try:
            _validator_class(tool.spec.parameters).check_schema(tool.spec.parameters)
        except jsonschema.SchemaError as exc:
            raise ConfigError(
                f"tool {tool.name!r} has an invalid parameters schema: {exc.message}"
            ) from None
        self._tools[tool.name] = tool
        return tool

    def get(self, name: str) -> Tool:
        """The tool called ``name``; ToolError (listing the known names) when there is none."""
        try:
            return self._tools[name]
        except KeyError:
            raise ToolError(
                f"unknown tool {name!r}; available tools: {', '.join(self._tools) or '(none)'}"
            ) from None

    def names(self) -> list[str]:
        return list(self._tools)

    def specs(self) -> list[ToolSpec]:
        return [t.spec for t in self._tools.values()]

    def subset(self, names: Iterable[str]) -> ToolRegistry:
        """A registry holding only ``names`` (in that order); ConfigError for an unknown name."""
        wanted = list(names)
        unknown = [n for n in wanted if n not in self._tools]
        if unknown:
            raise ConfigError(
                f"unknown tools {unknown}; available tools: {', '.join(self._tools) or '(none)'}"
            )
        return ToolRegistry(self._tools[n] for n in wanted)

    def as_openai_tools(self) -> list[dict[str, Any]]:
        """The specs in the OpenAI chat-completions ``tools`` format."""
        return [
            {
                "type": "function",
                "function": {
                    "name": s.name,
                    "description": s.description,
                    "parameters": s.parameters,
                },
            }
            for s in self.specs()
        ]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def prepare(self, name: str, raw_args: Any) -> tuple[Tool, dict[str, Any]]:
        """Look the tool up, normalize and validate the arguments; raise ToolError/BadInputError."""
        tool = self.get(name)
        args = normalize_args(tool.spec, raw_args)
        validate_args(tool.spec, args)
        return tool, args

    def units_for(self, name: str, raw_args: Any) -> int:
        """Units of account one call costs. A call that :meth:`invoke` would reject (unknown tool,
        invalid arguments) costs 0: the agent is not charged for a malformed call."""
        try:
            tool, args = self.prepare(name, raw_args)
        except (ToolError, BadInputError):
            return 0
        return max(int(tool.spec.units(args)), 0)

    async def invoke(self, name: str, raw_args: Any) -> ToolResult:
        """Run one call under the tool's timeout. Failures come back as error observations with
        ``metadata["error"]`` in {unknown_tool, bad_arguments, timeout, tool_error, exception}."""
        started = time.perf_counter()

        def failed(kind: str, message: str) -> ToolResult:
            return ToolResult(
                content=message,
                is_error=True,
                metadata={"error": kind, "duration_s": time.perf_counter() - started},
            )

        try:
            tool = self.get(name)
        except ToolError as exc:
            return failed("unknown_tool", f"Error: {exc}. Call one of the available tools.")
        try:
            _, args = self.prepare(name, raw_args)
        except BadInputError as exc:
            return failed(
                "bad_arguments",
                f"Error: {exc}. Call it again as {describe_parameters(tool.spec)}.",
            )
        try:
            result = await asyncio.wait_for(tool.fn(args), timeout=tool.spec.timeout_s)
        except TimeoutError:
            return failed(
                "timeout",
                f"Error: tool {name} did not answer within {tool.spec.timeout_s:g} s. "
                "Try a simpler request or another tool.",
            )
        except ToolError as exc:
            return failed("tool_error", f"Error: {exc}")
        except Exception as exc:
            return failed(
                "exception",
                f"Error: tool {name} failed ({type(exc).__name__}: {exc}). "
                "Change the arguments or use another tool.",
            )
        if not isinstance(result, ToolResult):
            return failed(
                "exception",
                f"Error: tool {name} returned {type(result).__name__}, not a ToolResult.",
            )
        metadata = {**result.metadata, "duration_s": time.perf_counter() - started}
        return ToolResult(content=result.content, is_error=result.is_error, metadata=metadata)
