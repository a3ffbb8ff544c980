"""BATS (Budget-Aware Test-time Scaling, arXiv 2511.17006) on QuotaFlow's runtime.

Its workflows (entry points ``bats`` and ``react_harness``): BATS, and ``react_harness``, plain ReAct in the
same agent loop as BATS and its baselines (same tools, demo exchange, answer format, answer
extraction and budget-derived turn cap; no tracker, no forcing), which is what the BATS benchmark
runs as its ``react`` method. Its parts: the options (:mod:`.config`), the shared agent loop as
pure decisions (:mod:`.decide` over the data of :mod:`.steps`) run through a run context
(:mod:`.agent`), context management (:mod:`.trajectory`), answer extraction (:mod:`.extraction`),
the Budget Tracker (:mod:`.tracker`), planning (:mod:`.planning`), the verifier
(:mod:`.verifier`), what BATS decides between attempts (:mod:`.attempts`), answer selection
(:mod:`.selection`), the graph (:mod:`.graph`) and QA scoring (:mod:`.scoring`). The baselines
that share the loop live in :mod:`workflows.baselines`.
"""

from __future__ import annotations

from workflows.bats.agent import agent_workflow
from workflows.bats.config import BatsConfig, LoopMode
from workflows.bats.graph import bats_workflow

__all__ = ["BATS", "REACT_HARNESS", "BatsConfig"]

BATS = bats_workflow()
REACT_HARNESS = agent_workflow(
    "react_harness", LoopMode(), description="plain ReAct in the BATS harness (no budget shown)"
)
