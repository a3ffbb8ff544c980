"""BATS (Budget-Aware Test-time Scaling, arXiv 2511.17006) on QuotaFlow's runtime.

Its workflows (entry points ``bats`` and ``react_harness``): BATS, and ``react_harness``, plain ReAct in the
same agent loop as BATS and its baselines (same tools, demo exchange, answer format, answer
extraction and budget-derived turn cap; no tracker, no forcing), which is what the BATS benchmark
runs as its ``react`` method. Its parts: the shared agent loop (:mod:`.agent`), action parsing
(:mod:`.actions`), context management (:mod:`.trajectory`), planning (:mod:`.planning`), the
verifier (:mod:`.verifier`), answer selection (:mod:`.selection`), the graph (:mod:`.graph`) and
QA scoring (:mod:`.scoring`). The baselines that share the loop live in :mod:`workflows.baselines`.
"""

from __future__ import annotations

from workflows.bats.agent import LoopMode, agent_workflow
from workflows.bats.graph import BatsConfig, bats_workflow

__all__ = ["BATS", "REACT_HARNESS", "BatsConfig"]

BATS = bats_workflow()
REACT_HARNESS = agent_workflow(
    "react_harness", LoopMode(), description="plain ReAct in the BATS harness (no budget shown)"
)
