"""The ``calculator`` tool: arithmetic on a parsed syntax tree, never ``eval``.

Allowed: numbers, + - * / // % ** (and ``^`` as a power, as people write it), unary signs,
parentheses, the constants pi, e, tau, inf, and a whitelist of functions (math's plus abs, round,
min, max, pow). Names, attributes, subscripts, comprehensions, lambdas and any other call are refused.
Results are bounded so that ``9**9**9`` or ``factorial(10**6)`` is refused instead of hanging.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from orchestrator.errors import ToolError
from orchestrator.tools.base import Tool, ToolResult, ToolSpec

__all__ = ["calculator_tool", "evaluate"]

MAX_INT_BITS = 4096
"""Largest integer (in bits) an operand or a result may have."""
MAX_FACTORIAL = 500
"""Largest argument of factorial, comb and perm (their results grow too fast beyond it)."""

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf}


def _bounded(fn: Callable[..., int]) -> Callable[..., int]:
    def call(*args: Any) -> int:
        if any(not isinstance(a, int) or a < 0 or a > MAX_FACTORIAL for a in args):
            raise ToolError(f"{fn.__name__} takes integers from 0 to {MAX_FACTORIAL}")
        return fn(*args)

    return call


def _power(base: Any, exponent: Any) -> Any:
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent > 0
        and abs(base) > 1
        and exponent * math.log2(abs(base)) > MAX_INT_BITS
    ):
        raise ToolError(f"result too large (more than {MAX_INT_BITS} bits)")
    return base**exponent


def _round(value: Any, ndigits: Any = None) -> Any:
    # round(5, -10**100) would build 10**(10**100); bound the digits.
    if ndigits is not None and (not isinstance(ndigits, int) or abs(ndigits) > 100):
        raise ToolError("round's second argument must be an integer from -100 to 100")
    return round(value, ndigits)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    **{
        name: getattr(math, name)
        for name in (
            "sqrt",
            "exp",
            "log",
            "log2",
            "log10",
            "sin",
            "cos",
            "tan",
            "asin",
            "acos",
            "atan",
            "atan2",
            "sinh",
            "cosh",
            "tanh",
            "degrees",
            "radians",
            "floor",
            "ceil",
            "hypot",
            "gcd",
            "lcm",
            "isqrt",
            "fabs",
        )
    },
    **{name: _bounded(getattr(math, name)) for name in ("factorial", "comb", "perm")},
    "abs": abs,
    "round": _round,
    "pow": _power,
    "min": min,
    "max": max,
}


def _check_size(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError(f"result too large (more than {MAX_INT_BITS} bits)")
    if isinstance(value, complex):
        raise ToolError("the result is a complex number; only real arithmetic is supported")
    return value


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ToolError(f"only numbers are allowed, not {node.value!r}")
        return _check_size(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            return _check_size(_power(left, right))
        return _check_size(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise ToolError(f"unknown name {node.id!r}; constants: {', '.join(_CONSTANTS)}")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            raise ToolError(f"only these functions are allowed: {', '.join(sorted(_FUNCTIONS))}")
        if node.keywords:
            raise ToolError("functions take positional arguments only")
        return _check_size(_FUNCTIONS[node.func.id](*(_eval(a) for a in node.args)))
    raise ToolError(f"{type(node).__name__} is not allowed in an arithmetic expression")


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression; ToolError saying what is wrong otherwise."""
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not text:
        raise ToolError("empty expression; write e.g. (3 + 4) * 2")
    if len(text) > 2000:
        raise ToolError("expression longer than 2000 characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not an arithmetic expression: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ToolError("expression nested too deeply") from None
    try:
        return _eval(tree)
    except ToolError:
        raise
    except RecursionError:
        raise ToolError("expression nested too deeply") from None
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise ToolError(f"cannot compute {expression!r}: {exc}") from None


def _format(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def calculator_tool() -> Tool:
    """``calculator``: evaluates one arithmetic expression (one unit per call)."""

    async def call(args: dict[str, Any]) -> ToolResult:
        value = evaluate(args["expression"])
        return ToolResult(content=_format(value), metadata={"value": value})

    spec = ToolSpec(
        name="calculator",
        description="Evaluate an arithmetic expression, e.g. (17 * 3 + 2) / 5 or sqrt(2) * pi.",
        parameters={
            "type": "object",
            "properties": {
                "expression": {"type": "string", "description": "the expression to evaluate"}
            },
            "required": ["expression"],
            "additionalProperties": False,
        },
        unit="call",
        timeout_s=5.0,
    )
    return Tool(spec=spec, fn=call)
