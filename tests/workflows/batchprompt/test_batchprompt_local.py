"""BatchPrompt end to end on the ``local`` backend: the real SmolLM2-135M-Instruct weights on CPU.

Marked slow (loads the model). It proves the real model's answers flow through composer, parser,
re-asks, voting, ledger and store; it asserts no accuracy (the 135M model is weak).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from orchestrator.store.models import LLMCallRow
from workflows.batchprompt.tasks import Item, TaskSpec


@pytest.mark.slow
def test_local_model_batch_run_labels_every_item(tmp_path: Path, rte: TaskSpec, rte_items: list[Item]) -> None:
    from orchestrator.tools.registry import ToolRegistry

    async def go() -> None:
        rt = Runtime(Settings(db_url=f"sqlite:///{tmp_path / 'local.db'}", home=tmp_path), tools=ToolRegistry())
        rows = [{"idx": i.key, **i.inputs, "label": i.gold} for i in rte_items[:4]]
        res = await rt.run("batchprompt", {"task": "rte", "rows": rows, "batch_size": 4, "rounds": 1},
                           backend="local", backend_options={"num_threads": 1})
        assert res.status == "succeeded", res.error
        out = res.result or {}
        assert set(out["answer"]) == {"0", "1", "2", "3"}
        assert set(out["answer"].values()) <= {"entailment", "not_entailment"}
        assert out["calls"] >= 1 and out["input_tokens"] > 300 and out["output_tokens"] > 0
        assert out["calls"] == 1 + out["reask_calls"]
        async with rt.store.session() as s:
            stored = (await s.execute(select(func.count()).where(LLMCallRow.run_id == res.run_id))).scalar_one()
        assert stored == out["calls"]
        await rt.aclose()

    asyncio.run(go())
