"""PriorDynaFlow benchmark: single-agent CoT vs a fixed chain vs PriorDynaFlow after training.

On the validation splits in ../shared/data (gsm8k, math, humaneval, mbpp), against an
OpenAI-compatible server (vLLM serving Qwen2.5-Coder-0.5B-Instruct):

- cot: one call, "think step by step", answer in the dataset's format;
- fixed: the chain analyst -> solver -> inspector (math) / planner -> coder -> reviewer (code),
  with the same role prompts PriorDynaFlow's agents use;
- priordynaflow: K-fold cross-validation per task family (math = gsm8k + MATH, code = HumanEval +
  MBPP): a fresh Q-table trained on the other folds' items (waves of concurrent episodes, the
  table updated as each episode ends), then frozen and evaluated on the held-out fold. Every
  item is evaluated once.

Accuracy (pass@1 for code, tests run in the python sandbox), tokens (input + output) and LLM
calls per task (PriorDynaFlow's routing calls included), mean path length. Writes summary.json
(the issue's shape), details.json (sizes, config, Q-tables, path and stop-reason counts,
timings) and convergence.png.

The benchmark drives the workflow's LangGraph graph directly with the direct context
(:mod:`orchestrator.direct`: the openai client to the server, the python sandbox tool, steps kept
in memory), not through the Runtime: the store and the ledger would serialize thousands of SQLite
writes into the 4-minute budget. --dry-run plays a script on the kit's scripted LLM.

    python bench/priordynaflow/run.py --base-url http://localhost:8000/v1      # GPU
    python bench/priordynaflow/run.py --dry-run --out /tmp/pdf                  # scripted, CPU
    python bench/priordynaflow/run.py --gguf qwen.gguf --methods priordynaflow  # embedded, CPU

--gguf runs the model in-process on the embedded (local) backend instead of a server: one
generation at a time, for CPU checks of a roster where no GPU is at hand (slow: tens of seconds
per call for a 0.5B model). --methods leaves out rows (e.g. the baselines a GPU run measured).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import random
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import named_paths, provenance, pyplot, save_figure, write_json
from cli.main import read_tasks
from orchestrator.direct import DirectContext
from orchestrator.errors import BadInputError
from orchestrator.llm.base import LLMClient
from orchestrator.llm.local import LocalClient, LocalConfig
from orchestrator.llm.openai import OpenAIClient, OpenAIConfig
from orchestrator.llm.scripted import ScriptedClient, ScriptedConfig
from orchestrator.tools.base import Tool, ToolResult
from orchestrator.tools.registry import ToolRegistry
from orchestrator.tools.sandbox import SandboxLimits, python_tool
from orchestrator.types import Message, SamplingOptions
from workflows.priordynaflow.agents import get_roster, register_roster
from workflows.priordynaflow.config import RETRY_MODES, RouterConfig, WorkflowOptions
from workflows.priordynaflow.episode import task_problem
from workflows.priordynaflow.graph import build, initial_state, result, task_message
from workflows.priordynaflow.learner import LearnerPool
from workflows.priordynaflow.prompt import agent_messages
from workflows.priordynaflow.tasks import ExecResult, cv_folds, get_dataset

DATA = ROOT.parent / "shared" / "data"
DATASETS = ("gsm8k", "math", "humaneval", "mbpp")
METHODS = ("cot", "fixed", "priordynaflow")
FIXED_CHAINS = {"math": ("analyst", "solver", "inspector"), "code": ("planner", "coder", "reviewer")}
# The baselines of a dataset routed with code-check (the default for HumanEval and MBPP) are
# those of the code roster, whose agents and prompts it shares: the same rows as before it.
BASELINE_ROSTER = {"code-check": "code"}
ROUTING_QUESTION = "Who works next? Answer with exactly one of: "
COT_PROMPT = {
    "math": "You are a careful mathematician. Think step by step, writing each calculation out.",
    "code": "You are a careful Python programmer. Think briefly about the approach, then write the function.",
}


# ------------------------------------------------------------------------------------ clients

def openai_client(base_url: str, model: str | None, concurrency: int) -> OpenAIClient:
    """The openai client to one server: ``concurrency`` connections, seed 0 on every request, no
    program hints (a plain vLLM)."""
    return OpenAIClient(OpenAIConfig(base_urls=[base_url], model=model or "", max_connections=concurrency,
                                     send_hints=False, extra_body={"seed": 0}))


def scripted_client(rows: list[dict[str, Any]]) -> ScriptedClient:
    """--dry-run: the kit's scripted LLM answering with :func:`scripted_reply`."""
    return ScriptedClient(ScriptedConfig(scripted_reply(rows)))


