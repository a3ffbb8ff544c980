"""DRQA benchmark: run-time quota allocation, and the GRPO-trained model vs the base model.

Parts (``--parts``, default all three):
  allocation  GSM8K and MATH validation against a served model (--base-url): 'unlimited' once
              (max_tokens --unlimited-max-tokens; also once capped at the quota ceiling --max-tokens,
              a reference row), then 'uniform' and 'drqa' (--methods) at total budgets that are fractions of
              unlimited's spend (--fractions); accuracy vs reasoning tokens, plotted.
  data        chains of thought (single + batch-2) from the served model on the training split,
              labelled (incorrect / correct-verbose / correct-concise), with a manifest.
  training    a short GRPO run on the labelling task from --base-model-path (an HF folder) on the
              GPU, saved as an HF folder, then base vs trained on held-out GSM8K (HF generate).

Writes bench/results/drqa/summary.json (the issue's shape), details.json, allocation.png and
copies of the data/checkpoint manifests and the training log. Parts run separately merge into
the same summary. ``--dry-run`` uses a simulated solver and a tiny random model on CPU.

Every per-question solve states its budget (in words, before the question) and is capped at its
quota minus a small reserve; a solve cut off at the cap (or ending without an answer) gets one
short forced-answer call paid from that reserve (--no-force-answer: the old scoring). details.json
records every item (quota, tokens, finish reason, raw text clipped to 600 chars, parsed answer,
its source, gold, correct) and per-run counts of truncated, forced and unparsable answers.

--time-limit-s bounds the whole run: an allocation run that would start with less than
--min-run-s left is skipped, one still running at the limit is cancelled, data+training are
skipped with less than --training-min-s left, and the JSON files are rewritten after every run.

GPU (H200), with vLLM serving Qwen2.5-Coder-0.5B-Instruct at --base-url (`quotaflow serve`; leave room
for training: --gpu-memory-utilization 0.4). The allocation run of docs/benchmarks.md (DRQA):
  python3 bench/drqa/run.py --base-url http://127.0.0.1:8000/v1 --model qwen2.5-coder-0.5b --via runtime \
      --limit 0 --parts allocation --unlimited-max-tokens 4096 --max-tokens 512 --fractions 0.4,0.5,0.6,0.75 \
      --variants "drqa:state_budget=false,max_probe_fraction=0"
and data + training (GRPO from --base-model-path, an HF folder):
  python3 bench/drqa/run.py --parts data,training --base-model-path /root/models/qwen05-hf \
      --steps 20 --eval-limit 80 --time-limit-s 340
CPU end to end without a model: python -m orchestrator.testing serve --port 0 --model fake-drqa
--no-tokenize --responder bench.drqa.responder:respond, then --base-url at it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import named_paths, provenance, pyplot, save_figure, write_json

DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results" / "drqa"


def _progress() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


# -- allocation ---------------------------------------------------------------------------------
def parse_variants(spec: str) -> list[tuple[str, str, dict[str, Any]]]:
    """``"drqa:strategy=proportional;uniform:solve_style=brief"`` -> [(name, method, options)].

    Variants run at every budget beside the plain methods and are reported in details.json
    (not in the summary, which holds the methods with their defaults).
    """
    out = []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        method, _, opts = part.partition(":")
        options: dict[str, Any] = {}
        for kv in filter(None, opts.split(",")):
            key, sep, value = kv.partition("=")
            if not sep:
                raise SystemExit(f"--variants: expected key=value, got {kv!r} in {part!r}")
            options[key.strip()] = _option_value(key.strip(), value.strip())
        if method not in ("uniform", "drqa"):
            raise SystemExit(f"--variants: method must be uniform or drqa, got {method!r}")
        out.append((part, method, options))
    return out


def parse_methods(spec: str) -> list[str]:
    """``"uniform,drqa"`` -> the plain (default-option) methods run at every budget, in order."""
    methods = [m.strip() for m in spec.split(",") if m.strip()]
    bad = [m for m in methods if m not in ("uniform", "drqa")]
    if bad:
        raise SystemExit(f"--methods: each must be uniform or drqa, got {bad}")
    return methods


def _option_value(key: str, text: str) -> Any:
    """A variant's option value, typed like the DRQA option it sets by the converter every workflow
    uses ('0' -> 0.0, 'false' -> False); a key DRQA does not read stays a string."""
    from orchestrator.options import option_value
    from workflows.drqa.config import option_types

    kind = option_types().get(key)
    if kind is None:
        return text
    try:
        return option_value(kind, text, what=key)
    except Exception as exc:  # the converter's mismatch says what the option expects
        raise SystemExit(f"--variants: {key}={text!r}: expected {exc}") from None


def _design_ids(rows: list[dict[str, Any]], dataset: str, n: int) -> set[str]:
    """Ids of the first ``n`` rows: the questions looked at while designing the allocation."""
    from workflows.drqa.datasets import get_spec

    spec = get_spec(dataset)
    return {spec.item(r).id for r in rows[:n]}


def _subset(items: list[dict[str, Any]], keep: set[str]) -> dict[str, Any]:
    chosen = [it for it in items if it["id"] in keep]
    return {"num_items": len(chosen), "accuracy": sum(1 for it in chosen if it["correct"]) / max(len(chosen), 1),
            "solve_tokens": sum(it["solve_tokens"] for it in chosen)}


def _method_options(args: argparse.Namespace, method: str, budget: int | None,
                    variant_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The drqa workflow's options for one allocation run."""
    return {"method": method, "total_budget": budget, "max_concurrency": args.concurrency,
            "unlimited_max_tokens": args.unlimited_max_tokens, "ceiling_tokens": args.max_tokens,
            "batch_size": args.probe_batch_size, "force_answer": not args.no_force_answer,
            "answer_reserve_tokens": args.answer_reserve_tokens, "state_budget": not args.no_stated_budget,
            "max_probe_fraction": args.max_probe_fraction,
            "probe_tokens_per_question": args.probe_tokens_per_question,
            "strategy": args.strategy, "solve_style": args.solve_style, **(variant_options or {})}


