"""Built-in workflows and the registry users add their own to."""

from __future__ import annotations

import importlib

from orchestrator.errors import UnknownWorkflow
from workflows.base import Workflow

__all__ = ["Workflow", "get", "names", "register"]

_REGISTRY: dict[str, Workflow] = {}
# Built-ins are imported on first lookup so `quotaflow --help` stays fast.
_BUILTIN_MODULES = {
    "react": "workflows.react",
    "bats": "workflows.bats",
    "tracker": "workflows.baselines",
    "forcing": "workflows.baselines",
    "parallel": "workflows.baselines",
    "priordynaflow": "workflows.priordynaflow",
    "batchprompt": "workflows.batchprompt",
    "drqa": "workflows.drqa",
}


def register(workflow: Workflow) -> Workflow:
    """Make ``workflow`` available to the runtime and the CLI under its name."""
    _REGISTRY[workflow.name] = workflow
    return workflow


def get(name: str) -> Workflow:
    if name not in _REGISTRY and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownWorkflow(name, names()) from None


def names() -> list[str]:
    return sorted(set(_REGISTRY) | set(_BUILTIN_MODULES))
