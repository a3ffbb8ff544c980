"""BatchPrompt benchmark: SinglePrompt vs batch sizes x voting rounds, with and without SEAS.

Against an OpenAI-compatible server (vLLM on the H200)::

    python bench/batchprompt/run.py --base-url http://127.0.0.1:8000/v1 --model qwen2.5-coder-0.5b \\
        --tokenizer /root/models/qwen05-hf --context-window 16384 --data-dir ../shared/data --time-limit-s 330

Writes bench/results/batchprompt/summary-<model>.json (the issue's machine-checked shape: the
paper's method only, i.e. SEAS with self-reported confidence), summary-variants-<model>.json (the
same shape plus ``variant``: SEAS with the released code's agree-only rule and with confidence
from the label token's logprob), detail-<model>.json (re-asks, unanswered items, parse-failure
rates per batch size, per-round counters, ratios to SinglePrompt, the paper's token accounting)
and summary-<model>.png.

Order and time limit: the goal rows run first (per task: SinglePrompt, batch 16 and 32 with one
round, with SEAS and its variants); the rest of the grid (batch 8, 3 and 5 rounds without SEAS)
runs after them. ``--time-limit-s`` bounds the whole run: results are written after the first
wave and again at the end, and configurations still running at the limit are cancelled and
listed under ``incomplete``, so a run killed from outside a little after the limit still leaves
its files.

Token accounting (ours): every call's prompt tokens as the server reports them, SinglePrompt
and BatchPrompt with the same instructions and few-shot block (as in the paper, whose
SinglePrompt baseline also carries the full task spec per item), re-asks included. The paper's
released ``run.py`` counts less: the task spec once per batch however many rounds run, the data
tokens per round, no re-asks and no output; ``paper_accounting_token_share_pct`` in the detail
file applies that rule to our runs for comparison.

``--dry-run`` swaps the server for the scripted labeler (knows the gold labels, drops answers past
position 20, flips some): it checks the plumbing on a CPU in seconds and says nothing about
quality. ``--fake-server`` does the same through the real HTTP client (the kit's loopback
OpenAI-compatible server in a thread, with logprobs, answering as ``responder.py``).

Every configuration runs through the workflow's core (:func:`run_batchprompt`) as if alone: its
calls and tokens are its own. Identical prompts across configurations (round 1 is the same for
every K; rounds 1-3 of K=5 are the rounds of K=3) are sent to the server once and the recorded
response is replayed; at temperature 0 this is what the server would answer again; the cost is
still counted for each configuration that asks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import provenance, pyplot, save_figure, write_json
from orchestrator.types import LLMRequest, LLMResponse, Message, SamplingOptions
from workflows.batchprompt.engine import BatchPromptConfig, BatchPromptResult, run_batchprompt
from workflows.batchprompt.prompt import compose_messages, render_inputs
from workflows.batchprompt.tasks import BUILTIN_TASKS, Item, TaskSpec, load_builtin_items, load_task

# The paper's GPT-4 headline figures (BPE + SEAS, batch 32, vs SinglePrompt), for the report.
PAPER_GPT4 = {
    "boolq": {"single_accuracy": 90.6, "seas_accuracy": 90.9, "token_share_pct": 27.4, "call_reduction_pct": 84.4},
    "qqp": {"single_accuracy": 87.2, "seas_accuracy": 88.4, "token_share_pct": 18.6, "call_reduction_pct": 90.6},
    "rte": {"single_accuracy": 91.5, "seas_accuracy": 91.1, "token_share_pct": 30.8, "call_reduction_pct": 84.4},
}

VARIANTS = ("paper", "agree", "logprob")
"""SEAS variants: ``paper`` (self-reported confidence, both rounds confident), ``agree`` (the
released code: two agreeing rounds), ``logprob`` (the paper's rule, confidence = label-token
probability >= the threshold)."""


@dataclass(frozen=True)
class GridPoint:
    """One configuration of the grid."""

    task: str
    batch_size: int
    rounds: int
    seas: bool
    variant: str = "paper"
    constrained: bool = False
    """Answer lines forced by a regex (vLLM structured outputs): ``[i] word (sure|unsure)`` for
    every i; SinglePrompt gets the same constraint in its own constrained row."""

    @property
    def label(self) -> str | None:
        """The variant name in summary-variants (``None``: the paper's method, unconstrained)."""
        parts = [self.variant] if self.seas and self.variant != "paper" else []
        if self.constrained:
            parts.insert(0, "constrained")
        return "+".join(parts) or None

    @property
    def method(self) -> str:
        return "single" if self.batch_size == 1 else "batch"

    @property
    def name(self) -> str:
        seas = f"/seas-{self.variant}" if self.seas else ""
        return f"{self.task}/bs{self.batch_size}/k{self.rounds}{seas}{'/constrained' if self.constrained else ''}"

    def config(self, **common: Any) -> BatchPromptConfig:
        return BatchPromptConfig(
            batch_size=self.batch_size, rounds=self.rounds, seas=self.seas,
            seas_rule="agree" if self.variant == "agree" else "confident",
            confidence="logprob" if self.variant == "logprob" else "self", constrained=self.constrained, **common)


def grid(tasks: Sequence[str], batch_sizes: Sequence[int], rounds: Sequence[int], seas_rounds: Sequence[int],
         goal_batch_sizes: Sequence[int] = (16, 32), variants: Sequence[str] = VARIANTS,
         constrained: bool = True) -> list[list[GridPoint]]:
    """Two waves. First the goal rows, per task: SinglePrompt, each goal batch size with one
    round (SEAS's round 1, shared) and with SEAS (every variant; the paper's at every SEAS round
    count, the variants at the largest). Then, with ``constrained``, the same goal rows with the
    answer format forced (SinglePrompt included, as its baseline). Then the rest: other batch
    sizes, 3 and 5 rounds without SEAS, SEAS at the other batch sizes."""
    first: list[GridPoint] = []
    rest: list[GridPoint] = []
    seas_k = [k for k in seas_rounds if k > 1]
    for task in tasks:
        first.append(GridPoint(task, 1, 1, False))
        for bs in batch_sizes:
            goal = bs in goal_batch_sizes
            for k in rounds:
                (first if goal and k == 1 else rest).append(GridPoint(task, bs, k, False))
            for k in seas_k:
                for variant in variants:
                    if variant != "paper" and k != max(seas_k):
                        continue
                    (first if goal else rest).append(GridPoint(task, bs, k, True, variant))
    if constrained:
        first.extend(GridPoint(p.task, p.batch_size, p.rounds, p.seas, p.variant, True) for p in list(first)
                     if not (p.seas and p.variant == "agree"))
    return [first, rest]


@dataclass
class SharedChat:
    """Sends each distinct prompt once (bounded concurrency); concurrent askers share the answer."""

    complete: Callable[[LLMRequest], Any]
    semaphore: asyncio.Semaphore
    """Bounds the requests in flight (shared by every task's chat)."""
    cache: dict[str, asyncio.Future[LLMResponse]] = field(default_factory=dict)
    num_sent: int = 0
    always_logprobs: bool = False
    """Ask every call for logprobs: a prompt shared by a ``logprob`` row and the others (the key
    is the prompt) then serves both."""

    async def _send(self, request: LLMRequest) -> LLMResponse:
        if self.always_logprobs:
            request = replace(request, sampling=replace(request.sampling, logprobs=True))
        async with self.semaphore:
            self.num_sent += 1
            return await self.complete(request)

    async def __call__(self, messages: list[Message], sampling: SamplingOptions) -> LLMResponse:
        key = json.dumps([[m.role, m.content] for m in messages] + [sampling.max_tokens])
        future = self.cache.get(key)
        if future is None or (future.done() and (future.cancelled() or future.exception() is not None)):
            future = asyncio.ensure_future(self._send(LLMRequest(tuple(messages), sampling)))
            self.cache[key] = future
        return await asyncio.shield(future)


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


@dataclass(frozen=True)
class TokenModel:
    """What the paper's accounting needs: the task spec's tokens and each item's data tokens."""

    spec_tokens: int
    """Instructions + few-shot block (message contents, no chat-template tokens)."""
    mean_item_tokens: float
    """Mean tokens of one rendered item."""

    @classmethod
    def of(cls, task: TaskSpec, items: Sequence[Item], count: Callable[[str], int]) -> TokenModel:
        spec = sum(count(m.content) for m in compose_messages(task, []))
        per_item = [count(render_inputs(task, item.inputs)) + 4 for item in items] or [0]
        return cls(spec, statistics.fmean(per_item))

    def paper_tokens(self, result: BatchPromptResult) -> float:
        """The released run.py's rule: spec once per round-1 batch, data per item per round."""
        first = result.per_round[0] if result.per_round else {}
        batches = first.get("num_batches", 0)
        return batches * self.spec_tokens + result.stats.items_asked * self.mean_item_tokens


def detail_row(point: GridPoint, result: BatchPromptResult, single: BatchPromptResult | None,
               tokens: TokenModel | None) -> dict[str, Any]:
    s = result.stats
    row: dict[str, Any] = {
        **summary_row(point, result),
        "variant": point.variant if point.seas else None,
        "constrained": point.constrained,
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
        "confident_answers": s.confident_answers,
        "logprob_missing_calls": s.logprob_missing_calls,
        "cached_input_tokens": s.cached_input_tokens,
        "uncached_input_tokens": s.input_tokens - s.cached_input_tokens,
        "logprob_scored_answers": s.logprob_scored_answers,
        "calibration_calls": s.calibration_calls,
        "seas_exits_by_round": {str(r): sum(1 for v in result.exited_at.values() if v == r)
                                for r in sorted(set(result.exited_at.values()))},
        "per_round": result.per_round,
        "predictions": result.labels,
    }
    if single is not None and single.stats.input_tokens and single.stats.num_calls:
        row["input_token_share_pct"] = round(100.0 * s.input_tokens / single.stats.input_tokens, 1)
        row["call_share_pct"] = round(100.0 * s.num_calls / single.stats.num_calls, 1)
        row["accuracy_delta_vs_single"] = round(100.0 * ((result.accuracy or 0) - (single.accuracy or 0)), 2)
        if tokens is not None and tokens.paper_tokens(single):
            row["paper_accounting_token_share_pct"] = round(
                100.0 * tokens.paper_tokens(result) / tokens.paper_tokens(single), 1)
        row["meets_goal"] = bool(point.seas and point.batch_size in (16, 32)
                                 and row["input_token_share_pct"] <= 30.0 and row["call_share_pct"] <= 20.0
                                 and row["accuracy_delta_vs_single"] >= -2.0)
    return row


def failure_rates_by_batch_size(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per task and batch size: first-attempt item slots without a usable answer / slots asked."""
    out: dict[str, dict[str, float]] = {}
    for task in sorted({r["task"] for r in rows}):
        sizes: dict[int, list[int]] = {}
        for r in rows:
            if r["task"] == task:
                acc = sizes.setdefault(r["batch_size"], [0, 0])
                acc[0] += r["parse_failures"]
                acc[1] += r["items_asked"]
        out[task] = {str(bs): round(f / n, 4) if n else 0.0 for bs, (f, n) in sorted(sizes.items())}
    return out


def plot(rows: list[dict[str, Any]], model: str, path: Path) -> None:
    """Accuracy against input tokens (share of SinglePrompt's), one panel per task."""
    plt = pyplot()

    tasks = sorted({r["task"] for r in rows})
    if not tasks:
        return
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.5), squeeze=False)
    colors = {8: "tab:blue", 16: "tab:orange", 32: "tab:green"}
    markers = {"paper": "s", "agree": "^", "logprob": "D"}
    for ax, task in zip(axes[0], tasks, strict=True):
        for r in (r for r in rows if r["task"] == task):
            share = r.get("input_token_share_pct", 100.0)
            if r["method"] == "single":
                ax.scatter([share], [r["accuracy"]], marker="*", s=220, color="black", zorder=3)
                continue
            marker = markers.get(r.get("variant") or "", "o") if r["seas"] else "o"
            ax.scatter([share], [r["accuracy"]], marker=marker, s=30 + 20 * r["rounds"],
                       color=colors.get(r["batch_size"], "tab:gray"), alpha=0.8,
                       edgecolors="black" if r.get("constrained") else "none")
            tag = {"paper": "S", "agree": "A", "logprob": "L"}.get(r.get("variant") or "", "") if r["seas"] else ""
            tag += "c" if r.get("constrained") else ""
            ax.annotate(f"{r['batch_size']}x{r['rounds']}{tag}", (share, r["accuracy"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.axvline(30, color="red", lw=0.8, ls="--")
        ax.set_title(f"{task} ({model})")
        ax.set_xlabel("input tokens, % of SinglePrompt (goal: <= 30)")
        ax.set_ylabel("accuracy %")
        ax.grid(alpha=0.3)
    fig.suptitle("BatchPrompt: batch x rounds; S square = SEAS (paper), A triangle = SEAS agree-only, "
                 "L diamond = SEAS logprob confidence, circle = BPE, star = SinglePrompt; c / black edge = "
                 "format forced by regex (share vs the constrained SinglePrompt)", fontsize=8)
    save_figure(fig, path)


def _start_fake_server(args: argparse.Namespace, data: dict[str, tuple[TaskSpec, list[Item]]]) -> Any:
    """``--fake-server``: the kit's loopback server over the scripted labelers, in a thread."""
    from bench.batchprompt.responder import BatchPromptModel
    from orchestrator.testing import LoopbackServer

    return LoopbackServer(BatchPromptModel(data.values()), model=args.model).start()


def _make_client(args: argparse.Namespace, data: dict[str, tuple[TaskSpec, list[Item]]],
                 server: Any = None) -> Any:
    if args.dry_run:
        from workflows.batchprompt.scripted import scripted_labeler

        task, items = next(iter(data.values()))
        return scripted_labeler(task, items, error_rate=0.1, unsure_rate=0.2, max_answers=20, model="dry-run")
    from orchestrator.llm.openai import OpenAIClient, OpenAIConfig

    options: dict[str, Any] = {"base_urls": tuple(args.base_url or ["http://fake/v1"]), "model": args.model,
                               "max_retries": 3, "timeout_s": 120.0}
    if args.tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(args.tokenizer)
        options["tokenizer"] = lambda text: tok.encode(text, add_special_tokens=False)
    if server is not None:
        options["base_urls"] = (server.base_url,)
    return OpenAIClient(OpenAIConfig(**options))


class Results:
    """Finished configurations and how to write them (called after each wave and at the end)."""

    def __init__(self, args: argparse.Namespace, data: dict[str, tuple[TaskSpec, list[Item]]],
                 tokens: dict[str, TokenModel], points: list[GridPoint]) -> None:
        self.args = args
        self.data = data
        self.tokens = tokens
        self.points = points
        self.done: dict[GridPoint, BatchPromptResult] = {}
        self.errors: dict[str, str] = {}
        self.started = time.perf_counter()
        self.chats: list[SharedChat] = []
        self.constrained_chats: list[SharedChat] = []
        self.clients: list[Any] = []
        self.exact = bool(args.tokenizer) and not args.dry_run

    def build(self, *, finished: bool) -> dict[str, Any]:
        main_rows, variant_rows, detail_rows = [], [], []
        for point in self.points:
            if point not in self.done:
                continue
            result = self.done[point]
            single = self.done.get(GridPoint(point.task, 1, 1, False, constrained=point.constrained))
            row = summary_row(point, result)
            if point.label is not None:
                variant_rows.append({**row, "variant": point.label})
            else:
                main_rows.append(row)
            detail_rows.append(detail_row(point, result, single, self.tokens.get(point.task)))
        meta = {
            **provenance(),
            "model": self.args.model,
        }
        detail = {
            **meta,
            "dry_run": self.args.dry_run,
            "fake_server": self.args.fake_server,
            "finished": finished,
            "time_limit_s": self.args.time_limit_s,
            "wall_s": round(time.perf_counter() - self.started, 1),
            "num_prompts_sent": sum(c.num_sent for c in self.chats),
            "num_constrained_requests": self.num_constrained_requests(),
            "constraint_rejected": any(self._rejected(c, "structured_outputs") for c in self.clients),
            "logprobs_rejected": any(self._rejected(c, "logprobs") for c in self.clients),
            "num_prompts_asked": sum(r.stats.num_calls for r in self.done.values()),
            "context_window": self.args.context_window,
            "exact_tokenizer": self.exact,
            "concurrency": self.args.concurrency,
            "confidence_threshold": self.args.confidence_threshold,
            "label_scoring": self.args.label_scoring,
            "calibration": self.args.calibration,
            "num_items": {name: len(items) for name, (_, items) in self.data.items()},
            "token_model": {name: {"spec_tokens": t.spec_tokens, "mean_item_tokens": round(t.mean_item_tokens, 1)}
                            for name, t in self.tokens.items()},
            "incomplete": [p.name for p in self.points if p not in self.done and p.name not in self.errors],
            "errors": dict(self.errors),
            "parse_failure_rate_by_batch_size": failure_rates_by_batch_size(
                [r for r in detail_rows if not r["constrained"]]),
            "parse_failure_rate_by_batch_size_constrained": failure_rates_by_batch_size(
                [r for r in detail_rows if r["constrained"]]),
            "paper_gpt4": {t: PAPER_GPT4[t] for t in self.data if t in PAPER_GPT4},
            "results": detail_rows,
        }
        return {"summary": {**meta, "results": main_rows}, "variants": {**meta, "results": variant_rows},
                "detail": detail}

    @staticmethod
    def _rejected(client: Any, field_name: str) -> int:
        """Requests the client sent without ``field_name`` because its server rejected it (the
        product client's count; a dry run's scripted client has none)."""
        return int(getattr(client, "num_rejected", {}).get(field_name, 0))

    def num_constrained_requests(self) -> int:
        """Requests sent with the answer regex (a dry run's scripted client sends none)."""
        if self.args.dry_run:
            return 0
        sent = sum(c.num_sent for c in self.constrained_chats)
        return sent - sum(self._rejected(c, "structured_outputs") for c in self.clients)

    def write(self, *, finished: bool) -> dict[str, Any]:
        out = self.build(finished=finished)
        self.args.out_dir.mkdir(parents=True, exist_ok=True)
        label = self.args.model.rstrip("/").split("/")[-1]
        for name, key in (("summary", "summary"), ("summary-variants", "variants"), ("detail", "detail")):
            path = self.args.out_dir / f"{name}-{label}.json"
            write_json(path, out[key])
        try:
            plot(out["detail"]["results"], label, self.args.out_dir / f"summary-{label}.png")
        except Exception as exc:  # a plot must not cost the numbers
            out["detail"]["errors"]["plot"] = f"{type(exc).__name__}: {exc}"
        return out


async def run_grid(args: argparse.Namespace) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = time.monotonic() + args.time_limit_s if args.time_limit_s else None
    waves = grid(args.tasks, args.batch_sizes, args.rounds, args.seas_rounds, args.goal_batch_sizes, args.variants,
                 constrained=args.constrained)
    points = [p for wave in waves for p in wave]
    data: dict[str, tuple[TaskSpec, list[Item]]] = {}
    for name in args.tasks:
        loaded = load_builtin_items(name, args.data_dir, subset=True, limit=args.limit)
        data[name] = (load_task(name), loaded.items)
    server = None
    if args.dry_run:
        clients = {name: _make_client(args, {name: data[name]}) for name in args.tasks}
    else:
        server = _start_fake_server(args, data) if args.fake_server else None
        shared = _make_client(args, data, server)
        clients = {name: shared for name in args.tasks}
    tokens = {name: TokenModel.of(task, items, clients[name].count_tokens) for name, (task, items) in data.items()}
    in_flight = asyncio.Semaphore(args.concurrency)
    logprobs = not args.dry_run
    chats = {name: SharedChat(clients[name].complete, in_flight, always_logprobs=logprobs) for name in args.tasks}
    # Constrained rows: a chat of their own (their prompts get different answers), same semaphore.
    constrained_chats = {name: SharedChat(clients[name].complete, in_flight, always_logprobs=logprobs)
                         for name in args.tasks}
    results = Results(args, data, tokens, points)
    results.chats = [*chats.values(), *constrained_chats.values()]
    results.constrained_chats = list(constrained_chats.values())
    results.clients = list({id(c): c for c in clients.values()}.values())
    exact = bool(args.tokenizer) and not args.dry_run
    # Without the model's tokenizer the chars/4 estimate can run short: keep 10% headroom.
    window = args.context_window if exact else int(args.context_window * 0.9)
    common = {"seed": args.seed, "max_concurrency": args.concurrency, "context_window": window,
              "max_tokens_per_answer": args.max_tokens_per_answer,
              "confidence_threshold": args.confidence_threshold, "label_scoring": args.label_scoring,
              "calibration": args.calibration}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        job = bar.add_task(f"batchprompt grid ({args.model})", total=len(points))

        async def one(point: GridPoint) -> None:
            task, items = data[point.task]
            try:
                results.done[point] = await run_batchprompt(
                    task,
                    items,
                    point.config(**common),
                    (constrained_chats if point.constrained else chats)[point.task],
                    clients[point.task].count_tokens,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one broken configuration must not lose the others' figures
                results.errors[point.name] = f"{type(exc).__name__}: {exc}"
            bar.advance(job)

        stopped = False
        for wave in waves:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                stopped = True
                break
            jobs = [asyncio.ensure_future(one(p)) for p in wave]
            if not jobs:
                continue
            _, pending = await asyncio.wait(jobs, timeout=remaining)
            for job_ in pending:
                job_.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                stopped = True
                break
            results.write(finished=False)  # a kill during the next wave still leaves these
    for chat in results.chats:  # requests no configuration waits for any more
        for future in chat.cache.values():
            future.cancel()
    for client in {id(c): c for c in clients.values()}.values():
        await client.aclose()
    if server is not None:
        server.stop()
    return results.write(finished=not stopped)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    def ints(s: str) -> list[int]:
        return [int(x) for x in s.split(",") if x]

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", action="append", default=[], help="OpenAI-compatible endpoint (repeatable)")
    p.add_argument("--model", default="", help="model name as the server knows it")
    p.add_argument("--tokenizer", default="", help="HF tokenizer path/name for exact token counts (optional)")
    p.add_argument("--context-window", type=int, default=8192, help="the server's max_model_len")
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--tasks", type=lambda s: s.split(","), default=list(BUILTIN_TASKS))
    p.add_argument("--batch-sizes", type=ints, default=[8, 16, 32])
    p.add_argument("--goal-batch-sizes", type=ints, default=[16, 32], help="batch sizes of the first wave")
    p.add_argument("--rounds", type=ints, default=[1, 3, 5])
    p.add_argument("--seas-rounds", type=ints, default=[3, 5])
    p.add_argument("--variants", type=lambda s: [v for v in s.split(",") if v], default=list(VARIANTS),
                   help=f"SEAS variants, from {','.join(VARIANTS)}")
    p.add_argument("--confidence-threshold", type=float, default=0.75,
                   help="label-token probability from which a logprob answer is confident (0.75: Qwen 0.5B gave its "
                        "label tokens p=0.53-0.85 on a few unlabeled CPU prompts; 0.9 would mark none)")
    p.add_argument("--label-scoring", choices=("text", "logprob"), default="text",
                   help="labels from the answer words (text) or from calibrated label-token logprobs (every row)")
    p.add_argument("--calibration", choices=("mean", "content_free", "none"), default="mean",
                   help="the label prior logprob scoring divides by")
    p.add_argument("--constrained", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the goal rows with the answer format forced by a regex (vLLM structured outputs)")
    p.add_argument("--concurrency", type=int, default=256, help="requests in flight")
    p.add_argument("--max-tokens-per-answer", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="first N items per task")
    p.add_argument("--time-limit-s", type=float, default=330.0,
                   help="cancel what still runs after this many seconds and write the results (0: none)")
    p.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results" / "batchprompt")
    p.add_argument("--dry-run", action="store_true", help="scripted labeler instead of a server (plumbing only)")
    p.add_argument("--fake-server", action="store_true",
                   help="the real HTTP client against an in-process fake server (plumbing only)")
    args = p.parse_args(argv)
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}")
    if args.dry_run or args.fake_server:
        args.model = args.model or ("dry-run" if args.dry_run else "fake-server")
    elif not args.base_url or not args.model:
        p.error("--base-url and --model are required (or --dry-run / --fake-server)")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    out = asyncio.run(run_grid(args))
    d = out["detail"]
    print(f"{len(d['results'])} configurations in {d['wall_s']} s; {d['num_prompts_sent']} prompts sent for "
          f"{d['num_prompts_asked']} asked; errors: {len(d['errors'])}; incomplete: {len(d['incomplete'])}")
    for row in d["results"]:
        print(
            f"  {row['task']:5} {row['method']:6} bs={row['batch_size']:2} k={row['rounds']} "
            f"seas={(row['variant'] or '-'):7}{' C' if row['constrained'] else '  '} acc={row['accuracy']:5.1f} "
            f"in={row['input_tokens']:8} "
            f"out={row['output_tokens']:6} calls={row['calls']:4} fail={row['parse_failure_rate']:.3f} "
            f"tok%={row.get('input_token_share_pct', 100.0):5.1f} "
            f"paper-tok%={row.get('paper_accounting_token_share_pct', 100.0):5.1f} "
            f"calls%={row.get('call_share_pct', 100.0):5.1f} exits={row['seas_exits_by_round']}"
            + ("  GOAL MET" if row.get("meets_goal") else "")
        )
    return out


if __name__ == "__main__":
    main()
