"""``--workflow-module pkg.mod``: a user's workflows for ``quotaflow run`` and ``resume``, besides
those of the ``quotaflow.workflows`` entry-point group."""

from __future__ import annotations

import importlib
from typing import Any

from cli.app import ErrorsAsOneLine
from orchestrator.errors import BadInputError

OPTION = "--workflow-module"


def import_workflow_modules(modules: list[str] | None) -> None:
    """Import each module and register the Workflow objects it defines at module level (it may
    also call ``orchestrator.register`` itself)."""
    from orchestrator.workflow import Workflow, register

    for name in modules or []:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # any failure of a user's import is bad input
            raise BadInputError(f"{OPTION} {name}", "an importable module", f"{type(exc).__name__}: {exc}") from exc
        for value in vars(module).values():
            if isinstance(value, Workflow):
                register(value)


def modules_in(args: list[str]) -> list[str]:
    """The ``--workflow-module`` values among a command line's arguments."""
    found: list[str] = []
    for i, arg in enumerate(args):
        if arg == OPTION and i + 1 < len(args):
            found.append(args[i + 1])
        elif arg.startswith(OPTION + "="):
            found.append(arg.split("=", 1)[1])
    return found


class RunGroup(ErrorsAsOneLine):
    """``quotaflow run``: its own commands, and an agent command for any other registered workflow
    (an entry point, or one a ``--workflow-module`` defines: imported before the lookup)."""

    agent_command: Any = None
    """Makes the click command of ``quotaflow run NAME`` for a workflow without a command of its own."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        import_workflow_modules(modules_in(args[1:]))
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None or self.agent_command is None:
            return command
        from orchestrator import workflow

        if cmd_name not in workflow.names():
            return None
        return self.agent_command(cmd_name)
