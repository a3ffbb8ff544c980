"""``quotaflow drqa data|train|eval`` and the ``quotaflow run drqa`` entry (registered by cli.main)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.app import command_group, progress_bar
from orchestrator.errors import BadInputError

app = command_group(help="DRQA: reasoning-quota allocation and its GRPO training pipeline.", no_args_is_help=True)

__all__ = ["app", "describe_result", "parse_settings", "run_drqa"]


def describe_result(run_id: str, status: str, result: dict[str, Any] | None, error: str | None = None) -> str:
    """A few lines for a person: accuracy, tokens against the budget, where they went, what was cut.
    (``--json`` prints everything, per item.)"""
    if not result:
        why = f": {error}" if error else ""
        return f"run {run_id}: {status}, no result{why} (quotaflow runs show {run_id}; resume with quotaflow resume)"
    budget = result.get("total_budget")
    spent = result.get("reasoning_tokens", 0)
    share = f" of {budget} ({spent / budget:.0%})" if budget else ""
    by = ", ".join(f"{k} {v}" for k, v in sorted(result.get("tokens_by_purpose", {}).items()))
    correct = (f"{result.get('method')} on {result.get('dataset')}: {result.get('num_correct', 0)}/"
               f"{result.get('num_items', 0)} correct ({result.get('accuracy', 0.0):.1%})")
    cut = (f"cut at their quota {result.get('num_truncated', 0)}, forced answers {result.get('num_forced', 0)}, "
           f"no answer {result.get('num_unparsable', 0)}")
    return "\n".join([f"run {run_id}: {status}", correct, f"reasoning tokens {spent}{share}: {by or 'none'}", cut,
                      f"per item: quotaflow runs show {run_id} --json"])


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """``["max_probe_fraction=0", ...]`` -> options, typed by the options the drqa workflow declares."""
    from cli.options import parse_set
    from orchestrator.workflow import get

    return get("drqa").parse_options(parse_set(pairs))


def run_drqa(
    dataset: str,
    budget_tokens: int | None,
    method: str = "drqa",
    *,
    backend: str = "openai",
    backend_options: dict[str, Any] | None = None,
    limit: int | None = None,
    ledger_budget: str | None = None,
    options: dict[str, Any] | None = None,
    runtime: Any = None,
    db: str | None = None,
) -> Any:
    """``quotaflow run drqa --dataset PATH --budget-tokens N --method drqa|uniform|unlimited``.

    ``dataset`` is a JSONL file or folder (GSM8K or MATH format). ``budget_tokens`` is the run's
    total of output (reasoning) tokens the workflow allocates; ``ledger_budget`` (e.g.
    ``"tokens=200000"``) is an additional ledger limit over all tokens. Returns the RunResult.
    Without ``runtime`` it opens one on ``db`` (the settings' default when None) and closes it.
    """
    from cli.main import _runtime, read_tasks
    from workflows.drqa.config import run_config_from
    from workflows.drqa.datasets import detect_dataset

    # Bad options fail here, before a run is created (BadInputError: exit code 2).
    run_config_from({"method": method, "total_budget": budget_tokens, **(options or {})})

    path = Path(dataset)
    file = path / "validate.jsonl" if path.is_dir() else path
    # A malformed line is an error here, not a skipped row: the budget is split over the rows.
    rows, problems = read_tasks(file, limit)
    if problems:
        raise BadInputError(f"dataset {file}", "one JSON object per line", "; ".join(problems[:3]))
    task = {"rows": rows, "dataset": detect_dataset(rows, file)}
    rt = runtime or _runtime(db)

    async def go() -> Any:
        try:
            return await rt.run("drqa", task, budget=ledger_budget, backend=backend,
                                backend_options=backend_options or {},
                                options={"method": method, "total_budget": budget_tokens, **(options or {})})
        finally:
            if runtime is None:
                await rt.aclose()

    return asyncio.run(go())


@app.command()
def data(
    base_url: Annotated[str, typer.Option(help="OpenAI-compatible server of the chain generator")],
    out: Annotated[Path, typer.Option(help="output folder (chains.jsonl, split.json, manifest.json)")],
    model: Annotated[str, typer.Option(help="served model name (empty: the server's first)")] = "",
    dataset: Annotated[list[str], typer.Option(help="JSONL files or folders")] = [  # noqa: B006
        "../shared/data/gsm8k", "../shared/data/math"],
    eval_fraction: Annotated[float, typer.Option(help="share held out for evaluation", min=0.0, max=0.99)] = 0.4,
    max_train_items: Annotated[int, typer.Option(help="cap per dataset (0: all)", min=0)] = 0,
    num_single: Annotated[int, typer.Option(help="single-question chains per question", min=0)] = 2,
    batch_size: Annotated[int, typer.Option(help="questions per batch-mode prompt", min=1)] = 2,
    max_tokens: Annotated[int, typer.Option(help="tokens per chain", min=1)] = 512,
    concurrency: Annotated[int, typer.Option(help="requests in flight", min=1)] = 128,
    fresh: Annotated[bool, typer.Option(help="drop what an earlier job left in --out and start over")] = False,
) -> None:
    """Generate and label chains of thought (single and batch mode) with a served model.

    A killed or failed job resumes when the same command runs again: requests already answered
    are kept in OUT/chains.partial.jsonl and not sent again."""
    from orchestrator.errors import QuotaFlowError
    from orchestrator.llm import create_client
    from workflows.drqa.training.generate import GenerationConfig
    from workflows.drqa.training.pipeline import DataJob, build_training_data

    job = DataJob(tuple(dataset), str(out), eval_fraction, max_train_items or None,
                  GenerationConfig(num_single=num_single, batch_size=batch_size, max_tokens=max_tokens,
                                   concurrency=concurrency))
    client = create_client("openai", base_urls=[base_url], model=model)

    async def go() -> Path:
        with progress_bar() as progress:
            bar = progress.add_task("chains (requests)", total=None)
            try:
                return await build_training_data(client, job, fresh=fresh,
                                                 on_total=lambda n: progress.update(bar, total=n),
                                                 on_progress=lambda n: progress.advance(bar, n))
            except QuotaFlowError:
                task = progress.tasks[0]
                typer.echo(f"{int(task.completed)} of {int(task.total or 0)} requests are kept in {out}; "
                           "run the same command to resume", err=True)
                raise
            finally:
                await client.aclose()

    folder = asyncio.run(go())
    manifest = json.loads((folder / "manifest.json").read_text())
    typer.echo(json.dumps(manifest["stats"], indent=2))
    refused = manifest.get("refused_requests") or {}
    if refused.get("count"):
        typer.echo(f"warning: the server refused {refused['count']} request(s), left out of chains.jsonl "
                   f"(first: {refused['first'][0]}); the same command sends them again", err=True)


@app.command()
def train(
    base_model: Annotated[str, typer.Option(help="HF folder to start from")],
    data_dir: Annotated[Path, typer.Option(help="output of `quotaflow drqa data`")],
    out: Annotated[Path, typer.Option(help="folder for the trained HF model")],
    steps: Annotated[int, typer.Option(help="GRPO steps", min=1)] = 30,
    group_size: Annotated[int, typer.Option(help="completions per prompt (2 or more)", min=2)] = 8,
    prompts_per_step: Annotated[int, typer.Option(help="prompts per step", min=1)] = 8,
    learning_rate: Annotated[float, typer.Option(help="AdamW learning rate", min=0.0)] = 1e-6,
    kl_beta: Annotated[float, typer.Option(help="KL weight", min=0.0)] = 0.04,
    device: Annotated[str, typer.Option(help="torch device")] = "cuda",
    checkpoint_every_s: Annotated[float, typer.Option(
        help="seconds of training between resume checkpoints (0: none by time)", min=0.0)] = 300.0,
    checkpoint_every: Annotated[int, typer.Option(help="steps between resume checkpoints as well (0: by time only)",
                                                  min=0)] = 0,
    fresh: Annotated[bool, typer.Option(help="drop what an earlier job left in --out and start over")] = False,
) -> None:
    """GRPO on the labelling task; saves an HF folder vLLM can serve, with a manifest.

    A killed job resumes from its last checkpoint when the same command runs again, and saves
    the model an uninterrupted run would; a finished one prints its summary."""
    from workflows.drqa.training.pipeline import TrainJob
    from workflows.drqa.training.pipeline import train as run_train

    job = TrainJob(base_model, str(data_dir), str(out), num_steps=steps, device=device,
                   checkpoint_every=checkpoint_every, checkpoint_every_s=checkpoint_every_s,
                   grpo={"group_size": group_size, "prompts_per_step": prompts_per_step,
                         "learning_rate": learning_rate, "kl_beta": kl_beta})
    summary = run_train(job, fresh=fresh, on_step=lambda step, s: typer.echo(
        f"step {step}: loss {s['loss']:.4f} reward {s['reward_mean']:.3f} kl {s['kl_mean']:.4f}"))
    typer.echo(json.dumps(summary, indent=2))


def _named_models(pairs: list[str]) -> dict[str, str]:
    """``["base=/m/a", "trained=/m/b"]`` -> names to HF folders (each must hold config.json)."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise BadInputError("--model", "NAME=HF_FOLDER", pair)
        if not (Path(path) / "config.json").is_file():
            raise BadInputError(f"--model {pair}", "a Hugging Face model folder (config.json)")
        out[name.strip()] = path
    return out


@app.command("eval")
def eval_(
    model: Annotated[list[str], typer.Option(help="NAME=HF_FOLDER, repeatable (e.g. base=..., trained=...)")],
    data_dir: Annotated[Path, typer.Option(help="output of `quotaflow drqa data` (its held-out split)")],
    dataset: Annotated[str, typer.Option(help="gsm8k or math")] = "gsm8k",
    max_new_tokens: Annotated[int, typer.Option(help="cap per answer", min=1)] = 512,
    limit: Annotated[int, typer.Option(help="held-out questions (0: all)", min=0)] = 0,
    device: Annotated[str, typer.Option(help="torch device")] = "cuda",
) -> None:
    """Accuracy and tokens per question of each model on the held-out questions."""
    from workflows.drqa.training.pipeline import evaluate_models, load_split

    paths = _named_models(model)
    items = load_split(data_dir, dataset, "eval")
    items = items[:limit] if limit else items
    with progress_bar(transient=True) as progress:
        bars = {name: progress.add_task(f"{name}: questions", total=len(items)) for name in paths}
        results = evaluate_models(paths, items, dataset, device=device, max_new_tokens=max_new_tokens,
                                  on_batch=lambda name, n: progress.advance(bars[name], n))
    typer.echo(json.dumps(results, indent=2))
