"""BatchPrompt: many items per LLM call, with Batch Permutation and Ensembling (BPE) and SEAS.

Lin et al., "BatchPrompt: Accomplish more with less" (ICLR 2024). SinglePrompt is the same code
path with ``batch_size=1``. Registered as the ``batchprompt`` workflow (mode ``dataset``: one run
gets every row). SDK use without the runtime::

    from workflows.batchprompt import BatchPromptConfig, load_task, load_dataset, run_batchprompt
    task = load_task("boolq")
    items = load_dataset("boolq.jsonl", task).items
    result = await run_batchprompt(task, items, BatchPromptConfig(batch_size=16, rounds=3, seas=True),
                                   chat, client.count_tokens)
"""

from __future__ import annotations

from orchestrator.workflow import Workflow
from workflows.batchprompt.engine import (
    BatchPromptConfig,
    BatchPromptResult,
    CallStats,
    run_batchprompt,
)
from workflows.batchprompt.graph import build_graph, initial_state, result_of
from workflows.batchprompt.prompt import (
    compose_messages,
    label_probabilities,
    parse_answers,
    plan_batches,
)
from workflows.batchprompt.tasks import (
    BUILTIN_TASKS,
    TaskSpec,
    load_builtin_items,
    load_dataset,
    load_task,
)
from workflows.batchprompt.voting import VotingConfig, VotingRule, permute, seas_done, tally

__all__ = [
    "BUILTIN_TASKS",
    "WORKFLOW",
    "BatchPromptConfig",
    "BatchPromptResult",
    "CallStats",
    "TaskSpec",
    "VotingConfig",
    "compose_messages",
    "label_probabilities",
    "load_builtin_items",
    "load_dataset",
    "load_task",
    "parse_answers",
    "permute",
    "plan_batches",
    "run_batchprompt",
    "seas_done",
    "tally",
]

WORKFLOW = Workflow(
    name="batchprompt",
    build=build_graph,
    initial_state=initial_state,  # type: ignore[arg-type]
    result=result_of,
    mode="dataset",
    description="Classify a dataset with many items per call; BPE voting rounds and SEAS early stop.",
    options={
        "batch_size": 16,
        "rounds": 1,
        "seas": False,
        "voting": "majority",
        "seed": 0,
        "context_window": 8192,
    },
    # Read from the task payload (``quotaflow run batchprompt --set`` puts them there); ``voting``
    # is the rule's name, its weights are flat options.
    option_types=(BatchPromptConfig,),
    extra_options={"voting": VotingRule, "confident_weight": float, "unsure_weight": float},
)
