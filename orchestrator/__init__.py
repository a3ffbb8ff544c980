"""QuotaFlow's public SDK.

    from orchestrator import Runtime, Settings, Workflow, register_workflow, tool

Names are imported on first use so ``import orchestrator`` stays fast and needs no model stack.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("quotaflow")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "BudgetExhausted",
    "Message",
    "QuotaFlowError",
    "RunResult",
    "Runtime",
    "SamplingOptions",
    "Settings",
    "ToolRegistry",
    "ToolResult",
    "Workflow",
    "register_workflow",
    "run_report",
    "tool",
]

_EXPORTS = {
    "Runtime": ("orchestrator.runtime", "Runtime"),
    "RunResult": ("orchestrator.runtime", "RunResult"),
    "Settings": ("orchestrator.settings", "Settings"),
    "Workflow": ("orchestrator.workflow", "Workflow"),
    "register_workflow": ("orchestrator.workflow", "register"),
    "tool": ("orchestrator.tools.define", "tool"),
    "ToolRegistry": ("orchestrator.tools.registry", "ToolRegistry"),
    "ToolResult": ("orchestrator.tools.base", "ToolResult"),
    "Message": ("orchestrator.types", "Message"),
    "SamplingOptions": ("orchestrator.types", "SamplingOptions"),
    "run_report": ("orchestrator.reports", "run_report"),
    "QuotaFlowError": ("orchestrator.errors", "QuotaFlowError"),
    "BudgetExhausted": ("orchestrator.errors", "BudgetExhausted"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
