"""PriorDynaFlow: a workflow that picks its next agent per task and step, guided by a Q-table
learned from past runs (Lin, Zhao, Shi, arXiv 2509.14547; research/papers.md section 2).

Public API::

    from workflows.priordynaflow import RouterConfig, QTable, LearnerPool, register_roster
"""

from __future__ import annotations

from typing import Any

from orchestrator.workflow import Workflow
from workflows.priordynaflow.agents import (
    CODE_ROSTER,
    MATH_ROSTER,
    AgentRole,
    Roster,
    get_roster,
    register_roster,
)
from workflows.priordynaflow.config import END, RouterConfig, WorkflowOptions
from workflows.priordynaflow.episode import initial_state, result, task_problem
from workflows.priordynaflow.graph import build
from workflows.priordynaflow.learner import (
    Learner,
    LearnerPool,
    SessionTableStore,
    default_pool,
    set_default_pool,
)
from workflows.priordynaflow.qtable import QTable, Transition, learn_episode
from workflows.priordynaflow.tasks import (
    Dataset,
    cv_folds,
    get_dataset,
    jsonl_dataset,
    register_dataset,
)

__all__ = [
    "CODE_ROSTER",
    "END",
    "MATH_ROSTER",
    "WORKFLOW",
    "AgentRole",
    "Dataset",
    "Learner",
    "LearnerPool",
    "QTable",
    "Roster",
    "RouterConfig",
    "SessionTableStore",
    "Transition",
    "WorkflowOptions",
    "cv_folds",
    "default_pool",
    "get_dataset",
    "get_roster",
    "jsonl_dataset",
    "learn_episode",
    "register_dataset",
    "register_roster",
    "set_default_pool",
]

WORKFLOW = Workflow(
    name="priordynaflow",
    build=build,
    initial_state=initial_state,
    result=result,
    default_tools=("python",),
    description="Dynamic multi-agent workflow: a learned Q-table ranks which agent runs next",
    option_types=(WorkflowOptions,),
    extra_options={"priordynaflow": dict[str, Any]},  # the same options, as one mapping
    check_task=task_problem,
)
