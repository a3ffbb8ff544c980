"""``quotaflow bench bats``: BATS and its baselines, methods x per-tool budgets, on HotpotQA.

Every (method, budget, question) is one run through the Runtime, so the numbers come from the
store: tokens from the LLM call records, tool units from the tool call records, budget
violations from the ledger's accounts (spent or recorded units above a limit). All five methods
run in one harness (workflows.bats.agent): same tools, demo exchange, answer format, answer
extraction and a turn cap derived from the budget; ``react`` is the harness's plain loop
(``react_harness``), not the runtime demo's ``react`` workflow. Outputs, under ``--out``
(default ``bench/results/bats``), one set per model (``<slug>`` from ``--model`` or ``--name``):

- ``summary-<slug>.json``: the machine-checked summary (commit, machine, date, model, dataset,
  budget_violations, results per method and budget);
- ``details-<slug>.json``: the same cells with the diagnostics (invalid verifier JSON rate,
  unused budget, answer length, extraction calls, stop reasons, failures) and every run's numbers;
- ``cost_accuracy-<slug>.png``: accuracy against unified cost per question, one line per method;
- with ``--primary`` also ``summary.json``/``details.json``/``cost_accuracy.png`` (the copy the
  issue's checker and docs/benchmarks.md read: the Qwen run).

Speed: the questions are dealt round-robin to ``--workers`` processes (each with its own SQLite
store under ``<out>/work-<slug>``), each running every cell on its questions, question by
question, with ``--concurrency`` programs in flight in total. ``--time-limit S`` cancels the runs
still going shortly before S seconds and writes the results over the questions that every cell
finished (the summary compares methods on the same questions; details say how many).
``--dry-run`` uses a deterministic rule client instead of a model (control flow only; its
accuracy means nothing) and writes under ``<out>/dry_run``.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import Empty
from typing import Annotated, Any

import typer

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: bench.common lives in the checkout
    sys.path.insert(0, str(ROOT))

from bench.common import provenance, pyplot, save_figure, write_json

ALL_METHODS = ("react", "tracker", "bats", "forcing", "parallel")
METHOD_WORKFLOWS = {"react": "react_harness"}
"""Benchmark method -> registered workflow, where they differ: ``react`` is plain ReAct in the
shared harness (workflows.bats), not the runtime demo's ``react`` workflow, so all five methods
share the tools, demo, answer format, answer extraction and budget-derived turn cap."""
SUMMARY_KEYS = ("method", "budget", "accuracy", "f1", "tool_units", "tokens", "unified_cost_usd")
BUDGET_TOOLS = ("search", "browse")
DRY_RUN_MODEL = "dry-run-rule"
_EPS = 1e-9
LONG_ANSWER_CHARS = 80
"""Answers longer than this are counted as pasted passages in the diagnostics."""
CUT_SAMPLE_CHARS = 300
"""Characters kept of a run's first cut reply (details files)."""


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark invocation."""

    dataset: Path
    """HotpotQA-format jsonl (question, answer, _id, context)."""
    budgets: tuple[int, ...]
    """Units per tool (the same limit for search and browse)."""
    methods: tuple[str, ...]
    """Registered workflow names."""
    backend: str = "openai"
    """Runtime backend (openai, local, scripted); ignored with dry_run."""
    backend_options: dict[str, Any] = field(default_factory=dict)
    """Backend options (base_urls, model, ...)."""
    model: str = ""
    """Model name reported in the summary."""
    limit: int | None = None
    """Only the first N questions."""
    concurrency: int = 128
    """Programs in flight, over all workers."""
    workers: int = 1
    """Processes sharing the work (each has its own SQLite store)."""
    out_dir: Path = Path("bench/results/bats")
    """Where the results go."""
    corpus: Path | None = None
    """A built corpus database; default: built from the dataset's paragraphs into out_dir."""
    dry_run: bool = False
    """Deterministic rule client instead of a model."""
    options: dict[str, Any] = field(default_factory=dict)
    """Workflow options for every run (e.g. max_turns, num_samples); a key ``METHOD.NAME`` sets
    ``NAME`` for that method's runs only (``bats.agent_plan``: the baselines have no such option)."""
    time_limit_s: float | None = None
    """Wall-clock limit: runs still going then are cancelled and what finished is written."""
    name: str = ""
    """File suffix: ``summary-<name>.json`` etc. (default: from the model name)."""
    primary: bool = False
    """Also write the unsuffixed ``summary.json``/``details.json``/``cost_accuracy.png``."""

    @property
    def slug(self) -> str:
        raw = self.name or (DRY_RUN_MODEL if self.dry_run else self.model) or self.backend
        return re.sub(r"[^A-Za-z0-9._-]+", "-", raw.rsplit("/", 1)[-1]).strip("-") or "model"

    def __post_init__(self) -> None:
        from orchestrator.errors import BadInputError

        for key in self.options:
            scope = key.split(".", 1)[0] if "." in key else None
            if scope is not None and scope not in self.methods:
                methods = ", ".join(self.methods)
                raise BadInputError(f"--option {key}", f"METHOD.NAME with METHOD one of --methods ({methods})")

    def options_for(self, method: str) -> dict[str, Any]:
        """The workflow options of ``method``'s runs: every unscoped option and its own."""
        shared = {k: v for k, v in self.options.items() if "." not in k}
        return shared | {k.split(".", 1)[1]: v for k, v in self.options.items() if k.startswith(f"{method}.")}


