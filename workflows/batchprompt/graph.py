"""BatchPrompt as a LangGraph graph: ``plan`` -> ``round`` (once per voting round) -> ``finish``.

The graph state is plain JSON (task spec, config, items, the engine's :class:`RunState`), so the
runtime's checkpointer can resume a run between rounds. Every LLM call goes through ``ctx.chat``
(ledger, store, metrics); each round's per-item votes are stored with ``ctx.record_step``.

The task payload (what ``Runtime.run("batchprompt", task=...)`` receives):

- ``task``: a built-in name (``boolq``, ``rte``, ``qqp``), a spec file path, or a spec dict;
- the items, one of: ``rows`` (dataset rows as dicts), ``dataset`` (a jsonl path), or
  ``data_dir`` (the shared data folder, for a built-in task; ``subset`` picks the paper's subset);
  ``limit`` keeps the first N items;
- options, all optional: ``batch_size``, ``rounds``, ``seas``, ``voting`` (``majority`` or
  ``weighted``), ``confident_weight``, ``unsure_weight``, ``seed``, ``max_concurrency``,
  ``context_window``, ``max_tokens_per_answer``, ``reask``, ``reask_singles``, ``seas_rule``,
  ``confidence`` (``self`` or ``logprob``: the calls then ask the backend for token logprobs),
  ``confidence_threshold``, ``label_scoring`` (``text`` or ``logprob``: labels by calibrated
  log-probability), ``calibration`` (``mean``, ``content_free`` or ``none``), ``label_top_logprobs``,
  ``constrained`` (the answer format forced by a regex where the server decodes under one).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypedDict

from orchestrator.errors import BadInputError
from orchestrator.types import LLMResponse, Message, SamplingOptions
from workflows.batchprompt.engine import (
    BatchPromptConfig,
    RunState,
    finish,
    is_finished,
    start,
    step,
)
from workflows.batchprompt.tasks import (
    Item,
    LoadedDataset,
    items_from_rows,
    load_builtin_items,
    load_dataset,
    load_task,
    task_from_dict,
)
from workflows.batchprompt.voting import VotingConfig

if TYPE_CHECKING:
    from langgraph.graph import StateGraph

    from orchestrator.context import RunContext

__all__ = ["BatchPromptState", "build_graph", "config_from_task", "initial_state", "result_of"]

_DEFAULT_CONTEXT_WINDOW = 8192
VOTES_NAMESPACE = "batchprompt.votes"
"""Run records of each voting round's answers: key ``round-N``, value item key -> [label, confident]."""


class BatchPromptState(TypedDict, total=False):
    """The graph's state (all JSON)."""

    task_spec: dict[str, Any]
    config: dict[str, Any]
    items: list[dict[str, Any]]
    load_errors: list[str]
    run: dict[str, Any] | None
    result: dict[str, Any] | None


def config_from_task(payload: dict[str, Any]) -> BatchPromptConfig:
    """The run's :class:`BatchPromptConfig` from the task payload's options."""
    options = dict(payload)
    voting = options.pop("voting", "majority")
    if isinstance(voting, str):
        voting = VotingConfig(
            rule=voting,  # type: ignore[arg-type]
            confident_weight=float(options.pop("confident_weight", 1.0)),
            unsure_weight=float(options.pop("unsure_weight", 0.2)),
        )
    elif isinstance(voting, dict):
        voting = VotingConfig(**voting)
    if voting.rule not in ("majority", "weighted"):
        raise BadInputError("voting", "majority or weighted", repr(voting.rule))
    options["voting"] = voting
    options.setdefault("context_window", _DEFAULT_CONTEXT_WINDOW)
    try:
        return BatchPromptConfig.from_dict(options)
    except ValueError as exc:
        raise BadInputError("batchprompt options", "values each option accepts (quotaflow workflows show batchprompt)",
                            str(exc)) from None


def _load_items(payload: dict[str, Any], spec: Any) -> LoadedDataset:
    task = load_task(spec)
    limit = payload.get("limit")
    if payload.get("rows") is not None:
        return items_from_rows(task, payload["rows"], limit=limit)
    if payload.get("dataset"):
        return load_dataset(payload["dataset"], task, limit=limit)
    if payload.get("data_dir") and isinstance(spec, str):
        return load_builtin_items(spec, payload["data_dir"], subset=bool(payload.get("subset", True)), limit=limit)
    raise BadInputError("batchprompt task", "rows, a dataset file, or data_dir with a built-in task")


