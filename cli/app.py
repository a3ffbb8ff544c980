"""The Typer app factory every ``quotaflow`` command group is made with: one error path; and
the progress bar the commands' long work shows."""

from __future__ import annotations

import traceback
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from orchestrator.errors import QuotaFlowError


def _one_line(ctx: Any, exc: QuotaFlowError) -> typer.Exit:
    if (ctx.find_root().obj or {}).get("verbose"):
        traceback.print_exc()
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(exc.exit_code)


class ErrorsAsOneLine(TyperGroup):
    """A QuotaFlowError from any command is one line on stderr and the error's exit code (2 bad
    input, 3 budget exhausted, 4 engine unavailable); ``quotaflow --verbose`` adds the traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer.core.TyperGroup.invoke takes its vendored click Context
        try:
            return super().invoke(ctx)
        except QuotaFlowError as exc:
            raise _one_line(ctx, exc) from None


class CommandErrorsAsOneLine(TyperCommand):
    """The same error path for an app of one command (Typer runs it without a group)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except QuotaFlowError as exc:
            raise _one_line(ctx, exc) from None


def command_group(**kwargs: Any) -> typer.Typer:
    """A ``typer.Typer`` with QuotaFlow's error path (``cls`` may name a subclass of
    ErrorsAsOneLine) and no rich tracebacks."""
    kwargs.setdefault("cls", ErrorsAsOneLine)
    return typer.Typer(pretty_exceptions_enable=False, **kwargs)


def progress_bar(*, transient: bool = False) -> Any:
    """A rich progress display: description, bar, done/total, time elapsed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=transient)
