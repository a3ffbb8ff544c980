"""``quotaflow run batchprompt``: classify a jsonl dataset with BatchPrompt (BPE, SEAS).

Examples::

    quotaflow run batchprompt --dataset reviews.jsonl --task sentiment.toml --batch-size 16 --rounds 3 --seas
    quotaflow run batchprompt --task boolq --data-dir ../shared/data --backend openai \\
        --base-url http://localhost:8000/v1 --model Qwen/Qwen2.5-Coder-0.5B-Instruct

:func:`run_batchprompt_job` is the same for code: plain arguments in, the run's result out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.app import CommandErrorsAsOneLine, command_group
from cli.options import backend_options, parse_set
from orchestrator.errors import BadInputError

if TYPE_CHECKING:
    from orchestrator.runtime import RunResult, Runtime

__all__ = ["app", "batchprompt_command", "build_task_payload", "run_batchprompt_job"]

app = command_group(help="BatchPrompt: many items per LLM call, with voting rounds and SEAS.", no_args_is_help=True)


def build_task_payload(
    *,
    task: str,
    dataset: Path | None = None,
    data_dir: Path | None = None,
    subset: bool = True,
    limit: int | None = None,
    batch_size: int = 16,
    rounds: int = 1,
    seas: bool = False,
    voting: str = "majority",
    confident_weight: float = 1.0,
    unsure_weight: float = 0.2,
    seed: int = 0,
    concurrency: int = 16,
    context_window: int = 8192,
    seas_rule: str = "confident",
    reask_singles: str = "unvoted",
) -> dict[str, Any]:
    """The workflow's task payload; the spec is resolved here so a bad one fails before the run."""
    from workflows.batchprompt.tasks import BUILTIN_TASKS, load_task

    spec = load_task(task)
    if dataset is None and (data_dir is None or task.lower() not in BUILTIN_TASKS):
        raise BadInputError("--dataset", "a jsonl file (or --data-dir DIR with a built-in task: boolq, rte, qqp)")
    if rounds < 1 or rounds % 2 == 0:
        raise BadInputError("--rounds", "a positive odd number (1, 3, 5, ...)", str(rounds))
    if voting not in ("majority", "weighted"):
        raise BadInputError("--voting", "majority or weighted", voting)
    if seas_rule not in ("confident", "agree"):
        raise BadInputError("--seas-rule", "confident or agree", seas_rule)
    if reask_singles not in ("always", "unvoted", "never"):
        raise BadInputError("--reask-singles", "always, unvoted or never", reask_singles)
    if dataset is not None and not dataset.is_file():
        raise BadInputError(f"--dataset {dataset}", "an existing jsonl file")
    payload: dict[str, Any] = {
        "task": task.lower() if task.lower() in BUILTIN_TASKS else dataclasses.asdict(spec),
        "batch_size": batch_size,
        "rounds": rounds,
        "seas": seas,
        "voting": voting,
        "confident_weight": confident_weight,
        "unsure_weight": unsure_weight,
        "seed": seed,
        "max_concurrency": concurrency,
        "context_window": context_window,
        "seas_rule": seas_rule,
        "reask_singles": reask_singles,
    }
    if limit is not None:
        payload["limit"] = limit
    if dataset is not None:
        payload["dataset"] = str(dataset)
    else:
        payload["data_dir"] = str(data_dir)
        payload["subset"] = subset
    return payload


async def run_batchprompt_job(
    payload: dict[str, Any],
    *,
    backend: str = "local",
    backend_options: dict[str, Any] | None = None,
    budget: str = "",
    runtime: Runtime | None = None,
    db: str | None = None,
) -> RunResult:
    """Run the ``batchprompt`` workflow once (through the runtime: ledger, store, checkpoints)."""
    from orchestrator.runtime import Runtime
    from orchestrator.settings import Settings

    own = runtime is None
    rt = runtime or Runtime(Settings.from_env(db_url=db))
    try:
        return await rt.run("batchprompt", payload, budget=budget or None, backend=backend,
                            backend_options=backend_options or {})
    finally:
        if own:
            await rt.aclose()