def initial_state(payload: dict[str, Any]) -> BatchPromptState:
    """The graph input for one task payload (see the module docstring)."""
    spec = payload.get("task", "boolq")
    task = load_task(spec)
    config = config_from_task({k: v for k, v in payload.items() if k not in ("task", "rows", "dataset")})
    loaded = _load_items(payload, spec)
    if not loaded.items:
        raise BadInputError("batchprompt dataset", "at least one usable row", f"{len(loaded.errors)} rows skipped")
    return BatchPromptState(
        task_spec=dataclasses.asdict(task),
        config=config.to_dict(),
        items=[item.to_dict() for item in loaded.items],
        load_errors=[str(e) for e in loaded.errors],
        run=None,
        result=None,
    )


def build_graph(ctx: RunContext) -> StateGraph:
    """The graph for one run; its nodes close over ``ctx``."""
    from langgraph.graph import END, START, StateGraph

    def unpack(state: BatchPromptState) -> tuple[Any, BatchPromptConfig, list[Item]]:
        return (
            task_from_dict(state["task_spec"]),
            BatchPromptConfig.from_dict(state["config"]),
            [Item.from_dict(d) for d in state["items"]],
        )

    async def plan(state: BatchPromptState) -> dict[str, Any]:
        task, config, items = unpack(state)
        run = start(task, items, config, ctx.llm.count_tokens)
        await ctx.record_step(
            "plan",
            {
                "num_items": len(items),
                "batch_sizes": [len(b) for b in run.batches],
                "load_errors": state["load_errors"],
            },
        )
        return {"run": run.to_dict()}

    async def voting_round(state: BatchPromptState) -> dict[str, Any]:
        task, config, items = unpack(state)
        before = RunState.from_dict(state["run"] or {})
        last_round = before.round + 1 == config.rounds

        async def chat(messages: list[Message], sampling: SamplingOptions) -> LLMResponse:
            return await ctx.chat(messages, sampling=sampling, is_last_step=last_round, purpose="batchprompt")

        after = await step(before, task, {i.key: i for i in items}, config, chat)
        round_votes = {
            key: [votes[-1].label, votes[-1].confident]
            for key, votes in after.votes.items()
            if votes and votes[-1].round == after.round
        }
        await ctx.put_record(VOTES_NAMESPACE, f"round-{after.round}", round_votes)
        await ctx.record_step(
            "round",
            {
                "round": after.round,
                "votes": round_votes,
                "exited": [k for k, r in after.exited_at.items() if r == after.round],
                "stats": after.per_round[-1],
            },
        )
        return {"run": after.to_dict()}

    async def finish_node(state: BatchPromptState) -> dict[str, Any]:
        task, config, items = unpack(state)
        result = finish(RunState.from_dict(state["run"] or {}), task, items, config)
        return {"result": result.to_dict()}

    def next_node(state: BatchPromptState) -> str:
        config = BatchPromptConfig.from_dict(state["config"])
        return "finish" if is_finished(RunState.from_dict(state["run"] or {}), config) else "round"

    graph = StateGraph(BatchPromptState)
    graph.add_node("plan", plan)
    graph.add_node("round", voting_round)
    graph.add_node("finish", finish_node)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", next_node, {"round": "round", "finish": "finish"})
    graph.add_conditional_edges("round", next_node, {"round": "round", "finish": "finish"})
    graph.add_edge("finish", END)
    return graph


def result_of(state: dict[str, Any]) -> dict[str, Any]:
    """What the store and the CLI show: final labels, accuracy and the cost counters."""
    result = state.get("result") or {}
    stats = result.get("stats", {})
    return {
        "answer": result.get("labels", {}),
        "accuracy": result.get("accuracy"),
        "num_items": len(state.get("items", [])),
        "num_gold": result.get("num_gold", 0),
        "unanswered": result.get("unanswered", []),
        "rounds_run": result.get("rounds_run", 0),
        "calls": stats.get("num_calls", 0),
        "input_tokens": stats.get("input_tokens", 0),
        "cached_input_tokens": stats.get("cached_input_tokens", 0),
        "output_tokens": stats.get("output_tokens", 0),
        "parse_failures": stats.get("parse_failures", 0),
        "reask_calls": stats.get("reask_calls", 0),
        "reasked_items": stats.get("reasked_items", 0),
        "load_errors": state.get("load_errors", []),
        "per_round": result.get("per_round", []),
    }