def check_allocation_options(args: argparse.Namespace) -> None:
    """Refuse (SystemExit, one line) a method or variant whose options the drqa workflow does not
    accept, before the first run: not after unlimited and the plain methods have spent the GPU
    call's time."""
    from orchestrator import workflow as workflows
    from orchestrator.errors import BadInputError

    runs = [(m, None) for m in ("unlimited", *parse_methods(args.methods))]
    runs += [(method, options) for _, method, options in parse_variants(args.variants)]
    for method, options in runs:
        try:
            workflows.get("drqa").check_options(_method_options(args, method, 1000, options))
        except BadInputError as exc:
            raise SystemExit(f"error: {exc}") from None


async def _run_method(args: argparse.Namespace, rows: list[dict[str, Any]], dataset: str, method: str,
                      budget: int | None, client: Any, db_dir: Path, variant: str = "",
                      variant_options: dict[str, Any] | None = None) -> dict[str, Any]:
    options = _method_options(args, method, budget, variant_options)
    task = {"rows": rows, "dataset": dataset}
    tag = "".join(c if c.isalnum() else "-" for c in variant)
    t0 = time.perf_counter()
    if args.via == "runtime":
        from orchestrator.runtime import Runtime
        from orchestrator.settings import Settings
        from orchestrator.tools.registry import ToolRegistry

        rt = Runtime(Settings(db_url=f"sqlite:///{db_dir / f'{dataset}-{method}-{budget}{tag}.db'}", home=db_dir),
                     clients={"bench": client}, tools=ToolRegistry())
        try:
            res = await rt.run("drqa", task, backend="bench", options=options)
        finally:
            await rt.aclose()
        if res.status != "succeeded" or res.result is None:
            raise RuntimeError(f"{dataset}/{method}/{budget}: run {res.status}: {res.error}")
        out = res.result
    else:
        from orchestrator.direct import DirectContext
        from workflows.drqa.graph import initial_state, result, run_nodes

        ctx = DirectContext(client, config=options)
        out = result(await run_nodes(ctx, initial_state(task)))
    items = [{"dataset": dataset, "method": method, "total_budget": budget, **it} for it in out["items"]]
    design = _design_ids(rows, dataset, args.design_rows)
    held_out = {it["id"] for it in items} - design
    return {"dataset": dataset, "method": method, "variant": variant, "options": options,
            "total_budget": budget, "accuracy": out["accuracy"],
            "held_out": _subset(items, held_out), "design_rows": _subset(items, design),
            "reasoning_tokens": out["reasoning_tokens"], "num_items": out["num_items"],
            "tokens_by_purpose": out["tokens_by_purpose"], "seconds": round(time.perf_counter() - t0, 1),
            "num_truncated": out["num_truncated"], "num_forced": out["num_forced"],
            "num_unparsable": out["num_unparsable"], "difficulty_auc": out.get("difficulty_auc", {}),
            "signal_selection": _signal_selection(out),
            "sources": _count(it["source"] for it in out["items"]), "items": items}


