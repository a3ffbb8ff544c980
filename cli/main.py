"""``quotaflow``: the operator's command line.

Heavy modules (the runtime, rich, torch) are imported inside the commands so ``--help`` is instant.
Errors are QuotaFlowError subclasses: printed in one line, exit code from the error class
(2 bad input, 3 budget, 4 engine).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.app import command_group, progress_bar
from cli.options import backend_options, check_positive, executor_options, parse_set
from cli.workflow_modules import OPTION as WORKFLOW_MODULE
from cli.workflow_modules import RunGroup, import_workflow_modules
from orchestrator.errors import BadInputError, QuotaFlowError, StorageError

if TYPE_CHECKING:
    from orchestrator.executors import Executor

app = command_group(name="quotaflow", help="Budget-aware multi-turn agent runtime.", no_args_is_help=True)
run_app = command_group(cls=RunGroup, help="Run a workflow on one task or a dataset.", no_args_is_help=True)
runs_app = command_group(help="Inspect runs.", no_args_is_help=True)
db_app = command_group(help="Database schema.", no_args_is_help=True)
metrics_app = command_group(help="Prometheus metrics.", no_args_is_help=True)
workflows_app = command_group(help="The registered workflows and their options.", no_args_is_help=True)
app.add_typer(run_app, name="run")
app.add_typer(runs_app, name="runs")
app.add_typer(db_app, name="db")
app.add_typer(metrics_app, name="metrics")
app.add_typer(workflows_app, name="workflows")

ModulesOpt = Annotated[list[str] | None, typer.Option(
    WORKFLOW_MODULE, help="Import this module first: its workflows join the registered ones (repeatable).")]
DbOpt = Annotated[str | None, typer.Option(
    "--db", help="Database URL (default: QUOTAFLOW_DB_URL, else quotaflow.db in QUOTAFLOW_HOME or "
                 "~/.local/share/quotaflow)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="A workflow option, key=value (value as JSON, or a plain string); repeatable. "
                  "quotaflow workflows show NAME lists them.")]


@app.callback()
def _options(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the traceback of an error.")] = False,
) -> None:
    ctx.obj = {"verbose": verbose}


def _runtime(db: str | None, **settings: Any):  # type: ignore[no-untyped-def]
    from orchestrator.runtime import Runtime
    from orchestrator.settings import Settings

    return Runtime(Settings.from_env(db_url=db, **settings))


def _settings(db: str | None = None) -> Any:
    from orchestrator.settings import Settings

    return Settings.from_env(db_url=db)


def _db_url(db: str | None) -> str:
    return str(_settings(db).db_url)


@contextmanager
def storage_errors(db: str | None) -> Iterator[None]:
    """Driver and filesystem errors of the store, wherever they surface, as one StorageError
    (exit 4): a file that is not a database, a home that is a file, a read-only disk."""
    try:
        yield
    except QuotaFlowError:
        raise
    except Exception as exc:
        from orchestrator.store.db import storage_error

        url = _db_url(db)
        fault = storage_error(exc, url)  # it reads the driver's own error (exc.orig) itself
        if fault is None and isinstance(exc, OSError):
            fault = StorageError(f"database {url} cannot be created: {exc}; set QUOTAFLOW_HOME (or --db) "
                                 "to a writable directory")
        if fault is None:
            raise
        raise fault from exc


def serve_metrics(port: int, addr: str = "127.0.0.1", option: str = "--metrics-port") -> None:
    """Start the /metrics endpoint; a port in use is bad input, not a traceback."""
    from orchestrator import metrics

    try:
        metrics.serve(port, addr)
    except OSError as exc:
        raise BadInputError(f"{option} {port}", f"a free port on {addr}", exc.strerror or str(exc)) from exc


def parse_task(task: str) -> dict[str, Any]:
    """``--task``: a JSON object when it starts with ``{``, else the question."""
    if not task.lstrip().startswith("{"):
        return {"question": task}
    try:
        payload = json.loads(task)
    except json.JSONDecodeError as exc:
        raise BadInputError("--task", "a question, or a JSON object", f"not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise BadInputError("--task", "a question, or a JSON object")
    return payload


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


PARTIAL_EXIT_CODE = 5
"""Exit code of a dataset run some of whose items did not succeed (see `dataset_exit_code`)."""


def dataset_exit_code(items: list[Any]) -> int:
    """A dataset run's exit code from its items' results (``RunResult``): 0 when every item
    succeeded; the items' common code when none succeeded and all failed alike (3 all paused on a
    budget, 4 engine down); else 5, partial."""
    if all(r.status == "succeeded" for r in items):
        return 0
    codes = {r.exit_code or 1 for r in items if r.status != "succeeded"}
    if len(codes) == 1 and not any(r.status == "succeeded" for r in items):
        return codes.pop()
    return PARTIAL_EXIT_CODE


def needs_question(row: dict[str, Any]) -> str | None:
    """What is wrong with a task row of an agent workflow (it needs a non-empty string question)."""
    question = row.get("question")
    if not isinstance(question, str):
        return "missing \"question\"" if question is None else f"\"question\" is not a string ({question!r})"
    return None if question.strip() else "\"question\" is empty"


def task_check(workflow: str, options: dict[str, Any]) -> Callable[[dict[str, Any]], str | None]:
    """What is wrong with a task row of ``workflow`` run with ``options``: the workflow's own
    check (``Workflow.check_task``), else the agents' rule (:func:`needs_question`)."""
    from orchestrator import workflow as workflows

    check = workflows.get(workflow).check_task
    return needs_question if check is None else lambda row: check(row, options)


