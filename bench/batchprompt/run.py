"""BatchPrompt benchmark: SinglePrompt vs batch sizes x voting rounds, with and without SEAS.

Against an OpenAI-compatible server (vLLM on the H200)::

    python bench/batchprompt/run.py --base-url http://127.0.0.1:8000/v1 \\
        --model Qwen/Qwen2.5-Coder-0.5B-Instruct --tokenizer Qwen/Qwen2.5-Coder-0.5B-Instruct \\
        --context-window 32768 --data-dir ../shared/data

Writes bench/results/batchprompt/summary-<model>.json (the issue's machine-checked shape),
detail-<model>.json (re-asks, unanswered items, failure rates, per-round counters, ratios to
SinglePrompt) and summary-<model>.png. ``--dry-run`` swaps the server for the scripted labeler
(knows the gold labels, drops answers past position 20, flips some): it checks the plumbing on a
CPU in seconds and says nothing about quality.

Every configuration runs through the workflow's core (:func:`run_batchprompt`) as if alone: its
calls and tokens are its own. Identical prompts across configurations (round 1 is the same for
every K; rounds 1-3 of K=5 are the rounds of K=3) are sent to the server once and the recorded
response is replayed, at temperature 0 this is what the server would answer again; the cost is
still counted for each configuration that asks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from orchestrator.types import LLMRequest, LLMResponse, Message, SamplingOptions
from workflows.batchprompt.engine import BatchPromptConfig, BatchPromptResult, run_batchprompt
from workflows.batchprompt.tasks import BUILTIN_TASKS, Item, TaskSpec, load_builtin_items, load_task

# The paper's GPT-4 headline figures (BPE + SEAS, batch 32, vs SinglePrompt), for the report.
PAPER_GPT4 = {
    "boolq": {"single_accuracy": 90.6, "seas_accuracy": 90.9, "token_share_pct": 27.4, "call_reduction_pct": 84.4},
    "qqp": {"single_accuracy": 87.2, "seas_accuracy": 88.4, "token_share_pct": 18.6, "call_reduction_pct": 90.6},
    "rte": {"single_accuracy": 91.5, "seas_accuracy": 91.1, "token_share_pct": 30.8, "call_reduction_pct": 84.4},
}


@dataclass(frozen=True)
class GridPoint:
    """One configuration of the grid."""

    task: str
    batch_size: int
    rounds: int
    seas: bool

    @property
    def method(self) -> str:
        return "single" if self.batch_size == 1 else "batch"

    @property
    def name(self) -> str:
        return f"{self.task}/bs{self.batch_size}/k{self.rounds}{'/seas' if self.seas else ''}"


def grid(tasks: Sequence[str], batch_sizes: Sequence[int], rounds: Sequence[int], seas_rounds: Sequence[int]) -> list[GridPoint]:
    """SinglePrompt, every batch size x rounds, and every batch size x SEAS rounds, per task."""
    points: list[GridPoint] = []
    for task in tasks:
        points.append(GridPoint(task, 1, 1, False))
        points.extend(GridPoint(task, bs, k, False) for bs in batch_sizes for k in rounds)
        points.extend(GridPoint(task, bs, k, True) for bs in batch_sizes for k in seas_rounds if k > 1)
    return points


@dataclass
class SharedChat:
    """Sends each distinct prompt once (bounded concurrency); concurrent askers share the answer."""

    complete: Callable[[LLMRequest], Any]
    semaphore: asyncio.Semaphore
    """Bounds the requests in flight (shared by every task's chat)."""
    cache: dict[str, asyncio.Future[LLMResponse]] = field(default_factory=dict)
    num_sent: int = 0

    async def _send(self, request: LLMRequest) -> LLMResponse:
        async with self.semaphore:
            self.num_sent += 1
            return await self.complete(request)

    async def __call__(self, messages: list[Message], sampling: SamplingOptions) -> LLMResponse:
        key = json.dumps([[m.role, m.content] for m in messages] + [sampling.max_tokens])
        future = self.cache.get(key)
        if future is None:
            future = asyncio.ensure_future(self._send(LLMRequest(tuple(messages), sampling)))
            self.cache[key] = future
        return await asyncio.shield(future)


def _git_commit() -> str:
    from orchestrator.provenance import source_commit

    return source_commit(ROOT)


def _machine() -> str:
    from orchestrator.provenance import machine_description

    return machine_description()


def summary_row(point: GridPoint, result: BatchPromptResult) -> dict[str, Any]:
    """One entry of summary.json, exactly the issue's keys."""
    return {
        "task": point.task,
        "method": point.method,
        "batch_size": point.batch_size,
        "rounds": point.rounds,
        "seas": point.seas,
        "accuracy": round(100.0 * (result.accuracy or 0.0), 2),
        "input_tokens": result.stats.input_tokens,
        "output_tokens": result.stats.output_tokens,
        "calls": result.stats.num_calls,
        "parse_failures": result.stats.parse_failures,
    }


def detail_row(point: GridPoint, result: BatchPromptResult, single: BatchPromptResult | None) -> dict[str, Any]:
    s = result.stats
    row: dict[str, Any] = {
        **summary_row(point, result),
        "num_items": len(result.labels),
        "rounds_run": result.rounds_run,
        "items_asked": s.items_asked,
        "parse_failure_rate": round(s.parse_failures / s.items_asked, 4) if s.items_asked else 0.0,
        "num_missing": s.num_missing,
        "num_duplicates": s.num_duplicates,
        "num_out_of_range": s.num_out_of_range,
        "reask_calls": s.reask_calls,
        "reasked_items": s.reasked_items,
        "reask_input_tokens": s.reask_input_tokens,
        "unanswered_votes": s.unanswered_votes,
        "unanswered_items": len(result.unanswered),
        "seas_exits_by_round": {str(r): sum(1 for v in result.exited_at.values() if v == r)
                                for r in sorted(set(result.exited_at.values()))},
        "per_round": result.per_round,
    }
    if single is not None and single.stats.input_tokens and single.stats.num_calls:
        row["input_token_share_pct"] = round(100.0 * s.input_tokens / single.stats.input_tokens, 1)
        row["call_share_pct"] = round(100.0 * s.num_calls / single.stats.num_calls, 1)
        row["accuracy_delta_vs_single"] = round(100.0 * ((result.accuracy or 0) - (single.accuracy or 0)), 2)
    return row


def plot(rows: list[dict[str, Any]], model: str, path: Path) -> None:
    """Accuracy against input tokens (share of SinglePrompt's), one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.5), squeeze=False)
    colors = {8: "tab:blue", 16: "tab:orange", 32: "tab:green"}
    for ax, task in zip(axes[0], tasks):
        for r in (r for r in rows if r["task"] == task):
            share = r.get("input_token_share_pct", 100.0)
            if r["method"] == "single":
                ax.scatter([share], [r["accuracy"]], marker="*", s=220, color="black", label="single", zorder=3)
                continue
            marker = "s" if r["seas"] else "o"
            ax.scatter([share], [r["accuracy"]], marker=marker, s=30 + 20 * r["rounds"],
                       color=colors.get(r["batch_size"], "tab:gray"), alpha=0.8)
            ax.annotate(f"{r['batch_size']}x{r['rounds']}{'S' if r['seas'] else ''}", (share, r["accuracy"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_title(f"{task} ({model})")
        ax.set_xlabel("input tokens, % of SinglePrompt")
        ax.set_ylabel("accuracy %")
        ax.grid(alpha=0.3)
    fig.suptitle("BatchPrompt: labels = batch x rounds (S = SEAS); squares SEAS, circles BPE, star SinglePrompt",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _make_client(args: argparse.Namespace, task: TaskSpec, items: list[Item]) -> Any:
    if args.dry_run:
        from workflows.batchprompt.scripted import ScriptedLabeler

        return ScriptedLabeler(task, items, error_rate=0.1, unsure_rate=0.2, max_answers=20, model="dry-run")
    from orchestrator.llm import create_client

    options: dict[str, Any] = {"base_urls": tuple(args.base_url), "model": args.model}
    if args.tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(args.tokenizer)
        options["tokenizer"] = lambda text: tok.encode(text, add_special_tokens=False)
    return create_client("openai", **options)


async def run_grid(args: argparse.Namespace) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    points = grid(args.tasks, args.batch_sizes, args.rounds, args.seas_rounds)
    data: dict[str, tuple[TaskSpec, list[Item]]] = {}
    for name in args.tasks:
        loaded = load_builtin_items(name, args.data_dir, subset=True, limit=args.limit)
        data[name] = (load_task(name), loaded.items)
    clients = {name: _make_client(args, *data[name]) for name in args.tasks} if args.dry_run else {}
    shared_client = None if args.dry_run else _make_client(args, *data[args.tasks[0]])
    in_flight = asyncio.Semaphore(args.concurrency)
    chats = {
        name: SharedChat((clients[name] if args.dry_run else shared_client).complete, in_flight)
        for name in args.tasks
    }
    exact = bool(args.tokenizer) and not args.dry_run
    # Without the model's tokenizer the chars/4 estimate can run short: keep 10% headroom.
    window = args.context_window if exact else int(args.context_window * 0.9)
    results: dict[GridPoint, BatchPromptResult] = {}
    errors: dict[str, str] = {}
    t0 = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        job = bar.add_task(f"batchprompt grid ({args.model})", total=len(points))

        async def one(point: GridPoint) -> None:
            task, items = data[point.task]
            client = clients[point.task] if args.dry_run else shared_client
            config = BatchPromptConfig(batch_size=point.batch_size, rounds=point.rounds, seas=point.seas,
                                       seed=args.seed, max_concurrency=args.concurrency, context_window=window,
                                       max_tokens_per_answer=args.max_tokens_per_answer)
            try:
                results[point] = await run_batchprompt(task, items, config, chats[point.task], client.count_tokens)
            except Exception as exc:  # noqa: BLE001  (one broken configuration must not lose the others' figures)
                errors[point.name] = f"{type(exc).__name__}: {exc}"
            bar.advance(job)

        await asyncio.gather(*(one(p) for p in points))
    wall_s = time.perf_counter() - t0
    if shared_client is not None:
        await shared_client.aclose()
    summary_rows, detail_rows = [], []
    for point in points:
        if point not in results:
            continue
        single = results.get(GridPoint(point.task, 1, 1, False))
        summary_rows.append(summary_row(point, results[point]))
        detail_rows.append(detail_row(point, results[point], single))
    meta = {
        "commit": _git_commit(),
        "machine": _machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": args.model,
    }
    detail = {
        **meta,
        "dry_run": args.dry_run,
        "wall_s": round(wall_s, 1),
        "num_prompts_sent": sum(c.num_sent for c in chats.values()),
        "num_prompts_asked": sum(r.stats.num_calls for r in results.values()),
        "context_window": args.context_window,
        "exact_tokenizer": exact,
        "num_items": {name: len(items) for name, (_, items) in data.items()},
        "errors": errors,
        "paper_gpt4": {t: PAPER_GPT4[t] for t in args.tasks if t in PAPER_GPT4},
        "results": detail_rows,
    }
    return {"summary": {**meta, "results": summary_rows}, "detail": detail}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ints = lambda s: [int(x) for x in s.split(",") if x]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", action="append", default=[], help="OpenAI-compatible endpoint (repeatable)")
    p.add_argument("--model", default="", help="model name as the server knows it")
    p.add_argument("--tokenizer", default="", help="HF tokenizer path/name for exact token counts (optional)")
    p.add_argument("--context-window", type=int, default=8192, help="the server's max_model_len")
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--tasks", type=lambda s: s.split(","), default=list(BUILTIN_TASKS))
    p.add_argument("--batch-sizes", type=ints, default=[8, 16, 32])
    p.add_argument("--rounds", type=ints, default=[1, 3, 5])
    p.add_argument("--seas-rounds", type=ints, default=[3, 5])
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    p.add_argument("--max-tokens-per-answer", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="first N items per task")
    p.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results" / "batchprompt")
    p.add_argument("--dry-run", action="store_true", help="scripted labeler instead of a server (plumbing only)")
    args = p.parse_args(argv)
    if args.dry_run:
        args.model = args.model or "dry-run"
    elif not args.base_url or not args.model:
        p.error("--base-url and --model are required (or --dry-run)")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    out = asyncio.run(run_grid(args))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    label = args.model.rstrip("/").split("/")[-1]
    (args.out_dir / f"summary-{label}.json").write_text(json.dumps(out["summary"], indent=2) + "\n")
    (args.out_dir / f"detail-{label}.json").write_text(json.dumps(out["detail"], indent=2) + "\n")
    plot(out["detail"]["results"], label, args.out_dir / f"summary-{label}.png")
    d = out["detail"]
    print(f"{len(out['summary']['results'])} configurations in {d['wall_s']} s; "
          f"{d['num_prompts_sent']} prompts sent for {d['num_prompts_asked']} asked; errors: {len(d['errors'])}")
    for row in d["results"]:
        print(f"  {row['task']:5} {row['method']:6} bs={row['batch_size']:2} k={row['rounds']} seas={int(row['seas'])} "
              f"acc={row['accuracy']:5.1f} in={row['input_tokens']:8} out={row['output_tokens']:6} "
              f"calls={row['calls']:4} fail={row['parse_failure_rate']:.3f} "
              f"tok%={row.get('input_token_share_pct', 100.0):5.1f} calls%={row.get('call_share_pct', 100.0):5.1f}")
    return out


if __name__ == "__main__":
    main()
