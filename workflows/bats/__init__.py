"""BATS (Budget-Aware Test-time Scaling, arXiv 2511.17006) on QuotaFlow's runtime.

Importing this package registers the ``bats`` workflow. Its parts: the shared agent loop
(:mod:`.agent`), action parsing (:mod:`.actions`), context management (:mod:`.trajectory`),
planning (:mod:`.planning`), the verifier (:mod:`.verifier`), answer selection
(:mod:`.selection`), the graph (:mod:`.graph`) and QA scoring (:mod:`.scoring`). The baselines
that share the loop live in :mod:`workflows.baselines`.
"""

from __future__ import annotations

from workflows import register
from workflows.bats.graph import BatsConfig, bats_workflow

__all__ = ["BATS", "BatsConfig"]

BATS = register(bats_workflow())
