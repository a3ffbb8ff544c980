"""The ``drqa`` workflow as a graph: probe -> allocate -> solve -> reallocate -> answer -> final.

The decisions are :mod:`workflows.drqa.engine`'s; each node here only carries out its stage's
actions. Every call goes through ``ctx.chat`` (ledger, store, metrics, journal). The run's own
reasoning budget (output tokens) is enforced on top of that: each call's ``max_tokens`` is
carved out of what is left, so the run never spends more than ``total_budget`` output tokens,
whatever the model does. Methods ``uniform`` and ``unlimited`` take the same path with stages switched off.

A solve cut off at its quota is not scored as "no answer": each quota keeps a small reserve
(``answer_reserve_tokens``) out of the solve call, and the ``answer`` stage spends it on one
short call that shows the model its working and asks for the final answer now (every method,
when ``force_answer`` is on).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, cast

from orchestrator.aio import gather_limited
from orchestrator.errors import BadInputError
from orchestrator.types import LLMResponse
from workflows.drqa.config import run_config_from
from workflows.drqa.datasets import detect_dataset, get_spec
from workflows.drqa.engine import NODE_ORDER, Ask, Call, DRQAState, Observation, decide
from workflows.drqa.quota.signals import signal_aucs
from workflows.drqa.records import TEXT_RECORD_CHARS

if TYPE_CHECKING:
    from langgraph.graph import StateGraph

    from orchestrator.context import RunContext

__all__ = [
    "NODE_ORDER",
    "TEXT_RECORD_CHARS",
    "DRQAState",
    "StageNode",
    "build",
    "initial_state",
    "make_nodes",
    "result",
    "run_nodes",
    "task_problem",
]


class StageNode(Protocol):
    """One stage of the graph: the run state in, the state's update out."""

    async def __call__(self, state: DRQAState) -> dict[str, Any]: ...


_TASK_OPTION_KEYS = ("method", "total_budget", "budget_tokens")


def initial_state(task: dict[str, Any]) -> dict[str, Any]:
    """The graph input for a dataset task: ``{"rows": [...], "dataset": "gsm8k"|"math"}``.

    ``rows`` are raw dataset rows (or ``items`` already shaped ``{"id","question","gold"}``);
    ``method`` and ``total_budget`` may ride along and win over the run options.
    """
    dataset = task.get("dataset")
    if task.get("items"):
        items = [{"id": str(r["id"]), "question": str(r["question"]), "gold": str(r["gold"])} for r in task["items"]]
        dataset = dataset or "gsm8k"
    else:
        rows = task.get("rows")
        if not rows:
            raise BadInputError("task", 'an object with "rows" (dataset rows) or "items"')
        dataset = dataset or detect_dataset(rows)
        spec = get_spec(dataset)
        items = [spec.item(r).to_dict() for r in rows]
    get_spec(dataset)
    return {
        "items": items,
        "dataset": dataset,
        "task_options": {k: task[k] for k in _TASK_OPTION_KEYS if task.get(k) is not None},
        "spent": 0,
        "spent_by_purpose": {},
    }


def task_problem(task: dict[str, Any], _options: dict[str, Any]) -> str | None:
    """What keeps :func:`initial_state` from reading ``task`` (a row without a question, a gold
    answer that is a list...), so the run is refused before it is stored; None when nothing does."""
    try:
        initial_state(task)
    except BadInputError as exc:
        return str(exc)
    except (TypeError, KeyError, AttributeError) as exc:
        return f"not a drqa task ({type(exc).__name__}: {exc})"
    return None


def result(state: dict[str, Any]) -> dict[str, Any]:
    """Answers, accuracy and token use of a finished run."""
    final = state.get("final", [])
    num_correct = sum(1 for f in final if f.get("correct"))
    counts = {
        # Solve calls stopped by max_tokens, answers forced out of a cut-off working, and items
        # left with no parsable answer at all (scored wrong).
        "num_truncated": sum(1 for f in final if f.get("finish_reason") == "length"),
        "num_forced": sum(1 for f in final if f.get("forced")),
        "num_unparsable": sum(1 for f in final if f.get("answer") is None),
    }
    return {
        "answer": [f.get("answer") for f in final],
        "dataset": state.get("dataset"),
        "method": state.get("method"),
        "total_budget": state.get("total_budget"),
        "num_items": len(final),
        "num_correct": num_correct,
        "accuracy": num_correct / len(final) if final else 0.0,
        "reasoning_tokens": state.get("spent", 0),
        "tokens_by_purpose": state.get("spent_by_purpose", {}),
        **counts,
        # How well each difficulty signal ranked this run's wrong answers above its right ones.
        "difficulty_auc": signal_aucs(state.get("probe") or [], [bool(f.get("correct")) for f in final]),
        "difficulty_signals": [p.get("signals") for p in state.get("probe") or []],
        "items": final,
    }


def make_nodes(ctx: RunContext) -> dict[str, StageNode]:
    """The stage functions, closing over ``ctx``: each carries out :func:`~workflows.drqa.engine.decide`'s
    actions, every call through ``ctx.chat``, until its stage is done."""

    async def ask(call: Call) -> LLMResponse:
        return await ctx.chat(call.messages, sampling=call.sampling, purpose=call.purpose)

    async def execute(stage: str, state: DRQAState) -> dict[str, Any]:
        config = run_config_from(ctx.config, state.get("task_options", {}))
        update: dict[str, Any] = {}
        action = decide(stage, state, config)
        while True:
            if isinstance(action, Ask):
                responses = await gather_limited(config.max_concurrency, [partial(ask, c) for c in action.calls])
                action = decide(stage, state, config, Observation(action.calls, tuple(responses)))
                continue
            update.update(action.update)
            state = cast(DRQAState, {**state, **action.update})
            if action.record is not None:
                await ctx.record_step(stage, action.record)
            if action.done:
                return update
            action = decide(stage, state, config)

    def node(stage: str) -> StageNode:
        async def run(state: DRQAState) -> dict[str, Any]:
            return await execute(stage, state)

        run.__name__ = stage
        return run

    return {stage: node(stage) for stage in NODE_ORDER}


def build(ctx: RunContext) -> StateGraph:
    """The DRQA LangGraph graph: the stages of :func:`make_nodes` in :data:`NODE_ORDER`."""
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(DRQAState)
    nodes = make_nodes(ctx)
    previous = START
    for name in NODE_ORDER:
        graph.add_node(name, nodes[name])
        graph.add_edge(previous, name)
        previous = name
    graph.add_edge(previous, END)
    return graph


async def run_nodes(ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
    """Run the stages in order without LangGraph (no checkpoints): for benchmark machines that
    have the LLM client but not the runtime's dependencies."""
    nodes = make_nodes(ctx)
    current: dict[str, Any] = dict(state)
    for name in NODE_ORDER:
        current.update(await nodes[name](current))  # type: ignore[arg-type]
    return current
