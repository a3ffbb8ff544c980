"""``quotaflow qtable``: inspect, export, freeze and reset PriorDynaFlow's stored Q-tables.

Registered by cli/main.py as ``app.add_typer(qtable.app, name="qtable")``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.app import command_group

if TYPE_CHECKING:
    from workflows.priordynaflow.persistence import QTableRepository, StoredTable

app = command_group(help="PriorDynaFlow Q-tables (one versioned table per task family).", no_args_is_help=True)

DbOpt = Annotated[str | None, typer.Option(
    "--db", help="Database URL (default: QUOTAFLOW_DB_URL, else quotaflow.db in QUOTAFLOW_HOME or "
                 "~/.local/share/quotaflow)")]
VersionOpt = Annotated[int | None, typer.Option("--version", "-v", help="A stored version (default: the newest).")]


def _with_repo(db: str | None, fn: Any) -> Any:
    """Run ``fn(repo)`` in one committed transaction on the configured database."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from orchestrator.settings import Settings
    from orchestrator.store.db import Store
    from workflows.priordynaflow.persistence import QTableRepository

    store = Store(Settings.from_env(db_url=db).db_url)
    store.upgrade()
    engine = create_engine(store.sync_url)
    try:
        with Session(engine) as session, session.begin():
            return fn(QTableRepository(session))
    finally:
        engine.dispose()


def _render(stored: StoredTable) -> None:
    from rich.console import Console
    from rich.table import Table

    t = stored.table
    grid = Table(title=f"{stored.family} v{stored.version}{' (frozen)' if stored.frozen else ''}")
    grid.add_column("state \\ next")
    for action in t.actions:
        grid.add_column(action, justify="right")
    grid.add_column("success", justify="right")
    for state in t.agents:
        rate = f"{t.successes.get(state, 0)}/{t.trials.get(state, 0)}"
        grid.add_row(state, *(f"{t.value(state, a):.2f}" for a in t.actions), rate)
    console = Console()
    console.print(grid)
    console.print(f"episodes {t.num_episodes}, learned agent steps {t.num_steps}, epsilon {t.epsilon:.3f}, "
                  f"saved {stored.created_at}")


@app.command()
def show(
    family: Annotated[str | None, typer.Argument(help="Task family (omit to list families).")] = None,
    version: VersionOpt = None,
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List stored families, or show one family's table."""

    def go(repo: QTableRepository) -> None:
        if family is None:
            rows = repo.families()
            if as_json:
                typer.echo(json.dumps([{"family": f, "version": v, "num_versions": n} for f, v, n in rows]))
            elif not rows:
                typer.echo("no Q-tables stored yet: train with `quotaflow run priordynaflow ...`")
            for f, v, n in [] if as_json else rows:
                typer.echo(f"{f}\tversion {v}\t({n} versions)")
            return
        stored = repo.load_latest(family, version)
        if stored is None:
            which = f"no stored table for family {family!r}" + (f" version {version}" if version else "")
            raise typer.BadParameter(which)
        if as_json:
            typer.echo(json.dumps(stored.export(), indent=2))
        else:
            _render(stored)

    _with_repo(db, go)


@app.command()
def export(
    family: Annotated[str, typer.Argument(help="Task family.")],
    version: VersionOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    db: DbOpt = None,
) -> None:
    """Export one version of a family's table as JSON."""
    data = _with_repo(db, lambda repo: repo.export(family, version))
    if data is None:
        raise typer.BadParameter(f"no stored table for family {family!r}")
    text = json.dumps(data, indent=2)
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text + "\n")
        typer.echo(f"wrote {family} v{data['version']} to {output}")


@app.command()
def reset(
    family: Annotated[str, typer.Argument(help="Task family.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    db: DbOpt = None,
) -> None:
    """Delete every stored version of a family's table (its next run starts cold)."""
    if not yes:
        typer.confirm(f"delete every stored version of {family!r}?", abort=True)
    num = _with_repo(db, lambda repo: repo.reset(family))
    typer.echo(f"deleted {num} version(s) of {family}")


@app.command()
def freeze(
    family: Annotated[str, typer.Argument(help="Task family.")],
    off: Annotated[bool, typer.Option("--off", help="Unfreeze instead.")] = False,
    db: DbOpt = None,
) -> None:
    """Freeze the newest version (runs route with it but never update it), or unfreeze it."""
    version = _with_repo(db, lambda repo: repo.freeze(family, not off))
    if version is None:
        raise typer.BadParameter(f"no stored table for family {family!r}")
    typer.echo(f"{family} v{version} {'unfrozen' if off else 'frozen'}")
