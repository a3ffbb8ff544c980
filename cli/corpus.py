"""``quotaflow corpus``: build the offline search corpus the ``search``/``browse`` tools read.

Registered by cli/main.py as ``app.add_typer(corpus.app, name="corpus")``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.app import command_group
from orchestrator.errors import BadInputError

app = command_group(help="Offline document corpus (SQLite FTS5, BM25).", no_args_is_help=True)

_MAX_PROBLEMS_SHOWN = 10


@app.callback()
def corpus() -> None:
    """Offline document corpus (SQLite FTS5, BM25)."""


@app.command()
def build(
    hotpotqa: Annotated[
        list[Path] | None,
        typer.Option(
            "--hotpotqa", help="HotpotQA jsonl (its context paragraphs become documents)."
        ),
    ] = None,
    jsonl: Annotated[
        list[Path] | None,
        typer.Option("--jsonl", help='jsonl of documents: {"title", "text"[, "url"]} per line.'),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Database to write (default: the corpus path of the settings)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Build (or replace) a corpus from HotpotQA files and jsonl document files."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    from orchestrator.tools.corpus import CorpusSource, build_corpus

    sources = [CorpusSource(p, "hotpotqa") for p in hotpotqa or []]
    sources += [CorpusSource(p, "documents") for p in jsonl or []]
    err = Console(stderr=True)
    if not sources:
        raise BadInputError("sources", "at least one --hotpotqa PATH or --jsonl PATH")
    for source in sources:
        if not source.path.is_file():
            raise BadInputError(
                f"--{source.kind.replace('documents', 'jsonl')} {source.path}",
                "an existing jsonl file",
            )
    if out is None:
        from orchestrator.settings import Settings

        out = Settings.from_env().corpus_path
        assert out is not None
    total = sum(s.path.stat().st_size for s in sources)
    with Progress(
        TextColumn("building corpus"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=as_json,
    ) as progress:
        task = progress.add_task("build", total=total)
        report = build_corpus(out, sources, on_progress=lambda n: progress.advance(task, n))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "db_path": str(report.db_path),
                    "num_docs": report.num_docs,
                    "num_duplicates": report.num_duplicates,
                    "num_malformed": report.num_malformed,
                    "problems": report.problems,
                },
                indent=2,
            )
        )
        return
    for problem in report.problems[:_MAX_PROBLEMS_SHOWN]:
        err.print(f"[yellow]skipped[/yellow] {problem}", markup=True, highlight=False)
    if report.num_malformed > _MAX_PROBLEMS_SHOWN:
        err.print(f"... and {report.num_malformed - _MAX_PROBLEMS_SHOWN} more malformed lines")
    typer.echo(
        f"{report.num_docs} documents in {report.db_path} "
        f"({report.num_duplicates} duplicates and {report.num_malformed} malformed lines skipped)"
    )