def _signal_selection(out: dict[str, Any], repeats: int = 10) -> dict[str, Any] | None:
    """Which difficulty signal predicts a wrong answer best: chosen on a random half of the run's
    questions, its AUC reported on the other half, ``repeats`` times (None without probe signals
    or without both right and wrong answers)."""
    from workflows.drqa.quota.signals import select_signal

    rows = out.get("difficulty_signals") or []
    correct = [bool(it.get("correct")) for it in out["items"]]
    if not rows or len(rows) != len(correct) or any(not r for r in rows) or len(set(correct)) < 2:
        return None
    picked = select_signal({name: [r[name] for r in rows] for name in rows[0]}, correct, repeats=repeats, seed=0)
    return {"winner": picked.winner, "chosen": list(picked.chosen), "report_auc_mean": picked.mean_report_auc,
            "report_auc_std": picked.std_report_auc, "auc_by_signal": dict(picked.auc_by_signal)}


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


def _datasets(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    if args.dry_run:
        from workflows.drqa.sim import make_rows

        math_rows = [{"problem": r["question"], "solution": f"\\boxed{{{r['answer']}}}"}
                     for r in make_rows([3, 1, 8, 2, 15, 1, 4, 2])]
        return {"gsm8k": make_rows([1, 1, 2, 1, 12, 1, 2, 14, 1, 1, 2, 10]), "math": math_rows}
    from workflows.drqa.datasets import read_rows

    out = {}
    for name, path in dataset_paths(args.datasets).items():
        rows = read_rows(path)
        out[name] = rows[: args.limit] if args.limit else rows
    return out


DATASETS = ("gsm8k", "math")


def dataset_paths(text: str) -> dict[str, Path]:
    """``gsm8k,math=/data/math/test.jsonl``: each dataset and its file or folder (default: the
    shared data's folder, whose validate.jsonl is read)."""
    return {name: Path(path) if path else DATA / name for name, path in named_paths(text, DATASETS).items()}


def _datasets_arg(text: str) -> str:
    named_paths(text, DATASETS)  # refuses another name when the arguments are parsed
    return text


def _client(args: argparse.Namespace) -> Any:
    if args.dry_run:
        from workflows.drqa.sim import sim_client

        return sim_client()
    from orchestrator.llm import create_client

    return create_client("openai", base_urls=[args.base_url], model=args.model)


class Deadline:
    """Seconds left of --time-limit-s (None: no limit), so every part stops in time to write."""

    def __init__(self, limit_s: float) -> None:
        self.end = time.monotonic() + limit_s if limit_s > 0 else None

    def left(self) -> float | None:
        return None if self.end is None else self.end - time.monotonic()

    def allows(self, seconds: float) -> bool:
        left = self.left()
        return left is None or left >= seconds


async def run_allocation(args: argparse.Namespace, deadline: Deadline,
                         on_entry: Any = lambda entries: None) -> list[dict[str, Any]]:
    """Unlimited, then the --methods (uniform, drqa) and --variants per fraction, per dataset;
    ``on_entry`` after each run (the caller writes the results so far). A run that the deadline would cut is skipped or
    cancelled and listed under ``skipped``."""
    client = _client(args)
    fractions = [float(f) for f in args.fractions.split(",")]
    entries: list[dict[str, Any]] = []

    async def timed(coro: Any, label: str) -> dict[str, Any] | None:
        left = deadline.left()
        if left is not None and left < args.min_run_s:
            coro.close()
            SKIPPED.append(f"{label}: not started, {left:.0f}s left")
            return None
        try:
            return await asyncio.wait_for(coro, None if left is None else left - args.reserve_s)
        except TimeoutError:
            SKIPPED.append(f"{label}: cancelled at the time limit")
            return None

    with tempfile.TemporaryDirectory() as tmp, _progress() as progress:
        datasets = _datasets(args)
        variants = parse_variants(args.variants)
        methods = parse_methods(args.methods)
        capped = args.max_tokens < args.unlimited_max_tokens
        bar = progress.add_task("allocation runs",
                                total=len(datasets) * (1 + capped + (len(methods) + len(variants)) * len(fractions)))
        for dataset, rows in datasets.items():
            unlimited = await timed(_run_method(args, rows, dataset, "unlimited", None, client, Path(tmp)),
                                    f"{dataset}/unlimited")
            progress.advance(bar)
            if unlimited is None:
                continue
            # The cap that bounds unlimited, so every entry has a number (see bench/NOTEBOOK.md).
            unlimited["total_budget"] = len(rows) * args.unlimited_max_tokens
            entries.append(unlimited)
            on_entry(entries)
            if capped:
                # Reference row: unlimited cut at the quota ceiling (what drqa never exceeds per question).
                entry = await timed(_run_method(args, rows, dataset, "unlimited", None, client, Path(tmp),
                                                f"unlimited:unlimited_max_tokens={args.max_tokens}",
                                                {"unlimited_max_tokens": args.max_tokens}),
                                    f"{dataset}/unlimited capped at {args.max_tokens}")
                progress.advance(bar)
                if entry is not None:
                    entry["total_budget"] = len(rows) * args.max_tokens
                    entries.append(entry)
                    on_entry(entries)
            for frac in fractions:
                budget = int(unlimited["reasoning_tokens"] * frac)
                runs = [*(("", method, {}) for method in methods), *variants]
                for variant, method, opts in runs:
                    entry = await timed(_run_method(args, rows, dataset, method, budget, client, Path(tmp),
                                                    variant, opts),
                                        f"{dataset}/{variant or method}/{frac}")
                    progress.advance(bar)
                    if entry is None:
                        continue
                    entry["budget_fraction_of_unlimited"] = frac
                    entries.append(entry)
                    on_entry(entries)
    await client.aclose()
    return entries


SKIPPED: list[str] = []
"""Runs and parts the time limit left out (written to details.json and printed)."""


def plot_allocation(entries: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()

    datasets = sorted({e["dataset"] for e in entries})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        lines = sorted({(e["method"], e.get("variant", "")) for e in entries if e["method"] != "unlimited"},
                       key=lambda mv: (mv[1] != "", mv))
        for method, variant in lines:
            pts = sorted((e["reasoning_tokens"], e["accuracy"]) for e in entries
                         if e["dataset"] == ds and e["method"] == method and e.get("variant", "") == variant)
            style = ("o-" if method == "drqa" else "s--") if not variant else ("^:" if method == "drqa" else "v:")
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=variant or method,
                        alpha=1.0 if not variant else 0.6)
        for e in entries:
            if e["dataset"] == ds and e["method"] == "unlimited":
                capped = e.get("variant", "")
                ax.plot([e["reasoning_tokens"]], [e["accuracy"]], "kx" if capped else "k*", markersize=12,
                        label=f"unlimited, max_tokens {e['options']['unlimited_max_tokens']}")
        ax.set_title(ds)
        ax.set_xlabel("reasoning (output) tokens, whole set")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path)


