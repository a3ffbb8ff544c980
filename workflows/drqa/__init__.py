"""``drqa``: reasoning-quota allocation over a dataset (run time), and its training pipeline.

The run-time workflow is the ``drqa`` entry point (mode ``dataset``: one run gets every row).
The training pipeline (``workflows.drqa.training``) imports torch only when used.
"""

from __future__ import annotations

from orchestrator.workflow import Workflow
from workflows.drqa.config import option_types
from workflows.drqa.graph import build, initial_state, result, task_problem

__all__ = ["WORKFLOW"]

WORKFLOW = Workflow(
    name="drqa",
    build=build,
    initial_state=initial_state,
    result=result,
    mode="dataset",
    check_task=task_problem,
    description=(
        "Reasoning-token quotas per question from a batch-mode probe (DRQA): probe, allocate, "
        "solve, re-allocate unspent budget; baselines 'uniform' and 'unlimited' on the same path."
    ),
    options={"method": "drqa", "total_budget": None},
    extra_options=option_types(),  # flat names over the nested quota configs
)
