"""Parallel sampling baseline: N ReAct samples at a sampling temperature, majority vote.

The samples are separate graph nodes (``sample_0`` ... ``sample_{N-1}``) that LangGraph runs in
the same step; separate nodes keep every sample's calls under its own journal keys, so a resumed
run replays each sample's calls to that sample. They share the run's budget (the ledger
arbitrates; a sample that finds a tool depleted is refused like any agent).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from orchestrator.options import config_from_options
from orchestrator.workflow import Workflow
from workflows.bats.agent import DEFAULT_TOOLS, attempt_stats, question_state, run_attempt
from workflows.bats.config import AgentConfig, LoopMode
from workflows.bats.selection import majority_vote

if TYPE_CHECKING:
    from langgraph.graph import StateGraph

    from orchestrator.context import RunContext

__all__ = ["ParallelConfig", "parallel_workflow"]


@dataclass(frozen=True)
class ParallelConfig:
    """Options of the parallel baseline."""

    num_samples: int = 3
    """Independent samples run side by side."""
    sample_temperature: float = 0.7
    """Agent temperature of the samples (they must differ to be worth voting over)."""


class _State(TypedDict, total=False):
    question: str
    samples: Annotated[list[dict[str, Any]], operator.add]
    answer: str


def parallel_workflow() -> Workflow:
    """The registered ``parallel`` workflow."""

    def build(ctx: RunContext) -> StateGraph:
        from langgraph.graph import END, START, StateGraph

        config = config_from_options(ParallelConfig, ctx.config)
        agent_config = replace(config_from_options(AgentConfig, ctx.config), temperature=config.sample_temperature)

        async def sample(state: _State, *, index: int) -> dict[str, Any]:
            result = await run_attempt(
                ctx, state["question"], agent_config, LoopMode(), seed=index, purpose=f"sample_{index}"
            )
            return {"samples": [{"index": index, **attempt_stats(result)}]}

        def vote(state: _State) -> dict[str, Any]:
            ordered = sorted(state["samples"], key=lambda s: s["index"])
            return {"answer": majority_vote([s["answer"] for s in ordered])}

        graph = StateGraph(_State)
        graph.add_node("vote", vote)
        for i in range(max(config.num_samples, 1)):
            graph.add_node(f"sample_{i}", partial(sample, index=i))
            graph.add_edge(START, f"sample_{i}")
            graph.add_edge(f"sample_{i}", "vote")
        graph.add_edge("vote", END)
        return graph

    def result(state: dict[str, Any]) -> dict[str, Any]:
        samples = sorted(state.get("samples", []), key=lambda s: s["index"])
        return {
            "answer": state.get("answer", ""),
            "samples": [s["answer"] for s in samples],
            "stats": {
                "num_samples": len(samples),
                "num_turns": sum(s["num_turns"] for s in samples),
                "num_format_errors": sum(s["num_format_errors"] for s in samples),
                "num_refused": sum(s["num_refused"] for s in samples),
            },
        }

    return Workflow(
        name="parallel",
        build=build,
        initial_state=question_state,
        result=result,
        default_tools=DEFAULT_TOOLS,
        description="N parallel ReAct samples on one budget, majority vote",
        option_types=(ParallelConfig, AgentConfig),
    )
