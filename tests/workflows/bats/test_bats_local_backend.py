"""BATS end to end on the embedded local model (SmolLM2-135M, CPU): the whole harness runs with a
real model, every call goes through the ledger, and no budget is overspent. Control flow and
accounting are asserted, not answer quality (the 135M model rarely follows the action format)."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest
from sqlalchemy import select

from budget.tables import BudgetAccountRow
from orchestrator.store.models import LLMCallRow
from tests import extras
from tests.workflows.bats.test_runtime_integration import make_runtime

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason=extras.LOCAL),
]


def test_bats_on_the_local_model(tmp_path: Path) -> None:
    async def go() -> None:
        async with make_runtime(tmp_path) as rt:
            res = await rt.run(
                "bats", {"question": "Where was the Eiffel Tower's designer born?"}, backend="local",
                budget="search=2,browse=1,tokens=6000",
                options={"max_turns": 2, "max_attempts": 1, "max_tokens": 32, "planner_max_tokens": 32,
                         "verifier_max_tokens": 48},
            )
            assert res.status in ("succeeded", "paused"), res.error
            async with rt.store.session() as s:
                calls = (await s.execute(select(LLMCallRow.purpose, LLMCallRow.model, LLMCallRow.output_tokens)
                                         .where(LLMCallRow.run_id == res.run_id))).all()
                accounts = (await s.execute(select(BudgetAccountRow).where(
                    BudgetAccountRow.scope == f"run:{res.run_id}"))).scalars().all()
            assert {m for _, m, _ in calls} == {"SmolLM2-135M-Instruct"}
            assert "planner" in {p for p, _, _ in calls}
            assert all(out <= 48 for _, _, out in calls)
            for acct in accounts:
                assert acct.reserved == 0 and acct.spent <= acct.limit_amount
            if res.status == "succeeded":
                assert res.result["answer"]  # never "no answer" when the run finished

    asyncio.run(go())