def read_tasks(path: Path, limit: int | None = None,
               check: Callable[[dict[str, Any]], str | None] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of a jsonl dataset; malformed lines, and rows ``check`` finds wrong, are reported
    (with line numbers) and skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInputError(f"dataset {path}", "a readable jsonl file", str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise BadInputError(f"dataset {path}", "UTF-8 text", f"byte {exc.start}: {exc.reason}") from exc
    tasks: list[dict[str, Any]] = []
    problems: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{lineno}: not JSON ({exc.msg})")
            continue
        if not isinstance(row, dict):
            problems.append(f"{path}:{lineno}: expected a JSON object")
            continue
        if check is not None and (problem := check(row)) is not None:
            problems.append(f"{path}:{lineno}: {problem}")
            continue
        tasks.append(row)
        if limit is not None and len(tasks) >= limit:
            break
    if not tasks:
        raise BadInputError(f"dataset {path}", "at least one JSON object per line", "; ".join(problems[:3]))
    return tasks, problems


def _agent_command(workflow: str, help_text: str, target: typer.Typer = run_app) -> None:
    """A `quotaflow run <workflow>` command for a tool-using agent workflow."""

    @target.command(workflow, help=help_text)
    def command(
        task: Annotated[str | None, typer.Option("--task", "-t", help="A question, or a JSON object task.")] = None,
        dataset: Annotated[Path | None, typer.Option("--dataset", "-d", help="jsonl file, one task per line.")] = None,
        limit: Annotated[int | None, typer.Option(help="Only the first N dataset rows.")] = None,
        budget: Annotated[str, typer.Option(
            "--budget", "-b", help="e.g. search=10,browse=5,tokens=20000,usd=0.5")] = "",
        backend: Annotated[str, typer.Option(help="local | openai | scripted")] = "local",
        base_url: Annotated[list[str] | None, typer.Option(
            "--base-url", help="OpenAI-compatible endpoint (repeat for several).")] = None,
        model: Annotated[str | None, typer.Option(help="Model name for the openai backend.")] = None,
        script: Annotated[Path | None, typer.Option(help="scripted backend: JSON list of responses.")] = None,
        tools: Annotated[str | None, typer.Option(help="Comma-separated tool names (default: the workflow's).")] = None,
        max_turns: Annotated[int | None, typer.Option(help="Turn limit of the agent loop.")] = None,
        concurrency: Annotated[int, typer.Option(
            "--concurrency", "-c", help="Programs in flight for a dataset (per worker with --executor ray).")] = 4,
        executor: Annotated[str, typer.Option(help="Where a dataset's programs run: local (this process) | ray.")
                            ] = "local",
        ray_address: Annotated[str | None, typer.Option(
            help="Ray cluster to join (ray start --head prints it; 'auto': the one on this host; default: start "
                 "a local one).")] = None,
        workers: Annotated[int | None, typer.Option(
            help="Ray workers, each a runtime on the same database (default: one per CPU of the cluster).")] = None,
        corpus: Annotated[Path | None, typer.Option(help="Corpus database for search/browse.")] = None,
        metrics_port: Annotated[int | None, typer.Option(
            help="Expose this run's Prometheus /metrics on this port.")] = None,
        set_: SetOpt = None,
        workflow_module: ModulesOpt = None,
        db: DbOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from orchestrator import workflow as workflows

        import_workflow_modules(workflow_module)
        if (task is None) == (dataset is None):
            raise BadInputError("--task/--dataset", "exactly one of them")
        check_positive("--max-turns", max_turns)
        # --set wins over --max-turns; a name the workflow does not declare fails here, before the run.
        options = workflows.get(workflow).parse_options(
            {**({"max_turns": str(max_turns)} if max_turns is not None else {}), **parse_set(set_)})
        check_positive("--limit", limit, zero=True)
        check_positive("--concurrency", concurrency)
        placement = executor_options(executor, ray_address, workers, dataset)
        payload = parse_task(task) if task is not None else None
        if payload is not None and (problem := task_check(workflow, options)(payload)) is not None:
            raise BadInputError("--task", f"a task {workflow} can run", problem)
        client_options = backend_options(backend, base_url, model, script, takes_script=True)
        if backend == "openai" and not base_url and not _settings().openai_base_urls:
            raise BadInputError("--backend openai", "--base-url URL (or QUOTAFLOW_OPENAI_BASE_URLS), "
                                "e.g. --base-url http://localhost:8000/v1")
        if metrics_port is not None:
            serve_metrics(metrics_port)
        with storage_errors(db):
            asyncio.run(_run_agent(workflow, payload, dataset, limit, budget, backend, client_options,
                                   tools.split(",") if tools else None, options, concurrency, corpus, db, as_json,
                                   executor, placement))


async def _run_agent(workflow: str, payload: dict[str, Any] | None, dataset: Path | None, limit: int | None,
                     budget: str, backend: str, backend_options: dict[str, Any], tools: list[str] | None,
                     options: dict[str, Any], concurrency: int, corpus: Path | None, db: str | None,
                     as_json: bool, executor: str = "local", placement: dict[str, Any] | None = None) -> None:
    from orchestrator.accounting import run_limits

    run_limits(budget, "check")  # fail on a malformed budget before anything starts
    rt = _runtime(db, corpus_path=corpus)
    kwargs = {"budget": budget, "backend": backend, "backend_options": backend_options, "tools": tools,
              "options": options}
    runner: Executor | None = None
    try:
        if payload is not None or executor == "local":  # the programs run in this process
            await _load_model(rt.client(backend, **backend_options))
        if payload is not None:
            from rich.console import Console

            with Console(stderr=True).status(f"running {workflow} on {backend}..."):
                result = await rt.run(workflow, payload, **kwargs)
            try:
                report = await _report(rt, result.run_id)
            except QuotaFlowError:  # the store that stopped the run cannot be read either
                report = {"run_id": result.run_id, "workflow": workflow, "result": result.result}
                as_json = True
            # What this process saw is the truth: a store that failed may not have recorded it.
            report.update(status=result.status, error=result.error or report.get("error"))
            _show_outcome(report, as_json)
            if result.status != "succeeded":
                raise typer.Exit(result.exit_code or 1)
            return
        assert dataset is not None
        tasks, problems = read_tasks(dataset, limit, task_check(workflow, options))
        for p in problems:
            typer.echo(f"warning: skipped {p}", err=True)
        from orchestrator.executors import create_executor

        runner = create_executor(executor, **(placement or {}))
        await runner.start(rt)  # a cluster that cannot be joined fails before the dataset run is stored
        with progress_bar(transient=as_json) as progress:
            bar = progress.add_task(f"{workflow} x {len(tasks)}", total=len(tasks))
            items: list[Any] = []

            def done(item: Any) -> None:
                items.append(item)
                progress.advance(bar)

            parent = await rt.run_dataset(workflow, tasks, source=str(dataset), skipped=problems,
                                          concurrency=concurrency, on_done=done, executor=runner, **kwargs)
        report = await _report(rt, parent.run_id)
        _print_json(report) if as_json else _show(report)
        unstored = [r.error for r in items if not r.run_id]
        for error in dict.fromkeys(unstored):
            typer.echo(f"error: {unstored.count(error)} item(s) failed before they started: {error}", err=True)
        if code := dataset_exit_code(items):
            raise typer.Exit(code)
    finally:
        if runner is not None:
            await runner.aclose()
        await rt.aclose()


async def _load_model(client: Any) -> None:
    """An in-process model (the local backend) is loaded before the run, under a status line that
    says what it is doing (a first conversion takes about a minute), and not in its first call,
    whose latency would then hold it."""
    load = getattr(client, "load", None)
    if load is None:
        return
    from rich.console import Console

    with Console(stderr=True).status(f"loading the local model {getattr(client, 'model', '')}...") as status:
        await asyncio.to_thread(load, lambda phase: status.update(f"{phase}..."))


async def resolve_run_id(rt: Any, run_id: str) -> str:
    """The run whose id is ``run_id`` or, failing that, starts with it (when only one does)."""
    from sqlalchemy import select

    from orchestrator.errors import RunNotFound
    from orchestrator.store.models import RunRow

    await rt.store.ensure_schema()
    async with rt.store.session() as s:
        if await s.get(RunRow, run_id) is not None:
            return run_id
        escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        matches = (await s.scalars(select(RunRow.id).where(RunRow.id.like(f"{escaped}%", escape="\\")).limit(6))).all()
    if not matches:
        raise RunNotFound(run_id)
    if len(matches) > 1:
        raise BadInputError(f"run id {run_id!r}", "a prefix of one run's id", "matches " + ", ".join(matches[:5]))
    return str(matches[0])


async def _report(rt: Any, run_id: str) -> dict[str, Any]:
    from orchestrator.reports import run_report

    return await run_report(rt, run_id)


def _with_run_id(error: str | None, run_id: str) -> str | None:
    """A run's stored error with its id in place of the ``RUN_ID`` placeholder of resume hints."""
    return error.replace("quotaflow resume RUN_ID", f"quotaflow resume {run_id}") if error else error


def _one_line(value: Any, width: int = 80) -> str:
    """``value`` as one line of at most ``width`` characters (answers can span paragraphs)."""
    text = " ".join(str(value).split()) if value is not None else ""
    return text if len(text) <= width else text[: width - 1] + "…"


def _show_outcome(report: dict[str, Any], as_json: bool) -> None:
    """The report of a run this command ran; why it stopped, if it did, once on stderr."""
    if as_json:
        _print_json(report)
    else:
        _show({**report, "error": None})
    if report.get("error"):
        typer.echo(f"error: {_with_run_id(report['error'], report['run_id'])}", err=True)


def _show(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(f"[bold]run {report['run_id']}[/] {report['workflow']} [bold]{report['status']}[/] "
              f"backend={report['backend']} model={report['model']}")
    if report.get("error"):
        con.print(f"[red]{_with_run_id(report['error'], report['run_id'])}[/]")
    if report.get("items"):
        con.print(f"items: {report['items']}")
    if report.get("item_runs"):
        t = Table(title="items")
        t.add_column("#")
        t.add_column("run_id", no_wrap=True)
        t.add_column("status")
        t.add_column("answer or error", overflow="fold")
        for i, item in enumerate(report["item_runs"], 1):
            shown = item["answer"] if item["status"] == "succeeded" else _with_run_id(item["error"], item["run_id"])
            t.add_row(str(i), item["run_id"], item["status"], _one_line(shown))
        con.print(t)
    if report["trajectory"]:
        t = Table(title="trajectory")
        t.add_column("#")
        t.add_column("node")
        t.add_column("detail", overflow="fold")
        for i, step in enumerate(report["trajectory"]):
            detail = {k: v for k, v in step.items() if k != "node"}
            t.add_row(str(i), step["node"], json.dumps(detail, default=str)[:300])
        con.print(t)
    for title, rows in (("LLM calls", report["llm"]), ("tool calls", report["tools"]), ("ledger", report["ledger"])):
        if rows:
            t = Table(title=title)
            for col in rows[0]:
                t.add_column(col)
            for row in rows:
                t.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()))
            con.print(t)
    c = report["cost"]
    con.print(f"unified cost: ${c['total_usd']:.6f} (tokens ${c['token_usd']:.6f}, tools ${c['tool_usd']:.6f})")
    if "answer" in (report.get("result") or {}):
        con.print(f"[bold green]answer:[/] {report['result']['answer']}")


_agent_command("react", "ReAct agent with search/browse tools under a budget.")
_agent_command("bats", "BATS: plan, act with the Budget Tracker, verify, pivot; judge picks the answer.")
_agent_command("tracker", "ReAct with the Budget Tracker block after every tool response.")
_agent_command("forcing", "ReAct with budget forcing (keep using the remaining budget).")
_agent_command("parallel", "Parallel ReAct samples with a majority vote.")
_agent_command("priordynaflow", "PriorDynaFlow: Q-table-guided choice of the next agent per step.")


def _registered_workflow_command(name: str) -> Any:
    """`quotaflow run NAME` for a workflow of a user's package (entry point or --workflow-module)."""
    sub = typer.Typer(add_completion=False)
    _agent_command(name, f"The {name} workflow, with the options of the agent workflows.", sub)
    return typer.main.get_command(sub)


RunGroup.agent_command = staticmethod(_registered_workflow_command)


def _register_subapps() -> None:
    from cli import batchprompt, corpus, drqa, qtable, serve

    run_app.command("batchprompt", help="BatchPrompt over a dataset: batches, voting rounds (BPE), SEAS.")(
        batchprompt.batchprompt_command)
    app.add_typer(corpus.app, name="corpus")
    app.add_typer(qtable.app, name="qtable")
    app.add_typer(drqa.app, name="drqa")
    app.command("serve", context_settings=serve.CONTEXT_SETTINGS,
                help="Start vLLM's OpenAI server with (or without) the Continuum plugin.")(serve.serve_command)

    bench_app = command_group(help="Benchmarks (from a source checkout: they live in bench/).", no_args_is_help=True)
    app.add_typer(bench_app, name="bench")

    @bench_app.command("bats", add_help_option=False,
                       context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
                       help="BATS vs baselines over budgets: accuracy, tool units, tokens, unified cost, plot.")
    def bench_bats(ctx: typer.Context) -> None:
        import importlib

        root = Path(__file__).resolve().parents[1]
        if not (root / "bench" / "bats" / "run.py").exists():
            raise BadInputError("quotaflow bench", "a source checkout with bench/bats/run.py")
        sys.path.insert(0, str(root))
        module = importlib.import_module("bench.bats.run")
        sub = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        sub.command()(module.bench_bats)
        typer.main.get_command(sub).main(args=list(ctx.args), prog_name="quotaflow bench bats")

    @run_app.command("drqa", help="DRQA reasoning-quota allocation over a GSM8K/MATH-style dataset.")
    def run_drqa_command(
        dataset: Annotated[str, typer.Option("--dataset", "-d", help="jsonl file or folder")],
        budget_tokens: Annotated[int | None, typer.Option(help="Total reasoning (output) tokens to allocate.")] = None,
        method: Annotated[str, typer.Option(help="drqa | uniform | unlimited")] = "drqa",
        backend: Annotated[str, typer.Option(help="local | openai | scripted")] = "openai",
        base_url: Annotated[list[str] | None, typer.Option("--base-url")] = None,
        model: Annotated[str | None, typer.Option()] = None,
        limit: Annotated[int | None, typer.Option(help="Only the first N rows.")] = None,
        budget: Annotated[str, typer.Option("--budget", "-b", help="Extra ledger limits, e.g. tokens=200000")] = "",
        force_answer: Annotated[bool, typer.Option(
            help="When a quota runs out mid-reasoning, ask for the answer from the question's reserve instead "
                 "of scoring no answer.")] = True,
        state_budget: Annotated[bool, typer.Option(help="Tell the model its reasoning budget (in words) when "
                                                        "the quota binds.")] = True,
        strategy: Annotated[str, typer.Option(help="drqa's split: easiest_first (whole quotas, easiest "
                                                   "questions first, in waves) | proportional")] = "easiest_first",
        set_: Annotated[list[str] | None, typer.Option(
            "--set", help="Any other DRQA option, key=value (e.g. max_probe_fraction=0, ceiling_tokens=384); "
                          "repeatable; quotaflow workflows show drqa lists them.")] = None,
        db: DbOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        extra = drqa.parse_settings(set_ or [])
        result = drqa.run_drqa(dataset, budget_tokens, method, backend=backend,
                               backend_options=backend_options(backend, base_url, model, None), limit=limit,
                               ledger_budget=budget or None, db=db,
                               options={"force_answer": force_answer, "state_budget": state_budget,
                                        "strategy": strategy, **extra})
        if as_json:
            _print_json({"run_id": result.run_id, "status": result.status, "error": result.error,
                         **(result.result or {})})
        else:
            typer.echo(drqa.describe_result(result.run_id, result.status, result.result, result.error))
        raise typer.Exit(result.exit_code if result.status != "succeeded" else 0)


_register_subapps()


@app.command()
def resume(
    run_id: str,
    budget: Annotated[str, typer.Option("--budget", "-b", help="More budget, e.g. search=+5,tokens=+2000")] = "",
    workflow_module: ModulesOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Continue a paused or crashed run from its last checkpoint."""
    import_workflow_modules(workflow_module)

    async def go() -> int:
        rt = _runtime(db)
        try:
            full_id = await resolve_run_id(rt, run_id)
            if budget and (await rt.get_run(full_id)).status == "succeeded":
                raise BadInputError(f"resume {full_id} --budget", "a paused, failed or interrupted run",
                                    "the run already succeeded; there is nothing to resume")
            result = await rt.resume(full_id, budget=budget or None)
            report = await _report(rt, result.run_id)
            _show_outcome(report, as_json)
            return 0 if result.status == "succeeded" else result.exit_code or 1
        finally:
            await rt.aclose()

    with storage_errors(db):
        code = asyncio.run(go())
    raise typer.Exit(code)


@runs_app.command("list")
def runs_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    workflow: Annotated[str | None, typer.Option(help="Only this workflow.")] = None,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List runs, newest first."""
    from orchestrator.reports import list_runs
    from orchestrator.types import RunStatus

    check_positive("--limit", limit)
    if status is not None and status not in {s.value for s in RunStatus}:
        raise BadInputError(f"--status {status}", "one of " + ", ".join(s.value for s in RunStatus))

    async def go() -> list[dict[str, Any]]:
        rt = _runtime(db)
        try:
            return await list_runs(rt, limit=limit, workflow=workflow, status=status)
        finally:
            await rt.aclose()

    with storage_errors(db):
        rows = asyncio.run(go())
    if as_json:
        _print_json(rows)
        return
    from datetime import datetime

    from rich.console import Console
    from rich.table import Table

    t = Table()  # 80 columns hold whole ids and times; `runs show` has the backend and the full answer
    t.add_column("run_id", no_wrap=True, min_width=16)
    t.add_column("workflow", no_wrap=True, overflow="ellipsis")
    t.add_column("status", no_wrap=True, min_width=9)
    t.add_column("created_at", no_wrap=True, min_width=23)
    workers = any(r["worker"] for r in rows)  # which executor worker ran each run (Ray), when any did
    if workers:
        t.add_column("worker", no_wrap=True, overflow="ellipsis")
    t.add_column("answer", no_wrap=True, overflow="ellipsis")
    for r in rows:
        created = datetime.fromisoformat(r["created_at"]).astimezone()
        t.add_row(r["run_id"], r["workflow"], r["status"], created.strftime("%Y-%m-%d %H:%M:%S %Z"),
                  *([r["worker"] or "-"] if workers else []), _one_line(r["answer"], 60))
    Console().print(t)


@runs_app.command("show")
def runs_show(run_id: str, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """A run's answer, trajectory, LLM and tool calls, ledger and unified cost."""

    async def go() -> dict[str, Any]:
        rt = _runtime(db)
        try:
            return await _report(rt, await resolve_run_id(rt, run_id))
        finally:
            await rt.aclose()

    with storage_errors(db):
        report = asyncio.run(go())
    _print_json(report) if as_json else _show(report)


@db_app.command("upgrade")
def db_upgrade(db: DbOpt = None) -> None:
    """Apply pending schema migrations."""
    from orchestrator.settings import Settings
    from orchestrator.store.db import Store

    with storage_errors(db):
        store = Store(Settings.from_env(db_url=db).db_url)
        head = store.upgrade()
    typer.echo(f"database at revision {head}")


@workflows_app.command("list")
def workflows_list(workflow_module: ModulesOpt = None) -> None:
    """Every workflow `quotaflow run` takes, with its description."""
    from orchestrator import workflow as workflows

    import_workflow_modules(workflow_module)
    for name in workflows.names():
        typer.echo(f"{name:16} {workflows.get(name).description}")


@workflows_app.command("show")
def workflows_show(name: str, workflow_module: ModulesOpt = None, as_json: JsonOpt = False) -> None:
    """A workflow's options (for `quotaflow run NAME --set key=value` and the SDK's options), with
    their types and defaults."""
    from orchestrator import workflow as workflows
    from orchestrator.options import NO_DEFAULT

    import_workflow_modules(workflow_module)
    wf = workflows.get(name)
    fields = wf.option_fields
    rows = [{"name": f.name, "type": _type_name(f.kind),
             "default": f.default if f.default is not NO_DEFAULT else wf.options.get(f.name, NO_DEFAULT)}
            for f in sorted((fields or {}).values(), key=lambda f: f.name)]
    if as_json:
        _print_json({"name": wf.name, "description": wf.description, "mode": wf.mode,
                     "default_tools": list(wf.default_tools), "declares_options": fields is not None,
                     "options": [{**r, "default": None if r["default"] is NO_DEFAULT else r["default"]}
                                 for r in rows]})
        return
    typer.echo(f"{wf.name}: {wf.description}\nmode {wf.mode}; default tools: {', '.join(wf.default_tools) or 'none'}")
    if fields is None:
        typer.echo("options: not declared (any key=value is passed on; values read as JSON, else as text)")
        return
    typer.echo(f"options (quotaflow run {wf.name} --set NAME=VALUE; default '-': the workflow decides):")
    table = [("NAME", "TYPE", "DEFAULT")] + [
        (r["name"], r["type"], "-" if r["default"] is NO_DEFAULT else json.dumps(r["default"], default=repr))
        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in (0, 1)]
    for option, kind, default in table:
        typer.echo(f"  {option:{widths[0]}}  {kind:{widths[1]}}  {default}")


def _type_name(kind: Any) -> str:
    """``int``, ``str | None``, ``Literal['a', 'b']``: an option's type as a person reads it."""
    import re

    return kind.__name__ if isinstance(kind, type) else re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", str(kind))


@metrics_app.command("serve")
def metrics_serve(
    port: Annotated[int, typer.Option(help="Port of /metrics.")] = 9464,
    addr: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Serve Prometheus /metrics until interrupted: those of every QuotaFlow process that shares
    QUOTAFLOW_METRICS_DIR with it; without that variable, only this idle process's own."""
    import threading

    from orchestrator.settings import metrics_dir

    serve_metrics(port, addr, "--port")
    shared = metrics_dir()
    what = (f"the metrics of every QuotaFlow process writing to {shared}" if shared else
            "this process's metrics only (QUOTAFLOW_METRICS_DIR is not set: set it, to the same directory, for "
            "every QuotaFlow process and this one to serve theirs)")
    typer.echo(f"serving metrics on http://{addr}:{port}/metrics: {what}", err=True)
    threading.Event().wait()


def main() -> None:  # pragma: no cover - console entry point
    """The ``quotaflow`` console script."""
    app()


if __name__ == "__main__":  # pragma: no cover - `python -m cli.main` where the console script is not installed
    main()