def scripted_reply(rows: list[dict[str, Any]]) -> Callable[[Sequence[Message]], str]:
    """The replies of --dry-run, for control flow only (never a quality figure).

    Right answers (the gold, or the canonical code) come with a fixed pseudo-random chance that
    grows once an inspector/reviewer has worked on the task; successors are drawn from the
    options the router offered.
    """
    by_question = {get_dataset(row["_dataset"]).question(row): row for row in rows}

    def reply(messages: Sequence[Message]) -> str:
        if ROUTING_QUESTION in messages[-1].content:  # the constrained routing call
            options = messages[-1].content.rsplit(ROUTING_QUESTION, 1)[1].split(".", 1)[0].split(", ")
            return random.Random(hashlib.sha256(messages[1].content.encode()).hexdigest()).choice(options)
        system, user = messages[0].content, messages[-1].content
        question = user.split("Task:\n", 1)[1].split("\n\nNotes from your teammates", 1)[0]
        row = by_question[question]
        rng = random.Random(hashlib.sha256((system + user).encode()).hexdigest())
        checked = any(f"[{name}]" in user for name in ("inspector", "reviewer")) or "inspector" in system[:40]
        right = rng.random() < (0.8 if checked else 0.4)
        text = f"Working on it.\n{_scripted_answer(row, right)}"
        if "choose who works next" in system:
            options = re.findall(r"^- ([\w-]+):", system.split("choose who works next", 1)[1], re.MULTILINE)
            text += f"\nNEXT: {rng.choice(options)}"
        return text

    return reply


def _scripted_answer(row: dict[str, Any], right: bool) -> str:
    name = row["_dataset"]
    if name == "gsm8k":
        return f"#### {row['answer'] if right else '-1'}"
    if name == "math":
        gold = row["solution"][row["solution"].rfind("\\boxed") :]
        return gold if right else "\\boxed{-1}"
    code = row.get("canonical_solution")
    body = (row["prompt"] + code) if code is not None else row["code"]
    if not right:
        body = f"def {row['entry_point']}(*args):\n    return None"
    return f"```python\n{body}\n```"


# ------------------------------------------------------------------------------------ context

def sandbox_tools(concurrency: int, sandbox: str = "bubblewrap") -> ToolRegistry:
    """The python sandbox tool, at most ``concurrency`` programs at a time.

    ``sandbox="auto"`` runs the code unsandboxed where bubblewrap is missing (a disposable
    benchmark host such as the GPU machine; the choice is recorded in details.json).
    """
    unsafe = sandbox == "none" or (sandbox == "auto" and shutil.which("bwrap") is None)
    if unsafe:
        print("WARNING: python tool UNSANDBOXED (no bubblewrap here); run only on a disposable host", flush=True)
    python = python_tool(SandboxLimits(cpu_s=5, wall_s=10.0), unsafe_unsandboxed_for_trusted_code=unsafe)
    slots = asyncio.Semaphore(concurrency)

    async def run(args: dict[str, Any]) -> ToolResult:
        async with slots:
            return await python.fn(args)

    return ToolRegistry([Tool(python.spec, run)])


def _context(client: LLMClient, tools: ToolRegistry, config: dict[str, Any] | None = None) -> DirectContext:
    return DirectContext(client, run_id="bench", config=config or {}, tools=tools)


def _runner(ctx: DirectContext):
    async def run(code: str) -> ExecResult:
        out = await ctx.call_tool("python", {"code": code})
        return ExecResult(not out.is_error, out.content)

    return run


def _figures(ctx: DirectContext) -> dict[str, int]:
    return {"tokens": ctx.usage.total_tokens, "calls": ctx.num_calls}


# ------------------------------------------------------------------------------------ methods

def _baseline_roster(name: str) -> str:
    return BASELINE_ROSTER.get(name, name)


async def run_cot(client: LLMClient, row: dict[str, Any], args: argparse.Namespace, tools: ToolRegistry) -> dict:
    ds = get_dataset(row["_dataset"])
    ctx = _context(client, tools)
    system = f"{COT_PROMPT[_baseline_roster(ds.roster)]}\n\n{ds.answer_format}"
    max_tokens = args.cot_max_tokens or args.max_tokens
    resp = await ctx.chat([Message("system", system), Message("user", task_message(ds.question(row), []))],
                          sampling=SamplingOptions(max_tokens=max_tokens, temperature=args.temperature))
    solution = ds.extract(resp.text, row)
    ok = await ds.score(row, solution, _runner(ctx))
    return {"success": ok, **_figures(ctx), "path_length": 1}


