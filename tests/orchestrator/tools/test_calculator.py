"""calculator: arithmetic only, bounded results, errors as observations."""

from __future__ import annotations

import asyncio
import math

import pytest

from orchestrator.errors import ToolError
from orchestrator.tools.calculator import calculator_tool, evaluate
from orchestrator.tools.registry import ToolRegistry


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("(17 * 3 + 2) / 5", 10.6),
        ("2^10", 1024),
        ("2**-1", 0.5),
        ("7 // 2 + 7 % 2", 4),
        ("-(3 - 5)", 2),
        ("sqrt(16) + log10(1000)", 7.0),
        ("round(pi, 3)", 3.142),
        ("max(1, 5, 3) - min(4, 2)", 3),
        ("factorial(5) / comb(5, 2)", 12.0),
        ("6 × 7 ÷ 2", 21.0),
        ("pow(2, 8)", 256),
    ],
)
def test_arithmetic(expression: str, value: float) -> None:
    assert evaluate(expression) == pytest.approx(value)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('true')", "only these functions are allowed"),
        ("(1).__class__", "Attribute is not allowed"),
        ("open('/etc/passwd')", "only these functions are allowed"),
        ("x + 1", "unknown name 'x'"),
        ("[1, 2][0]", "is not allowed"),
        ("(lambda: 1)()", "only these functions are allowed"),
        ("'a' * 3", "only numbers"),
        ("True + 1", "only numbers"),
        ("max(1, 2, key=abs)", "positional arguments only"),
        ("9**9**9", "too large"),
        ("2**4095 * 2**4095", "too large"),
        ("factorial(10**6)", "from 0 to 500"),
        ("round(5, -10**100)", "from -100 to 100"),
        ("1/0", "division by zero"),
        ("log(-1)", "math domain error"),
        ("(-8) ** 0.5", "complex"),
        ("-" * 1900 + "1", "nested too deeply"),
        ("", "empty expression"),
        ("1 +", "not an arithmetic expression"),
    ],
)
def test_unsafe_or_invalid_expressions_are_refused(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message.replace("(", "\\(").replace("*", "\\*")):
        evaluate(expression)


def test_calculator_tool_one_unit_and_error_observation() -> None:
    reg = ToolRegistry([calculator_tool()])
    assert reg.units_for("calculator", "1 + 1") == 1
    ok = asyncio.run(reg.invoke("calculator", "sqrt(2) ** 2"))
    assert not ok.is_error and math.isclose(float(ok.content), 2.0)
    assert asyncio.run(reg.invoke("calculator", {"expression": "6 * 7.0"})).content == "42"
    bad = asyncio.run(reg.invoke("calculator", "import os"))
    assert bad.is_error and bad.content.startswith("Error: not an arithmetic expression")
