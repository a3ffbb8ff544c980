"""The package layering holds: no import cycle among QuotaFlow's packages, each imports only the
layers below it, and a method's package never reaches into another method's package.

    budget  <-  orchestrator  <-  workflows  <-  cli        serving_patch: imports none of them

(``budget`` is the bottom: the runtime in ``orchestrator`` enforces budgets with its ledger, so
the ledger cannot depend on the runtime.) Every import counts, including those inside functions
and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestrator", "budget", "workflows", "serving_patch", "cli")
ALLOWED = {
    "budget": set(),
    "serving_patch": set(),
    "orchestrator": {"budget", "serving_patch"},
    "workflows": {"orchestrator", "budget"},
    "cli": {"orchestrator", "budget", "workflows", "serving_patch"},
}
# A method's package may use the shared modules of ``workflows`` and its own; baselines are BATS's.
SHARED_WORKFLOW_MODULES = {"answers"}
METHOD_EXCEPTIONS = {("baselines", "bats")}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _package_edges() -> dict[str, dict[str, list[str]]]:
    edges: dict[str, dict[str, list[str]]] = {p: {} for p in PACKAGES}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for name in _imports(path):
                top = name.split(".")[0]
                if top in PACKAGES and top != pkg:
                    edges[pkg].setdefault(top, []).append(f"{path.relative_to(ROOT)}: {name}")
    return edges


def test_no_package_import_cycle():
    edges = {pkg: set(targets) for pkg, targets in _package_edges().items()}
    state: dict[str, str] = {}

    def visit(pkg: str, trail: list[str]) -> None:
        state[pkg] = "open"
        for nxt in sorted(edges[pkg]):
            assert state.get(nxt) != "open", f"import cycle: {' -> '.join([*trail, pkg, nxt])}"
            if nxt not in state:
                visit(nxt, [*trail, pkg])
        state[pkg] = "done"

    for pkg in PACKAGES:
        if pkg not in state:
            visit(pkg, [])


@pytest.mark.parametrize("pkg", PACKAGES)
def test_each_package_imports_only_the_layers_below(pkg):
    wrong = {target: where for target, where in _package_edges()[pkg].items() if target not in ALLOWED[pkg]}
    assert not wrong, f"{pkg} must not import {sorted(wrong)}: " + "; ".join(w[0] for w in wrong.values())


def test_methods_do_not_import_each_other():
    problems = []
    for method_dir in sorted(p for p in (ROOT / "workflows").iterdir() if (p / "__init__.py").exists()):
        method = method_dir.name
        for path in sorted(method_dir.rglob("*.py")):
            for name in _imports(path):
                parts = name.split(".")
                if parts[0] != "workflows" or len(parts) < 2:
                    continue
                other = parts[1]
                if other in (method, *SHARED_WORKFLOW_MODULES) or (method, other) in METHOD_EXCEPTIONS:
                    continue
                if (ROOT / "workflows" / other).is_dir():
                    problems.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not problems, "\n".join(problems)