# -- data ---------------------------------------------------------------------------------------
def _dry_data_paths(tmp: Path) -> list[str]:
    from workflows.drqa.sim import make_rows

    p = tmp / "gsm8k" / "validate.jsonl"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(json.dumps(r) + "\n" for r in make_rows([1, 2, 3, 1, 9, 2, 1, 12, 1, 4])))
    return [str(p.parent)]


async def run_data(args: argparse.Namespace, artifacts: Path) -> Path:
    from workflows.drqa.training.generate import GenerationConfig
    from workflows.drqa.training.pipeline import DataJob, build_training_data

    paths = _dry_data_paths(artifacts) if args.dry_run else [str(p) for p in dataset_paths(args.datasets).values()]
    job = DataJob(
        data_paths=tuple(paths),
        out_dir=str(artifacts / f"data-{datetime.now(UTC):%Y%m%d-%H%M%S}"),
        eval_fraction=args.eval_fraction,
        generation=GenerationConfig(num_single=2, num_batch=1, batch_size=2, max_tokens=args.max_tokens,
                                    concurrency=args.concurrency),
    )
    client = _client(args)
    with _progress() as progress:
        bar = progress.add_task("chains", total=None)
        out = await build_training_data(client, job, on_progress=lambda n: progress.advance(bar, n),
                                        on_total=lambda n: progress.update(bar, total=n))
    await client.aclose()
    return out