# -- records and aggregation (pure) -------------------------------------------------------------


@dataclass
class RunRecord:
    """The raw numbers of one run."""

    method: str
    budget: int
    qid: str
    status: str
    answer: str
    gold: str
    em: float
    f1: float
    tool_units: dict[str, float]
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    num_llm_calls: int
    cost_usd: float
    violations: int
    unused_units: float
    limit_units: float
    num_refused: int = 0
    num_verifier_calls: int = 0
    num_invalid_json: int = 0
    num_truncated_json: int = 0
    num_format_errors: int = 0
    num_cut_replies: int = 0
    """Agent replies cut at their max_tokens."""
    num_example_copies: int = 0
    """Agent actions that copied the worked example (not run, not taken as answers)."""
    actions: dict[str, list[str]] = field(default_factory=dict)
    """What the agent did, by kind, over all its attempts (``{"search": [...], "answer": [...]}``)."""
    num_extractions: int = 0
    num_reads: int = 0
    """Reading calls (the answer read from the attempt's tool results, ``answer_from="evidence"``)."""
    agent_answer: str = ""
    """The agent's own answer line (the last attempt's), scored beside the read answer."""
    cut_by_purpose: dict[str, int] = field(default_factory=dict)
    """Replies of any call that ran into their max_tokens (finish reason ``length``), by purpose."""
    cut_sample: str = ""
    """The start of the run's first cut reply and its purpose: what the model was writing."""
    stop: str = ""
    error: str = ""
    attempt_answers: list[str] = field(default_factory=list)
    """BATS: each attempt's answer, in order (empty for the single-loop methods)."""
    attempt_decisions: list[str] = field(default_factory=list)
    """BATS: the verifier's decision on each attempt (SUCCESS, CONTINUE, PIVOT; empty when unverified)."""
    selection: str = ""
    """BATS: how the final answer was chosen among the attempts (unanimous, judge, fallback, none)."""


