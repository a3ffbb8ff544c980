"""Baselines of BATS in the same harness (the shared agent loop of :mod:`workflows.bats.agent`).

Its workflows (declared in the ``quotaflow.workflows`` entry-point group):

- ``tracker``: ReAct + Budget Tracker (policy on the first turn, budget block after every tool);
- ``forcing``: budget forcing, telling the agent to use its remaining budget whenever it answers;
- ``parallel``: N independent ReAct samples on the run's budget, majority vote.

Plain ReAct is ``workflows.react`` (the runtime's baseline).
"""

from __future__ import annotations

from workflows.baselines.parallel import ParallelConfig, parallel_workflow
from workflows.bats.agent import agent_workflow
from workflows.bats.config import LoopMode

__all__ = ["FORCING", "PARALLEL", "TRACKER", "ParallelConfig"]

TRACKER = agent_workflow("tracker", LoopMode(tracker=True), description="ReAct with the Budget Tracker")
FORCING = agent_workflow("forcing", LoopMode(forcing=True), description="ReAct with budget forcing")
PARALLEL = parallel_workflow()
