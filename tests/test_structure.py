"""Size limits that keep the runtime thin and the methods readable: the runtime module stays a
facade, and no function in the core, the budget layer or a workflow grows past a screen."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80
MAX_RUNTIME_LINES = 350


def test_runtime_module_stays_thin():
    lines = len((ROOT / "orchestrator" / "runtime.py").read_text(encoding="utf-8").splitlines())
    assert lines < MAX_RUNTIME_LINES, f"orchestrator/runtime.py has {lines} lines"


def test_no_function_longer_than_a_screen():
    long = []
    for pkg in ("orchestrator", "budget", "workflows"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    n = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                    if n > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "\n".join(long)