# -- training -----------------------------------------------------------------------------------
def run_training(args: argparse.Namespace, data_dir: Path, artifacts: Path) -> dict[str, Any]:
    from workflows.drqa.training.pipeline import TrainJob, evaluate_models, load_split, train

    base = args.base_model_path
    device = "cpu" if args.dry_run else "cuda"
    if args.dry_run:
        from workflows.drqa.training.tiny import save_tiny_model

        base = str(save_tiny_model(artifacts / "tiny-base"))
    grpo = ({"group_size": 4, "prompts_per_step": 2, "max_new_tokens": 2, "learning_rate": 1e-3}
            if args.dry_run else
            {"group_size": args.group_size, "prompts_per_step": args.prompts_per_step, "max_new_tokens": 4,
             "learning_rate": args.learning_rate, "kl_beta": 0.04, "micro_batch_size": 32})
    out_dir = artifacts / f"ckpt-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    job = TrainJob(base_model=base, data_dir=str(data_dir), out_dir=str(out_dir),
                   num_steps=2 if args.dry_run else args.steps, device=device, grpo=grpo,
                   max_chain_chars=300 if args.dry_run else 2000)
    with _progress() as progress:
        bar = progress.add_task("GRPO steps", total=job.num_steps)
        summary = train(job, on_step=lambda step, stats: progress.advance(bar))
    eval_items = load_split(data_dir, "gsm8k", "eval")
    if args.eval_limit:
        eval_items = eval_items[: args.eval_limit]
    evals = evaluate_models({"base": base, "trained": str(out_dir)}, eval_items, "gsm8k", device=device,
                            max_new_tokens=8 if args.dry_run else args.max_tokens)
    for name in ("manifest.json", "train_log.jsonl"):
        shutil.copy(out_dir / name, RESULTS_DIR(args) / f"training-{name}")
    shutil.copy(data_dir / "manifest.json", RESULTS_DIR(args) / "data-manifest.json")
    return {"train": summary, "eval": evals, "checkpoint": str(out_dir), "data": str(data_dir)}


def RESULTS_DIR(args: argparse.Namespace) -> Path:
    base = Path(args.results_dir) if args.results_dir else RESULTS
    d = base / "dry-run" if args.dry_run else base
    d.mkdir(parents=True, exist_ok=True)
    return d