async def run_fixed(client: LLMClient, row: dict[str, Any], args: argparse.Namespace, tools: ToolRegistry) -> dict:
    ds = get_dataset(row["_dataset"])
    roster = get_roster(_baseline_roster(ds.roster))
    ctx = _context(client, tools)
    notes: list[dict[str, str]] = []
    solution = None
    for name in FIXED_CHAINS[roster.name]:
        role = roster.get(name)
        # The workflow's own turn without routing instructions (marker_in_turn=false's prompt).
        messages = agent_messages(roster, name, ds, row, path=(), candidates=(), notes=notes, marker=False)
        resp = await ctx.chat(list(messages),
                              sampling=SamplingOptions(max_tokens=args.max_tokens, temperature=args.temperature))
        notes.append({"agent": name, "text": resp.text, "observation": ""})
        found = ds.extract(resp.text, row) if role.produces_solution else None
        solution = found if found is not None else solution
    ok = await ds.score(row, solution, _runner(ctx))
    return {"success": ok, **_figures(ctx), "path_length": len(notes)}


async def run_pdf(client: LLMClient, row: dict[str, Any], args: argparse.Namespace, tools: ToolRegistry,
                  pool: LearnerPool, mode: str) -> dict:
    options = {"dataset": row["_dataset"], "mode": mode, "max_tokens": args.max_tokens,
               "temperature": args.temperature, "next_choice": args.next_choice,
               "route_context": args.route_context, "marker_in_turn": args.marker_in_turn,
               "retry": args.retry, "retry_temperature": args.retry_temperature}
    roster = dict(args.roster).get(get_dataset(row["_dataset"]).roster)
    if roster:
        options["roster"] = roster
    ctx = _context(client, tools, {"priordynaflow": options, "qtable_pool": pool})
    state = await build(ctx).compile().ainvoke(initial_state(row), {"recursion_limit": 64})
    out = result(state)
    return {"success": bool(out["success"]), **_figures(ctx),
            "path_length": len(out["path"]), "path": out["path"], "stop_reason": out["stop_reason"],
            "unparsable": out["num_unparsable"],
            "reward": state.get("cumulative_reward", 0.0)}


# ------------------------------------------------------------------------------------ driver

def dataset_file(name: str, files: dict[str, str] | None = None, data_dir: Path = DATA,
                 split: str = "validate") -> Path:
    """The jsonl of dataset ``name``: its ``--datasets NAME=PATH`` file, else
    ``<data_dir>/<name>/<split>.jsonl``."""
    return Path(files[name]) if files and name in files else Path(data_dir) / name / f"{split}.jsonl"