def _actions(attempts: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """The attempts' action logs joined, each value cut to 80 characters."""
    out: dict[str, list[str]] = {}
    for attempt in attempts:
        for kind, values in (attempt.get("actions") or {}).items():
            out.setdefault(kind, []).extend(str(v)[:80] for v in values)
    return out


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _attempt_figures(rs: Sequence[RunRecord]) -> dict[str, Any]:
    """Where BATS's answer came from, per cell of runs with attempts: the first attempt's accuracy
    (what the Tracker's loop alone would answer), any attempt's (the selection's ceiling), what
    ``selection="vote"`` would have answered over the same attempts (the choice is made after the
    last attempt, so this is exact, paired with the run's own selection), runs where an attempt
    was right and the chosen answer was not, and how answers were chosen."""
    from workflows.bats.scoring import exact_match
    from workflows.bats.selection import vote_select

    with_attempts = [r for r in rs if r.attempt_answers]
    if not with_attempts:
        return {}
    right = [[exact_match(a, r.gold) for a in r.attempt_answers] for r in with_attempts]
    voted = [vote_select([{"answer": a} for a in r.attempt_answers])[0] for r in with_attempts]
    # Accuracies are over every run of the cell: a run without attempts (failed) counts as wrong.
    return {
        "attempts_per_run": _mean([len(r.attempt_answers) for r in with_attempts]),
        "first_attempt_accuracy": sum(marks[0] for marks in right) / len(rs),
        "any_attempt_accuracy": sum(max(marks) for marks in right) / len(rs),
        "vote_accuracy": sum(exact_match(a, r.gold) for a, r in zip(voted, with_attempts, strict=True)) / len(rs),
        "selection_lost": sum(max(marks) > r.em for marks, r in zip(right, with_attempts, strict=True)),
        "selection_methods": dict(sorted(Counter(r.selection for r in with_attempts).items())),
        "decisions": dict(sorted(Counter(d for r in with_attempts for d in r.attempt_decisions).items())),
    }


def _count_by_purpose(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for one in counts:
        for purpose, n in one.items():
            total[purpose] = total.get(purpose, 0) + n
    return dict(sorted(total.items()))


def summarize(records: Sequence[RunRecord]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(summary results, detailed cells, total budget violations) from run records.

    Means are per question; a failed run counts as a wrong answer with whatever it spent.
    """
    from workflows.bats.scoring import exact_match
    cells: dict[tuple[str, int], list[RunRecord]] = {}
    for r in records:
        cells.setdefault((r.method, r.budget), []).append(r)
    summary, details = [], []
    for (method, budget), rs in sorted(cells.items(), key=lambda kv: (ALL_METHODS.index(kv[0][0])
                                                                      if kv[0][0] in ALL_METHODS else 99, kv[0])):
        row = {
            "method": method,
            "budget": budget,
            "accuracy": _mean([r.em for r in rs]),
            "f1": _mean([r.f1 for r in rs]),
            "tool_units": _mean([sum(r.tool_units.values()) for r in rs]),
            "tokens": _mean([r.input_tokens + r.output_tokens for r in rs]),
            "unified_cost_usd": _mean([r.cost_usd for r in rs]),
        }
        summary.append(row)
        verifier_calls = sum(r.num_verifier_calls for r in rs)
        limit_units = sum(r.limit_units for r in rs)
        details.append(
            {
                **row,
                "num_runs": len(rs),
                "num_failed": sum(r.status != "succeeded" for r in rs),
                "num_answered": sum(bool(r.answer.strip()) for r in rs),
                "budget_violations": sum(r.violations for r in rs),
                "units_by_tool": {t: _mean([r.tool_units.get(t, 0.0) for r in rs]) for t in BUDGET_TOOLS},
                "unused_budget_fraction": (sum(r.unused_units for r in rs) / limit_units) if limit_units else None,
                "invalid_verifier_json_rate": (sum(r.num_invalid_json for r in rs) / verifier_calls)
                if verifier_calls
                else None,
                "num_verifier_calls": verifier_calls,
                "truncated_verifier_json_rate": (sum(r.num_truncated_json for r in rs) / verifier_calls)
                if verifier_calls
                else None,
                "format_errors_per_run": _mean([r.num_format_errors for r in rs]),
                "cut_replies_per_run": _mean([r.num_cut_replies for r in rs]),
                "example_copies_per_run": _mean([r.num_example_copies for r in rs]),
                "cut_calls_by_purpose": _count_by_purpose(r.cut_by_purpose for r in rs),
                "long_answer_fraction": _mean([len(r.answer) > LONG_ANSWER_CHARS for r in rs]),
                "mean_answer_chars": _mean([len(r.answer) for r in rs]),
                "extraction_calls_per_run": _mean([r.num_extractions for r in rs]),
                "reading_calls_per_run": _mean([r.num_reads for r in rs]),
                "agent_line_accuracy": _mean([exact_match(r.agent_answer, r.gold) if r.agent_answer else 0.0
                                              for r in rs]),
                "stop_reasons": {k: sum(r.stop == k for r in rs) for k in sorted({r.stop for r in rs})},
                "refused_calls": sum(r.num_refused for r in rs),
                "llm_calls_per_run": _mean([r.num_llm_calls for r in rs]),
                "cached_input_tokens": _mean([r.cached_input_tokens for r in rs]),
                "total_cost_usd": sum(r.cost_usd for r in rs),
                **_attempt_figures(rs),
            }
        )
    return summary, details, sum(r.violations for r in records)


def shard_questions(questions: Sequence[dict[str, Any]], workers: int) -> list[list[dict[str, Any]]]:
    """Questions dealt round-robin to workers; every worker runs every cell on its questions, so
    the load is even whatever the cells cost, and a time limit cuts every cell alike."""
    n = max(1, min(workers, len(questions)))
    return [s for s in (list(questions[i::n]) for i in range(n)) if s]


def complete_questions(records: Sequence[RunRecord], cells: Sequence[tuple[str, int]]) -> set[str]:
    """Question ids with a record in every cell (the fair set after a time limit)."""
    have: dict[str, set[tuple[str, int]]] = {}
    for r in records:
        have.setdefault(r.qid, set()).add((r.method, r.budget))
    need = set(cells)
    return {q for q, got in have.items() if need <= got}


def shard_cells(cells: Sequence[tuple[str, int]], workers: int) -> list[list[tuple[str, int]]]:
    """Spread (method, budget) cells over workers, heaviest first onto the least loaded."""
    weight = {"bats": 3.0, "parallel": 3.0, "forcing": 2.0}
    shards: list[list[tuple[str, int]]] = [[] for _ in range(max(1, min(workers, len(cells))))]
    loads = [0.0] * len(shards)
    for cell in sorted(cells, key=lambda c: -weight.get(c[0], 1.0) * (1 + c[1] / 10)):
        i = loads.index(min(loads))
        shards[i].append(cell)
        loads[i] += weight.get(cell[0], 1.0) * (1 + cell[1] / 10)
    return [s for s in shards if s]


# -- the dry-run script (control flow only) -----------------------------------------------------

_URL = re.compile(r"<(wiki://[^>]+)>")


def dry_run_reply(messages: Sequence[Any]) -> str:
    """A deterministic stand-in for a model, played by the kit's scripted LLM: searches the
    question, reads the first hit, answers with that page's title (the reading call too: the first
    hit's title); the verifier says SUCCESS, the judge picks 1. Never a quality figure."""
    from workflows.bats import prompts

    system = messages[0].content
    if system == prompts.PLANNER_SYSTEM:
        return "explore: the entity in the question\nverify: the answer fits"
    if system == prompts.VERIFIER_SYSTEM:
        return ('{"verdicts": ["satisfied", "satisfied"], "decision": "SUCCESS", '
                '"justification": "dry run", "summary": "dry run"}')
    if system == prompts.JUDGE_SYSTEM:
        return "1"
    if system == prompts.EXTRACT_SYSTEM:
        return messages[-1].content.split("Long answer: ", 1)[-1].split()[0]
    if system == prompts.READ_SYSTEM:  # the first page title among the results
        hits = re.findall(r"^\s*1\. (.+?) <wiki://", messages[-1].content, re.MULTILINE)
        return hits[0] if hits else ""
    from workflows.bats.agent import strip_demo

    messages = strip_demo(messages)
    observations = [m.content for m in messages if m.role == "tool"]
    if not observations:
        question = messages[1].content.splitlines()[0].removeprefix("Question: ")
        return f"search: {question}"
    if len(observations) == 1 and (m := _URL.search(observations[0])):
        return f"browse: {m.group(1)}"
    titles = re.findall(r"^# (.+)$", observations[-1], re.MULTILINE)
    return f"answer: {titles[0] if titles else 'unknown'}"


def dry_run_client() -> Any:
    """The kit's scripted LLM playing :func:`dry_run_reply`."""
    from orchestrator.llm.scripted import ScriptedClient, ScriptedConfig

    return ScriptedClient(ScriptedConfig(dry_run_reply, model=DRY_RUN_MODEL))


# -- running ------------------------------------------------------------------------------------


def load_questions(path: Path, limit: int | None) -> list[dict[str, Any]]:
    """Dataset rows that have a question and a gold answer."""
    from orchestrator.errors import BadInputError

    rows: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BadInputError(f"--dataset {path}", "a readable HotpotQA jsonl file", str(exc)) from exc
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{path}:{lineno}", "one JSON object per line", exc.msg) from None
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or "answer" not in row:
            raise BadInputError(f"{path}:{lineno}", 'an object with "question" and "answer"')
        rows.append({"id": str(row.get("_id", lineno)), "question": row["question"], "answer": str(row["answer"])})
        if limit is not None and len(rows) >= limit:
            break
    return rows


async def _collect(rt: Any, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Per run: token usage by model, tool units and refusals by tool, ledger accounts."""
    from sqlalchemy import case, func, select

    from budget.tables import BudgetAccountRow
    from orchestrator.store.models import LLMCallRow, ToolCallRow

    out: dict[str, dict[str, Any]] = {rid: {"llm": {}, "tools": {}, "refused": 0, "accounts": [], "purposes": {},
                                            "cut": {}, "cut_sample": ""} for rid in run_ids}
    for start in range(0, len(run_ids), 500):
        chunk = run_ids[start : start + 500]
        async with rt.store.session() as s:
            llm = (await s.execute(
                select(LLMCallRow.run_id, LLMCallRow.model, func.count(), func.sum(LLMCallRow.input_tokens),
                       func.sum(LLMCallRow.cached_input_tokens), func.sum(LLMCallRow.output_tokens))
                .where(LLMCallRow.run_id.in_(chunk)).group_by(LLMCallRow.run_id, LLMCallRow.model)
            )).all()
            purposes = (await s.execute(
                select(LLMCallRow.run_id, LLMCallRow.purpose, func.count())
                .where(LLMCallRow.run_id.in_(chunk)).group_by(LLMCallRow.run_id, LLMCallRow.purpose)
            )).all()
            cut = (await s.execute(
                select(LLMCallRow.run_id, LLMCallRow.purpose, LLMCallRow.response)
                .where(LLMCallRow.run_id.in_(chunk), LLMCallRow.finish_reason == "length").order_by(LLMCallRow.id)
            )).all()
            tools = (await s.execute(
                select(ToolCallRow.run_id, ToolCallRow.tool, func.sum(ToolCallRow.units),
                       func.sum(case((ToolCallRow.refused, 1), else_=0)))
                .where(ToolCallRow.run_id.in_(chunk)).group_by(ToolCallRow.run_id, ToolCallRow.tool)
            )).all()
            accounts = (await s.execute(
                select(BudgetAccountRow).where(BudgetAccountRow.scope.in_([f"run:{r}" for r in chunk]))
            )).scalars().all()
        for rid, model, n, i, c, o in llm:
            out[rid]["llm"][model or "?"] = (int(n), int(i or 0), int(c or 0), int(o or 0))
        for rid, purpose, n in purposes:
            out[rid]["purposes"][purpose or "?"] = int(n)
        for rid, purpose, response in cut:
            one = out[rid]
            one["cut"][purpose or "?"] = one["cut"].get(purpose or "?", 0) + 1
            one["cut_sample"] = one["cut_sample"] or f"[{purpose}] {(response or '')[:CUT_SAMPLE_CHARS]}"
        for rid, tool, units, refused in tools:
            out[rid]["tools"][tool] = float(units or 0.0)
            out[rid]["refused"] += int(refused or 0)
        for a in accounts:
            out[a.scope.removeprefix("run:")]["accounts"].append((a.resource, a.limit_amount, a.spent, a.reserved))
    return out


def _record(method: str, budget: int, q: dict[str, Any], run_id: str, status: str, result: dict[str, Any] | None,
            error: str, store: dict[str, Any], pricing: Any) -> RunRecord:
    from budget.costs import unified_cost
    from orchestrator.types import Usage
    from workflows.bats.scoring import exact_match, f1_score

    answer = str((result or {}).get("answer") or "")
    usage = {m: Usage(i, c, o) for m, (_, i, c, o) in store.get("llm", {}).items()}
    tools = store.get("tools", {})
    cost = unified_cost(usage, tools, pricing).total_usd
    violations, unused, limit_units = 0, 0.0, 0.0
    for resource, limit, spent, reserved in store.get("accounts", []):
        if limit is None:
            continue
        tool = resource.removeprefix("tool:")
        recorded = tools.get(tool, 0.0) if resource.startswith("tool:") else 0.0
        if spent + reserved > limit + _EPS or recorded > limit + _EPS:
            violations += 1
        if resource.startswith("tool:"):
            unused += max(limit - spent, 0.0)
            limit_units += limit
    stats = (result or {}).get("stats", {}) or {}
    purposes = store.get("purposes", {})
    attempts = (result or {}).get("attempts") or []
    stop = str(stats.get("stop") or (attempts[-1].get("stop", "") if attempts else ""))
    return RunRecord(
        method=method, budget=budget, qid=q["id"], status=status, answer=answer, gold=q["answer"],
        em=exact_match(answer, q["answer"]), f1=f1_score(answer, q["answer"]), tool_units=dict(tools),
        input_tokens=sum(u.input_tokens for u in usage.values()),
        cached_input_tokens=sum(u.cached_input_tokens for u in usage.values()),
        output_tokens=sum(u.output_tokens for u in usage.values()),
        num_llm_calls=sum(n for n, *_ in store.get("llm", {}).values()),
        cost_usd=cost, violations=violations, unused_units=unused, limit_units=limit_units,
        num_refused=int(store.get("refused", 0)),
        num_verifier_calls=int(stats.get("num_verifier_calls", 0)),
        num_invalid_json=int(stats.get("num_invalid_json", 0)),
        num_truncated_json=int(stats.get("num_truncated_json", 0)),
        num_format_errors=int(stats.get("num_format_errors", 0)),
        num_cut_replies=int(stats.get("num_cut_replies", 0)),
        num_example_copies=int(stats.get("num_example_copies", 0)),
        actions=_actions(attempts or [stats]),
        num_extractions=sum(n for p, n in purposes.items() if p.endswith("_extract")),
        num_reads=sum(n for p, n in purposes.items() if p.endswith("_read")),
        agent_answer=str(stats.get("agent_answer") or (attempts[-1].get("agent_answer", "") if attempts else "")),
        cut_by_purpose=dict(store.get("cut", {})), cut_sample=str(store.get("cut_sample", "")),
        stop=stop,
        error=error,
        attempt_answers=[str(a.get("answer") or "") for a in attempts],
        attempt_decisions=[str(a.get("decision") or "") for a in attempts],
        selection=str(((result or {}).get("selection") or {}).get("method", "")),
    )


async def run_cells(cfg: BenchConfig, cells: Sequence[tuple[str, int]], questions: Sequence[dict[str, Any]],
                    db_path: Path, corpus_path: Path, concurrency: int,
                    on_done: Callable[[], None] | None = None, deadline: float | None = None) -> list[RunRecord]:
    """Run every question of every cell through one Runtime (one SQLite store) and score it.

    Runs start question by question (all cells of the first question, then the next), so when
    ``deadline`` (a ``time.time()`` value) passes, the runs still going are cancelled and the
    finished ones, spread evenly over the cells, are scored."""
    from orchestrator.runtime import Runtime
    from orchestrator.settings import Settings
    from orchestrator.tools.corpus import Corpus, browse_tool, search_tool
    from orchestrator.tools.registry import ToolRegistry

    corpus = Corpus(corpus_path)
    registry = ToolRegistry([search_tool(corpus), browse_tool(corpus)])
    backend = "dryrun" if cfg.dry_run else cfg.backend
    clients = {"dryrun": dry_run_client()} if cfg.dry_run else None
    rt = Runtime(Settings(db_url=f"sqlite:///{db_path}", home=db_path.parent, corpus_path=corpus_path),
                 tools=registry, clients=clients)  # type: ignore[arg-type]
    sem = asyncio.Semaphore(max(1, concurrency))
    outcomes: list[tuple[str, int, dict[str, Any], str, str, dict[str, Any] | None, str]] = []

    async def one(method: str, budget: int, q: dict[str, Any]) -> None:
        async with sem:
            try:
                res = await rt.run(
                    METHOD_WORKFLOWS.get(method, method),
                    {"question": q["question"]},
                    budget=f"search={budget},browse={budget}",
                    backend=backend,
                    backend_options=dict(cfg.backend_options),
                    tools=list(BUDGET_TOOLS),
                    options=cfg.options_for(method),
                )
                outcomes.append((method, budget, q, res.run_id, res.status, res.result, res.error or ""))
            except Exception as exc:  # one broken run must not sink the benchmark
                outcomes.append((method, budget, q, "", "error", None, f"{type(exc).__name__}: {exc}"))
        if on_done is not None:
            on_done()

    try:
        tasks = [asyncio.create_task(one(m, b, q)) for q in questions for m, b in cells]
        timeout = None if deadline is None else max(0.0, deadline - time.time())
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        store = await _collect(rt, [o[3] for o in outcomes if o[3]])
        return [_record(m, b, q, rid, status, result, err, store.get(rid, {}), rt.pricing)
                for m, b, q, rid, status, result, err in outcomes]
    finally:
        await rt.aclose()


def _worker(cfg: BenchConfig, cells: list[tuple[str, int]], questions: list[dict[str, Any]], db_path: Path,
            corpus_path: Path, concurrency: int, queue: Any, deadline: float | None = None) -> list[dict[str, Any]]:
    records = asyncio.run(run_cells(cfg, cells, questions, db_path, corpus_path, concurrency,
                                    on_done=lambda: queue.put(1), deadline=deadline))
    return [asdict(r) for r in records]


def _build_corpus(cfg: BenchConfig, work: Path) -> Path:
    if cfg.corpus is not None:
        return cfg.corpus
    from orchestrator.tools.corpus import CorpusSource, build_corpus

    path = work / "corpus.db"
    build_corpus(path, [CorpusSource(cfg.dataset, "hotpotqa")])
    return path


COLLECT_MARGIN_S = 20.0
"""Seconds before the time limit at which runs are cancelled, left for scoring and writing."""


def parse_option_items(items: Iterable[str]) -> dict[str, Any]:
    """``--option`` values (``KEY=VALUE``, the value read as JSON and else as text) by key."""
    from orchestrator.errors import BadInputError

    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise BadInputError(f"--option {item}", "KEY=VALUE (VALUE as JSON, e.g. max_turns=8)")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def check_methods(cfg: BenchConfig) -> None:
    """Refuse (BadInputError) an unknown method, or an option one of the methods' workflows does
    not declare or whose value it refuses, before any run starts (not as every run's error)."""
    from orchestrator import workflow as workflows

    for method in cfg.methods:
        workflows.get(METHOD_WORKFLOWS.get(method, method)).check_options(cfg.options_for(method))


def run_benchmark(cfg: BenchConfig, *, progress: Callable[[int], None] | None = None,
                  started: float | None = None) -> list[RunRecord]:
    """Run all methods x budgets x questions; ``progress(n)`` is called as runs finish.

    Each worker process takes every cell on its share of the questions (own SQLite store under
    ``<out>/work-<slug>``); with ``cfg.time_limit_s`` the workers stop starting and cancel runs
    ``COLLECT_MARGIN_S`` before the limit (counted from ``started``, a ``time.time()``)."""
    check_methods(cfg)
    questions = load_questions(cfg.dataset, cfg.limit)
    work = cfg.out_dir / f"work-{cfg.slug}"
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("shard*.db*"):
        old.unlink()
    corpus = _build_corpus(cfg, work)
    cells = [(m, b) for m in cfg.methods for b in cfg.budgets]
    shards = shard_questions(questions, cfg.workers)
    per_worker = max(1, cfg.concurrency // len(shards))
    tick = (lambda: progress(1)) if progress else None
    deadline = None
    if cfg.time_limit_s is not None:
        margin = min(COLLECT_MARGIN_S, cfg.time_limit_s / 4)
        deadline = (started if started is not None else time.time()) + cfg.time_limit_s - margin
    if len(shards) == 1:
        return asyncio.run(run_cells(cfg, cells, shards[0], work / "shard0.db", corpus, cfg.concurrency, tick,
                                     deadline=deadline))
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("spawn")
    # A worker that has not returned this long after the deadline is given up (its runs are lost,
    # the others' are written): the time limit must always leave a result file.
    hard_stop = None if deadline is None else deadline + 0.75 * (cfg.time_limit_s or 0) / 4 + 5
    rows: list[dict[str, Any]] = []
    with ctx.Manager() as manager:
        pool = ProcessPoolExecutor(len(shards), mp_context=ctx)
        queue = manager.Queue()
        futures = [pool.submit(_worker, cfg, cells, shard, work / f"shard{i}.db", corpus, per_worker, queue, deadline)
                   for i, shard in enumerate(shards)]
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set() or not queue.empty():
                try:
                    queue.get(timeout=0.2)
                except (Empty, EOFError, OSError):
                    if stop.is_set():
                        return
                    continue
                if progress:
                    progress(1)

        drainer = threading.Thread(target=drain, daemon=True)
        drainer.start()
        lost = False
        try:
            for i, f in enumerate(futures):
                try:
                    wait_s = None if hard_stop is None else max(1.0, hard_stop - time.time())
                    rows.extend(f.result(timeout=wait_s))
                except Exception as exc:  # a lost worker must not lose the others' results
                    lost = True
                    print(f"bench bats: worker {i} failed ({type(exc).__name__}: {exc}); its questions are missing",
                          file=sys.stderr)
        finally:
            stop.set()
            drainer.join(timeout=5)
            if lost:
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.terminate()
            pool.shutdown(wait=not lost, cancel_futures=True)
    return [RunRecord(**row) for row in rows]


# -- reporting ------------------------------------------------------------------------------------


def write_results(cfg: BenchConfig, records: Sequence[RunRecord], wall_s: float) -> dict[str, Any]:
    """Write summary.json, details.json and the cost-accuracy plot; return the summary."""
    out = cfg.out_dir / "dry_run" if cfg.dry_run else cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    planned = [(m, b) for m in cfg.methods for b in cfg.budgets]
    complete = complete_questions(records, planned)
    # After a time limit, the summary compares the methods on the same questions only.
    scored = [r for r in records if r.qid in complete]
    results, cells, _ = summarize(scored)
    violations = sum(r.violations for r in records)  # every finished run counts here
    num_questions = len(complete)
    num_planned = len(load_questions(cfg.dataset, cfg.limit))
    meta = {
        **provenance(),
        "model": DRY_RUN_MODEL if cfg.dry_run else cfg.model,
        "dataset": f"{cfg.dataset.name} ({num_questions} questions)",
    }
    summary = {**meta, "budget_violations": violations, "results": results}
    details = {
        **meta,
        "num_questions": num_questions,
        "num_questions_planned": num_planned,
        "num_runs_finished": len(records),
        "num_runs_planned": num_planned * len(planned),
        "time_limit_s": cfg.time_limit_s,
        "time_limited": num_questions < num_planned,
        "method_workflows": {m: METHOD_WORKFLOWS.get(m, m) for m in cfg.methods},
        "dry_run": cfg.dry_run,
        "backend": "dryrun" if cfg.dry_run else cfg.backend,
        "budgets": list(cfg.budgets),
        "methods": list(cfg.methods),
        "options": cfg.options,
        "workers": cfg.workers,
        "concurrency": cfg.concurrency,
        "wall_s": wall_s,
        "budget_violations": violations,
        "cells": cells,
        "runs": [asdict(r) for r in records],
    }
    title = f"BATS on HotpotQA ({meta['model']}, {num_questions} questions)"
    suffixes = [f"-{cfg.slug}"] + ([""] if cfg.primary or cfg.dry_run else [])
    for sfx in suffixes:
        write_json(out / f"summary{sfx}.json", summary)
        write_json(out / f"details{sfx}.json", details, indent=1)
        plot_cost_accuracy(results, out / f"cost_accuracy{sfx}.png", title=title)
    return summary


def plot_cost_accuracy(results: Sequence[dict[str, Any]], path: Path, *, title: str = "") -> None:
    """Accuracy against unified cost per question; one line per method, points labelled by budget."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(r["method"] for r in results):
        rows = sorted((r for r in results if r["method"] == method), key=lambda r: r["budget"])
        xs = [r["unified_cost_usd"] * 100 for r in rows]
        ys = [r["accuracy"] * 100 for r in rows]
        ax.plot(xs, ys, marker="o", label=method)
        for r, x, y in zip(rows, xs, ys, strict=True):
            ax.annotate(str(r["budget"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("unified cost per question (US cents)")
    ax.set_ylabel("exact match (%)")
    ax.set_title(title or "cost vs accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def _ints(text: str, what: str) -> tuple[int, ...]:
    from orchestrator.errors import BadInputError

    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise BadInputError(what, "comma-separated integers, e.g. 2,5,10,20", text) from None
    if not values or min(values) < 0:
        raise BadInputError(what, "comma-separated non-negative integers, e.g. 2,5,10,20", text)
    return values


def bench_bats(
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="HotpotQA jsonl (question, answer, context).")],
    budgets: Annotated[str, typer.Option(help="Units per tool, comma-separated.")] = "2,5,10,20",
    methods: Annotated[str, typer.Option(help="Comma-separated workflows.")] = ",".join(ALL_METHODS),
    backend: Annotated[str, typer.Option(help="openai | local | scripted")] = "openai",
    base_url: Annotated[list[str] | None, typer.Option("--base-url", help="OpenAI-compatible endpoint.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name (openai backend; reported in the summary).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N questions.")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Programs in flight in total.")] = 128,
    workers: Annotated[int, typer.Option(help="Processes (each with its own SQLite store).")] = 1,
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("bench/results/bats"),
    corpus: Annotated[Path | None, typer.Option(help="Built corpus db (default: built from the dataset).")] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o",
                                   help="Workflow option KEY=JSON (repeat); METHOD.KEY=JSON for one method's runs.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Rule client instead of a model (control flow only).")
    ] = False,
    time_limit: Annotated[
        float | None,
        typer.Option(
            "--time-limit", help=f"Seconds: cancel runs still going {COLLECT_MARGIN_S:g} s before, write what finished."
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="Result file suffix (summary-NAME.json); default from --model.")] = "",
    primary: Annotated[
        bool,
        typer.Option(
            "--primary",
            help="Also write summary.json, details.json, cost_accuracy.png (the figures docs/benchmarks.md cites).",
        ),
    ] = False,
) -> None:
    """Benchmark BATS against ReAct, ReAct + Budget Tracker, budget forcing and parallel voting."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from orchestrator.errors import QuotaFlowError

    try:
        options = parse_option_items(option or [])
        backend_options: dict[str, Any] = {}
        if base_url:
            backend_options["base_urls"] = list(base_url)
        if model:
            backend_options["model"] = model
        cfg = BenchConfig(
            dataset=dataset, budgets=_ints(budgets, "--budgets"),
            methods=tuple(m.strip() for m in methods.split(",") if m.strip()), backend=backend,
            backend_options=backend_options, model=model or backend, limit=limit, concurrency=concurrency,
            workers=workers, out_dir=out, corpus=corpus, dry_run=dry_run, options=options,
            time_limit_s=time_limit, name=name, primary=primary,
        )
        num_questions = len(load_questions(cfg.dataset, cfg.limit))
        total = num_questions * len(cfg.budgets) * len(cfg.methods)
        console = Console(stderr=True)
        started, wall0 = time.perf_counter(), time.time()
        with Progress(TextColumn(f"bench bats {cfg.slug}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as bar:
            task = bar.add_task("runs", total=total)
            records = run_benchmark(cfg, progress=lambda n: bar.advance(task, n), started=wall0)
        summary = write_results(cfg, records, time.perf_counter() - started)
    except QuotaFlowError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    console.print(f"{len(records)} of {total} runs in {time.perf_counter() - started:.1f} s; summary over "
                  f"{summary['dataset']}; budget violations: {summary['budget_violations']}")
    failed = [r for r in records if r.status != "succeeded"]
    if failed:  # a failed run scores as a wrong answer: say so, or a broken setup reads as a weak method
        console.print(f"[yellow]{len(failed)} runs did not succeed[/]; first: {failed[0].method} b={failed[0].budget} "
                      f"{failed[0].status}: {failed[0].error[:200]}")
    for r in summary["results"]:
        console.print(f"{r['method']:>9} b={r['budget']:<3} acc={r['accuracy']:.3f} f1={r['f1']:.3f} "
                      f"units={r['tool_units']:.2f} tokens={r['tokens']:.0f} cost=${r['unified_cost_usd']:.5f}")


if __name__ == "__main__":
    sys.exit(typer.run(bench_bats))