# -- summary ------------------------------------------------------------------------------------
def _merge(path: Path, update: dict[str, Any]) -> dict[str, Any]:
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(update)
    write_json(path, current)
    return current


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="allocation,data,training")
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    p.add_argument("--model", default="", help="model name the server serves (empty: its first)")
    p.add_argument("--base-model-path", default="/root/models/qwen05-hf", help="HF folder GRPO starts from")
    p.add_argument("--datasets", default="gsm8k,math", type=_datasets_arg, metavar="NAME[=PATH],...",
                   help="gsm8k and/or math, each from the shared data or the file or folder given "
                        "(e.g. gsm8k=/data/gsm8k/test.jsonl)")
    p.add_argument("--limit", type=int, default=0, help="questions per dataset for allocation (0: all)")
    p.add_argument("--fractions", default="0.5,0.6,0.75", help="budgets as fractions of unlimited's spend")
    p.add_argument(
        "--max-tokens", type=int, default=512, help="quota ceiling: most tokens uniform/drqa give one question"
    )
    p.add_argument("--unlimited-max-tokens", type=int, default=4096,
                   help="unlimited's per-question max_tokens (the model stops on its own well before it, except "
                        "in loops); when above --max-tokens, unlimited also runs once capped at --max-tokens "
                        "(a details.json row)")
    p.add_argument("--probe-batch-size", type=int, default=4)
    p.add_argument("--strategy", default="easiest_first", help="drqa's allocation strategy (QuotaConfig.strategy)")
    p.add_argument("--solve-style", default="plain", help="budgeted solve prompt style (QuotaConfig.solve_style)")
    p.add_argument("--methods", default="uniform,drqa",
                   help="plain methods (their default options) run at every budget, before the variants; "
                        "the summary holds these rows (e.g. 'drqa' alone to give uniform's time to variants)")
    p.add_argument("--variants", default="drqa:strategy=proportional;drqa:difficulty_signal=mixed;"
                                         "uniform:solve_style=brief;drqa:solve_style=brief",
                   help="extra runs at every budget, ';'-separated method:key=value,... (details.json only)")
    p.add_argument("--design-rows", type=int, default=100,
                   help="the first N rows were looked at while designing the allocation; each entry also "
                        "reports the rows after them (held_out) on their own")
    p.add_argument("--concurrency", type=int, default=256)
    p.add_argument("--via", choices=("runtime", "direct"), default="runtime")
    p.add_argument("--data-dir", default="", help="reuse chains from an earlier data part")
    p.add_argument("--artifacts-dir", default="/tmp/drqa-artifacts")
    p.add_argument("--eval-fraction", type=float, default=0.4)
    p.add_argument("--eval-limit", type=int, default=0)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--prompts-per-step", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=1e-6)
    p.add_argument("--results-dir", default="", help="default: bench/results/drqa (dry runs: its dry-run/)")
    p.add_argument("--no-force-answer", action="store_true",
                   help="score a solve cut off at its quota as it is (the pre-fix behaviour)")
    p.add_argument("--no-stated-budget", action="store_true",
                   help="uniform/drqa solve prompts without the budget sentence (the quota is only max_tokens)")
    p.add_argument("--answer-reserve-tokens", type=int, default=24,
                   help="part of each quota held back for the forced final answer")
    p.add_argument("--max-probe-fraction", type=float, default=0.2,
                   help="drqa: most of the total budget the batch-mode probe may spend")
    p.add_argument("--probe-tokens-per-question", type=int, default=60)
    p.add_argument("--time-limit-s", type=float, default=0,
                   help="whole-run wall-clock limit (0: none): runs that would pass it are skipped or "
                        "cancelled, and results are written after every run, so a kill after the limit "
                        "loses nothing")
    p.add_argument("--min-run-s", type=float, default=15, help="do not start an allocation run with less left")
    p.add_argument("--reserve-s", type=float, default=5, help="seconds kept for writing the results")
    p.add_argument("--training-min-s", type=float, default=120,
                   help="skip the data+training parts when less than this is left after allocation")
    p.add_argument("--dry-run", action="store_true", help="CPU: simulated solver, tiny random model")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    deadline = Deadline(args.time_limit_s)
    SKIPPED.clear()
    parts = set(args.parts.split(","))
    out = RESULTS_DIR(args)
    artifacts = Path(args.artifacts_dir) / ("dry-run" if args.dry_run else "")
    artifacts.mkdir(parents=True, exist_ok=True)
    header = {**provenance(),
              "model": "simulated + tiny random llama (dry run)" if args.dry_run
              else (args.model or args.base_model_path)}
    details: dict[str, Any] = {**header, "args": vars(args), "skipped": SKIPPED}
    summary_update: dict[str, Any] = dict(header)

    previous = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    if not {"data", "training"} & parts and "training" in previous:
        # The training figures kept in summary.json are an earlier run's: say which.
        summary_update["training_from"] = previous.get("training_from") or {
            k: previous.get(k) for k in ("commit", "date", "machine")}

    def write() -> dict[str, Any]:
        _merge(out / "details.json", details)
        return _merge(out / "summary.json", summary_update)

    def on_entry(entries: list[dict[str, Any]]) -> None:
        details["allocation"] = entries
        details["allocation_table"] = allocation_table(entries)
        summary_update["allocation"] = [{k: e[k] for k in ("dataset", "method", "total_budget", "accuracy",
                                                           "reasoning_tokens")}
                                        for e in entries if not e.get("variant")]
        write()

    if "allocation" in parts:
        check_allocation_options(args)
        entries = asyncio.run(run_allocation(args, deadline, on_entry))
        on_entry(entries)
        for row in details["allocation_table"]:
            print(row)
        try:
            if entries:
                plot_allocation(entries, out / "allocation.png")
        except ImportError as exc:  # matplotlib is not on every GPU image; the JSON has the numbers
            print(f"no plot ({exc}); plot later from details.json")
    data_dir = Path(args.data_dir) if args.data_dir else None
    wants_training = bool({"data", "training"} & parts)
    if wants_training and not deadline.allows(args.training_min_s):
        SKIPPED.append(f"data/training: {deadline.left():.0f}s left, need {args.training_min_s:.0f}s")
        parts -= {"data", "training"}
        # summary.json may still hold an earlier run's training numbers: say so under this commit.
        summary_update["training_skipped"] = True
    if "data" in parts:
        data_dir = asyncio.run(run_data(args, artifacts))
        details["data_dir"] = str(data_dir)
        write()
    if "training" in parts:
        if data_dir is None:
            raise SystemExit("the training part needs --data-dir or the data part in the same run")
        training = run_training(args, data_dir, artifacts)
        details["training"] = training
        summary_update["training_skipped"] = False
        summary_update["training_from"] = {k: header[k] for k in ("commit", "date", "machine")}
        summary_update["training"] = {
            name: {k: training["eval"][name][k] for k in ("dataset", "accuracy", "tokens_per_question")}
            for name in ("base", "trained")
        }
    summary = write()
    if SKIPPED:
        print("skipped (time limit):", *SKIPPED, sep="\n  ")
    print(json.dumps({k: v for k, v in summary.items() if k != "allocation"}, indent=2))
    return 0


def allocation_table(entries: list[dict[str, Any]]) -> list[str]:
    """One line per run: accuracy, tokens as a share of unlimited's, truncated/forced/unparsable."""
    base = {e["dataset"]: e["reasoning_tokens"] for e in entries if e["method"] == "unlimited" and not e.get("variant")}
    rows = []
    for e in entries:
        share = e["reasoning_tokens"] / base[e["dataset"]] if base.get(e["dataset"]) else float("nan")
        rows.append(
            f"{e['dataset']:6} {e.get('variant') or e['method']:9} budget={e['total_budget']!s:>6} "
            f"acc={e['accuracy']:.3f} "
            f"tokens={e['reasoning_tokens']} ({share:.0%} of unlimited) truncated={e['num_truncated']} "
            f"forced={e['num_forced']} unparsable={e['num_unparsable']} {e['seconds']}s"
        )
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