def load_rows(names: list[str], max_items: int | None, seed: int, *, files: dict[str, str] | None = None,
              data_dir: Path = DATA, split: str = "validate",
              skipped: dict[str, list[str]] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Each dataset's rows (a seeded sample of ``max_items``). A row the workflow cannot read
    as that dataset (``check_task``: a missing field, a value of the wrong kind) is left out,
    reported on stderr and in ``skipped``, as is a line that is not JSON (the CLI's
    :func:`cli.main.read_tasks`); a dataset with no readable row is an error."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        path = dataset_file(name, files, data_dir, split)
        if not path.is_file():
            raise BadInputError(f"dataset {name}", "an existing jsonl file", str(path))
        config = {"priordynaflow": {"dataset": name}}
        try:
            items, problems = read_tasks(path, check=lambda row, config=config: task_problem(row, config))
        except BadInputError as exc:
            if not exc.expected.startswith("at least one"):
                raise
            raise BadInputError(f"dataset {path}", f"at least one {name} row", exc.detail or "empty") from None
        for line in problems[:5]:
            print(f"warning: skipped {line}", file=sys.stderr)
        if len(problems) > 5:
            print(f"warning: skipped {len(problems) - 5} more rows of {path}", file=sys.stderr)
        if skipped is not None:
            skipped[name] = problems
        if max_items is not None and len(items) > max_items:
            items = random.Random(seed).sample(items, max_items)
        rows[name] = [{**r, "_dataset": name, "_index": i} for i, r in enumerate(items)]
    return rows


def _interleave(groups: list[list[dict[str, Any]]], seed: int) -> list[dict[str, Any]]:
    merged = [r for g in groups for r in g]
    random.Random(seed).shuffle(merged)
    return merged


def parse_starts(text: str) -> list[tuple[str, str]]:
    """``math=programmer,code=planner`` as pairs: a family and its start agent (``--start``) or the
    roster its datasets use (``--roster``)."""
    pairs = [part.split("=", 1) for part in text.split(",") if part]
    if any(len(p) != 2 for p in pairs):
        raise argparse.ArgumentTypeError(f"expected FAMILY=AGENT,..., got {text!r}")
    return [(family.strip(), agent.strip()) for family, agent in pairs]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from rich.progress import Progress

    started = time.perf_counter()
    for family, agent in args.start:
        register_roster(dataclasses.replace(get_roster(family), start=agent))
    skipped: dict[str, list[str]] = {}
    rows = load_rows(args.datasets, args.max_items, args.seed, files=args.dataset_files, data_dir=Path(args.data_dir),
                     split=args.split, skipped=skipped)
    all_rows = [r for rs in rows.values() for r in rs]
    client = (scripted_client(all_rows) if args.dry_run
              else LocalClient(LocalConfig(gguf_path=args.gguf, model=args.model or Path(args.gguf).stem)) if args.gguf
              else openai_client(args.base_url, args.model, args.concurrency))
    tools = sandbox_tools(args.sandbox_concurrency, args.sandbox)
    router_config = RouterConfig(
        num_explore_steps=args.explore_steps,
        min_path_length=args.min_path_length,
        max_path_length=args.max_path_length,
        update_order=args.update_order,
        min_agents_before_end=args.min_agents_before_end,
        end_after_failed_check=args.end_after_failed_check,
        self_loops=args.self_loops,
    )
    families: dict[str, list[str]] = {}
    for name in args.datasets:
        roster = get_dataset(name).roster
        families.setdefault(dict(args.roster).get(roster, roster), []).append(name)
    folds = {name: cv_folds(len(rows[name]), args.folds, args.seed) for name in args.datasets}

    outcomes: dict[tuple[str, str], list[dict]] = {}
    tables: dict[str, Any] = {}
    traces: dict[str, dict[str, list[float]]] = {}
    timings: dict[str, float] = {}
    deadline = started + args.time_limit_s
    truncated: list[str] = []

    num_train = sum(len(tr) for name in args.datasets for tr, _ in folds[name])
    total = 3 * len(all_rows) + num_train
    with Progress(transient=not sys.stderr.isatty()) as progress:
        bar = progress.add_task("priordynaflow bench", total=total)

        async def tracked(coro):
            out = await coro
            progress.advance(bar)
            return out

        async def baselines() -> None:
            t0 = time.perf_counter()
            for method, fn in (("cot", run_cot), ("fixed", run_fixed)):
                if method not in args.methods:
                    progress.advance(bar, len(all_rows))
                    continue
                res = await asyncio.gather(*(tracked(fn(client, r, args, tools)) for r in all_rows))
                for r, o in zip(all_rows, res, strict=True):
                    outcomes.setdefault((r["_dataset"], method), []).append(o)
            timings["baselines_s"] = time.perf_counter() - t0

        async def family_fold(family: str, k: int) -> None:
            t0 = time.perf_counter()
            pool = LearnerPool(config=router_config, seed=args.seed + k)
            train = _interleave([[rows[n][i] for i in folds[n][k][0]] for n in families[family]], args.seed + k)
            evaluate = [rows[n][i] for n in families[family] for i in folds[n][k][1]]
            rewards: list[float] = []
            for start in range(0, len(train), args.train_wave):
                if time.perf_counter() > deadline:
                    truncated.append(f"{family} fold {k}: trained on {start} of {len(train)} items (time limit)")
                    progress.advance(bar, len(train) - start)
                    break
                wave = train[start : start + args.train_wave]
                res = await asyncio.gather(*(tracked(run_pdf(client, r, args, tools, pool, "train"))
                                             for r in wave))
                rewards.extend(o["reward"] for o in res)
            learner = await pool.get(family, get_roster(family).names)
            tables[f"{family}/fold{k}"] = learner.table.to_dict()
            traces[f"{family}/fold{k}"] = {"max_delta": list(learner.max_deltas), "reward": rewards}
            res = await asyncio.gather(*(tracked(run_pdf(client, r, args, tools, pool, "eval"))
                                         for r in evaluate))
            for r, o in zip(evaluate, res, strict=True):
                outcomes.setdefault((r["_dataset"], "priordynaflow"), []).append(o)
            timings[f"{family}/fold{k}_s"] = time.perf_counter() - t0

        routed = "priordynaflow" in args.methods
        folds_run = [family_fold(f, k) for f in families for k in range(args.folds)] if routed else []
        if not folds_run:
            progress.advance(bar, len(all_rows) + num_train)
        await asyncio.gather(baselines(), *folds_run)
    await client.aclose()

    results = []
    for name in args.datasets:
        for method in (m for m in METHODS if m in args.methods):
            outs = outcomes.get((name, method), [])
            n = max(len(outs), 1)
            results.append({
                "dataset": name,
                "method": method,
                "accuracy": sum(o["success"] for o in outs) / n,
                "tokens_per_task": sum(o["tokens"] for o in outs) / n,
                "calls_per_task": sum(o["calls"] for o in outs) / n,
                "mean_path_length": sum(o["path_length"] for o in outs) / n,
            })
    summary = {
        **provenance(),
        "model": client.model,
        "results": results,
    }
    pdf_outs = {name: outcomes.get((name, "priordynaflow"), []) for name in args.datasets}
    details = {
        "dry_run": args.dry_run,
        "items_per_dataset": {n: len(rows[n]) for n in args.datasets},
        "dataset_files": {n: str(dataset_file(n, args.dataset_files, Path(args.data_dir), args.split))
                          for n in args.datasets},
        "skipped_rows": skipped,
        "subsampled_to": args.max_items,
        "folds": args.folds,
        "router_config": router_config.to_dict(),
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "paths": {n: Counter(" > ".join(o["path"]) for o in outs).most_common(10) for n, outs in pdf_outs.items()},
        "path_successes": {n: dict(Counter(" > ".join(o["path"]) for o in outs if o["success"]))
                           for n, outs in pdf_outs.items()},
        "stop_reasons": {n: dict(Counter(o["stop_reason"] for o in outs)) for n, outs in pdf_outs.items()},
        "unparsable_per_task": {n: sum(o["unparsable"] for o in outs) / max(len(outs), 1)
                                for n, outs in pdf_outs.items()},
        "qtables": tables,
        "convergence": traces,
        "timings_s": {**timings, "total": time.perf_counter() - started},
        "truncated": truncated,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    write_json(out / "details.json", details)
    _plot(traces, out / "convergence.png")
    return summary


def _plot(traces: dict[str, dict[str, list[float]]], path: Path) -> None:
    plt = pyplot()

    fig, (ax_delta, ax_reward) = plt.subplots(1, 2, figsize=(11, 4))
    for name, trace in sorted(traces.items()):
        ax_delta.plot(_rolling(trace["max_delta"]), label=name)
        ax_reward.plot(_rolling(trace["reward"]), label=name)
    ax_delta.set(title="Q-table convergence: max |dQ| per episode (rolling mean 10)", xlabel="training episode",
                 ylabel="max |dQ|")
    ax_reward.set(title="episode reward (rolling mean 10)", xlabel="training episode", ylabel="cumulative reward")
    if traces:
        ax_delta.legend(fontsize=8)
    save_figure(fig, path)


def _rolling(xs: list[float], window: int = 10) -> list[float]:
    return [sum(xs[max(0, i - window + 1) : i + 1]) / len(xs[max(0, i - window + 1) : i + 1]) for i in range(len(xs))]


def _methods(text: str) -> list[str]:
    names = [x for x in text.split(",") if x]
    if not names or any(n not in METHODS for n in names):
        raise argparse.ArgumentTypeError(f"--methods: a comma-separated subset of {', '.join(METHODS)}, got {text!r}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", default="http://localhost:8000/v1", help="OpenAI-compatible server")
    p.add_argument("--model", default=None, help="model name (default: the server's first)")
    p.add_argument("--gguf", default=None, help="run this GGUF model in-process (embedded backend, CPU) "
                                                "instead of calling a server")
    p.add_argument("--methods", default=",".join(METHODS), type=_methods,
                   help="rows to run, of " + ", ".join(METHODS))
    p.add_argument("--datasets", default=",".join(DATASETS), type=lambda text: named_paths(text, DATASETS),
                   metavar="NAME[=PATH],...",
                   help="datasets to run, each from <data-dir>/NAME/<split>.jsonl or the PATH given "
                        "(e.g. mbpp=/data/mbpp/test.jsonl)")
    p.add_argument("--data-dir", default=str(DATA), help="folder with one subfolder per dataset")
    p.add_argument("--split", default="validate", help="file name (without .jsonl) read in each dataset's folder")
    p.add_argument("--max-items", type=int, default=120,
                   help="subsample each dataset to at most this many items (gsm8k has 264)")
    p.add_argument("--folds", type=int, default=2, help="cross-validation folds")
    p.add_argument("--concurrency", type=int, default=256, help="concurrent LLM requests")
    p.add_argument("--sandbox-concurrency", type=int, default=12)
    p.add_argument("--sandbox", choices=("bubblewrap", "auto", "none"), default="bubblewrap",
                   help="how generated code runs: bubblewrap (required), auto (unsandboxed where bubblewrap "
                        "is missing: disposable hosts only), none (UNSAFE)")
    p.add_argument("--train-wave", type=int, default=40, help="training episodes run concurrently per wave")
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--explore-steps", type=int, default=RouterConfig.num_explore_steps)
    p.add_argument("--min-path-length", type=int, default=0,
                   help="short-path penalty threshold (paper code: 5; 0 lets the table learn short paths)")
    p.add_argument("--max-path-length", type=int, default=6)
    p.add_argument("--next-choice", choices=("marker", "constrained", "auto"), default="marker",
                   help="how an agent's successor is read: its NEXT line, a routing call constrained to the "
                        "candidates' names (vLLM structured outputs), or that call only when the line names none")
    p.add_argument("--route-context", choices=("compact", "brief", "full"), default="compact",
                   help="what the routing call sends: the task, the path and the reply's end (compact; brief: shorter "
                        "cuts of both), or the "
                        "agent's whole turn and reply (full, the first version)")
    p.add_argument("--update-order", choices=("forward", "backward"), default="forward",
                   help="order an episode's transitions are learned in (backward: the END reward reaches every "
                        "hand-off of the path at once)")
    p.add_argument("--min-agents-before-end", type=int, default=1, help="END is offered only once this many ran")
    p.add_argument("--end-after-failed-check", action="store_true",
                   help="a runner or checker may propose END after a failed check when END leads (RouterConfig)")
    p.add_argument("--retry", choices=RETRY_MODES, default=None,
                   help="how an agent works after a failed check (default: the roster's): like any turn, "
                        "fixing with the failure shown, or a fresh attempt (both without routing instructions, "
                        "at --retry-temperature, back to the checker)")
    p.add_argument("--retry-temperature", type=float, default=WorkflowOptions.retry_temperature)
    p.add_argument("--start", type=parse_starts, default=[], metavar="FAMILY=AGENT,...",
                   help="the agent each episode of a roster starts with (e.g. math=programmer; default the roster's)")
    p.add_argument("--roster", type=parse_starts, default=[], metavar="FAMILY=ROSTER,...",
                   help="route the datasets of a roster with another one (e.g. code-check=code: HumanEval and MBPP "
                        "with the LLM tester instead of their default runner; math=math-check: GSM8K and MATH "
                        "started by the programmer, with a checker; a roster's router defaults replace the "
                        "router flags they name)")
    p.add_argument("--no-marker-in-turn", dest="marker_in_turn", action="store_false",
                   help="agent turns without routing instructions (the prompt of the fixed chain); the constrained "
                        "routing call alone picks the next agent (needs --next-choice constrained)")
    p.add_argument("--no-self-loops", dest="self_loops", action="store_false",
                   help="leave the running agent out of its own successors (no coder -> coder)")
    p.add_argument("--cot-max-tokens", type=int, default=None,
                   help="the CoT baseline's max_tokens (default --max-tokens; set it to PriorDynaFlow's tokens "
                        "per task for CoT at equal tokens)")
    p.add_argument("--time-limit-s", type=float, default=150.0, help="stop training waves after this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dry-run", action="store_true", help="scripted backend, small sizes, CPU")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "priordynaflow"))
    args = p.parse_args(argv)
    args.dataset_files = {name: path for name, path in args.datasets.items() if path}
    args.datasets = list(args.datasets)
    if args.dry_run and args.max_items == 120:
        args.max_items = 6
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    try:
        summary = asyncio.run(main_async(args))
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    for r in summary["results"]:
        print(f"{r['dataset']:10s} {r['method']:14s} acc {r['accuracy']:.3f}  tokens {r['tokens_per_task']:8.1f}  "
              f"calls {r['calls_per_task']:.2f}  path {r['mean_path_length']:.2f}")
    return summary


if __name__ == "__main__":
    main()