def _show(result: dict[str, Any]) -> None:
    acc = result.get("accuracy")
    typer.echo(
        f"items={result['num_items']} accuracy={'n/a' if acc is None else f'{acc:.3f}'} "
        f"calls={result['calls']} input_tokens={result['input_tokens']} output_tokens={result['output_tokens']} "
        f"parse_failures={result['parse_failures']} reask_calls={result['reask_calls']} "
        f"unanswered={len(result['unanswered'])} rounds={result['rounds_run']}"
    )
    for problem in result.get("load_errors", []):
        typer.echo(f"skipped {problem}", err=True)


@app.command("batchprompt", cls=CommandErrorsAsOneLine)
def batchprompt_command(
    dataset: Annotated[Path | None, typer.Option("--dataset", "-d", help="jsonl file, one item per line.")] = None,
    task: Annotated[str, typer.Option("--task", "-t", help="boolq, rte, qqp, or a task spec (.toml/.json).")] = "boolq",
    batch_size: Annotated[int, typer.Option("--batch-size", "-n", help="Items per call (1 = SinglePrompt).")] = 16,
    rounds: Annotated[int, typer.Option("--rounds", "-k", help="Voting rounds (odd).")] = 1,
    seas: Annotated[bool, typer.Option("--seas/--no-seas", help="Stop early on confident items.")] = False,
    seas_rule: Annotated[str, typer.Option(
        help="SEAS exit: confident (paper) or agree (released code).")] = "confident",
    reask_singles: Annotated[str, typer.Option(help="Single re-asks: unvoted, always or never.")] = "unvoted",
    voting: Annotated[str, typer.Option(help="majority or weighted.")] = "majority",
    unsure_weight: Annotated[float, typer.Option(help="Weight of a not-confident vote (weighted).")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the round permutations.")] = 0,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Calls in flight per round.")] = 16,
    context_window: Annotated[int, typer.Option(help="Model context length in tokens.")] = 8192,
    limit: Annotated[int | None, typer.Option(help="Only the first N items.")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="Shared data folder, for a built-in task without --dataset.")] = None,
    subset: Annotated[bool, typer.Option(
        "--subset/--all", help="Built-in data: the paper's subset or all rows.")] = True,
    budget: Annotated[str, typer.Option("--budget", "-b", help="e.g. tokens=200000,usd=0.5")] = "",
    backend: Annotated[str, typer.Option(help="local, openai or scripted.")] = "local",
    base_url: Annotated[list[str] | None, typer.Option("--base-url", help="OpenAI-compatible endpoint(s).")] = None,
    model: Annotated[str | None, typer.Option(help="Model name for the openai backend.")] = None,
    db: Annotated[str | None, typer.Option("--db", help="Database URL.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Any BatchPrompt option, key=value (e.g. label_scoring=logprob); repeatable, wins over the "
                      "flags; quotaflow workflows show batchprompt lists them.")] = None,
) -> None:
    """Classify a dataset with many items per call; BPE voting and SEAS early stopping."""
    from orchestrator.workflow import get
    from workflows.batchprompt.graph import config_from_task

    options = backend_options(backend, base_url, model, None)
    payload = build_task_payload(
        task=task, dataset=dataset, data_dir=data_dir, subset=subset, limit=limit, batch_size=batch_size,
        rounds=rounds, seas=seas, voting=voting, unsure_weight=unsure_weight, seed=seed,
        concurrency=concurrency, context_window=context_window, seas_rule=seas_rule,
        reask_singles=reask_singles,
    )
    # The workflow reads its options from the task payload.
    payload.update(get("batchprompt").parse_options(parse_set(set_)))
    config_from_task({k: v for k, v in payload.items() if k not in ("task", "dataset")})  # bad values fail here
    out = asyncio.run(run_batchprompt_job(payload, backend=backend, backend_options=options, budget=budget, db=db))
    if as_json:
        typer.echo(json.dumps({"run_id": out.run_id, "status": out.status, "error": out.error,
                               "result": out.result}, indent=2, default=str))
    else:
        typer.echo(f"run {out.run_id}: {out.status}" + (f" ({out.error})" if out.error else ""))
        if out.result:
            _show(out.result)
    if out.status != "succeeded":
        raise typer.Exit(out.exit_code or 1)
