"""A run killed with SIGKILL mid-run resumes to the same final state, charging no tool call twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from budget.tables import BudgetAccountRow
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from orchestrator.store.models import LLMCallRow, StepRow, ToolCallRow
from tests.orchestrator.fakes import fake_search_registry, searching_client

ROOT = Path(__file__).resolve().parents[2]


def _runtime(db_url: str, calls: list[str]) -> Runtime:
    return Runtime(Settings(db_url=db_url), tools=fake_search_registry(calls),
                   clients={"fake": searching_client(4)})


async def _facts(rt: Runtime, run_id: str) -> dict:  # type: ignore[type-arg]
    async with rt.store.session() as s:
        tool_rows = (await s.execute(select(func.count(), func.sum(ToolCallRow.units))
                                     .where(ToolCallRow.run_id == run_id))).one()
        spent, reserved = (await s.execute(select(BudgetAccountRow.spent, BudgetAccountRow.reserved)
                                           .where(BudgetAccountRow.scope == f"run:{run_id}"))).one()
        steps = (await s.execute(select(StepRow.node, StepRow.data).where(StepRow.run_id == run_id)
                                 .order_by(StepRow.id))).all()
    return {"tool_rows": tool_rows[0], "units": tool_rows[1], "spent": spent, "reserved": reserved,
            "steps": [(n, d) for n, d in steps]}


def test_sigkill_mid_run_then_resume(db_url: str, tmp_path: Path) -> None:
    fifo = tmp_path / "sync.fifo"
    os.mkfifo(fifo)
    run_id = "crashme0000000001"
    proc = subprocess.Popen([sys.executable, "-m", "tests.orchestrator.crash_worker", db_url, run_id, "in-search",
                             str(fifo)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    with open(fifo) as f:  # returns once the worker is inside its third search
        assert f.readline() == "in third search\n"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL

    async def go() -> None:
        calls: list[str] = []
        rt = _runtime(db_url, calls)
        async with rt.store.session() as s:
            before = (await s.execute(select(func.count()).where(ToolCallRow.run_id == run_id))).scalar_one()
        assert before == 2  # two searches finished before the kill, the third was in flight
        resumed = await rt.resume(run_id)
        assert resumed.status == "succeeded"
        # Only the interrupted search and the one after it ran again.
        assert calls == ["query number 2", "query number 3"]

        reference = await rt.run("react", {"question": "Capital of France?"}, backend="fake", tools=["search"],
                                 budget="search=10", options={"max_turns": 8})
        assert resumed.result == reference.result
        assert await rt.get_state(run_id) == await rt.get_state(reference.run_id)
        got, want = await _facts(rt, run_id), await _facts(rt, reference.run_id)
        assert got == want
        assert got["tool_rows"] == 4 and got["spent"] == 4 and got["reserved"] == 0
        await rt.aclose()

    asyncio.run(go())


def _reference_steps() -> int:
    """The step of the react program's last checkpoint (4 searches: agent and act alternate)."""
    return 2 * 4 + 1


@pytest.mark.parametrize("point", ["before-checkpoint", "after-writes"])
@pytest.mark.parametrize("step", [0, 3, _reference_steps()])
def test_killed_between_a_steps_tasks_and_its_checkpoint_resumes_to_the_end(db_url: str, step: int,
                                                                             point: str) -> None:
    """Every task of the step before ``step`` ended; the checkpoint that applies their writes was
    never saved, and the writes were (``after-writes``) or were not. The run has not ended
    (LangGraph lists no "next" node for tasks with saved writes): resume applies the saved writes
    or runs the tasks again, and ends as an uninterrupted run, charging nothing twice."""
    run_id = f"{point[:6]}{step:02d}000000001"
    proc = subprocess.run([sys.executable, "-m", "tests.orchestrator.crash_worker", db_url, run_id,
                           f"{point}:{step}"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -signal.SIGKILL

    async def go() -> None:
        calls: list[str] = []
        rt = _runtime(db_url, calls)
        try:
            assert (await rt.get_run(run_id)).status == "running"
            resumed = await rt.resume(run_id)
            reference = await rt.run("react", {"question": "Capital of France?"}, backend="fake", tools=["search"],
                                     budget="search=10", options={"max_turns": 8})
            assert resumed.status == "succeeded"
            assert resumed.result == reference.result and resumed.result["answer"]  # type: ignore[index]
            assert await rt.get_state(run_id) == await rt.get_state(reference.run_id)
            assert await _facts(rt, run_id) == await _facts(rt, reference.run_id)  # no step, no search twice
            async with rt.store.session() as s:
                llm_calls = [(await s.execute(select(func.count()).where(LLMCallRow.run_id == i))).scalar_one()
                             for i in (run_id, reference.run_id)]
            assert llm_calls[0] == llm_calls[1]
        finally:
            await rt.aclose()

    asyncio.run(go())
