"""The runtime end to end with control-flow fakes, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from orchestrator.reports import run_report
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from orchestrator.store.models import LLMCallRow, RunRow, ToolCallRow
from orchestrator.testing import ScriptedClient
from tests.orchestrator.fakes import fake_search_registry, searching_client


def _rt(db_url: str, client: ScriptedClient, calls: list[str] | None = None) -> Runtime:
    return Runtime(Settings(db_url=db_url), tools=fake_search_registry(calls), clients={"fake": client})


def test_react_run_records_everything(db_url: str) -> None:
    async def go() -> None:
        client = searching_client(2)
        rt = _rt(db_url, client)
        res = await rt.run("react", {"question": "Capital of France?"}, backend="fake", tools=["search"],
                           budget="search=5,tokens=100000")
        assert res.status == "succeeded" and res.result["answer"] == "Paris"
        # Every request carries the program hints the serving patch needs.
        hints = [r.hints for r in client.requests]
        # Two searches, the answer, then the reading call over the results (as the answer's turn).
        assert [h.turn for h in hints] == [0, 1, 2, 2] and {h.program_id for h in hints} == {res.run_id}
        assert hints[1].tool_name == "search"
        report = await run_report(rt, res.run_id)
        assert report["tools"][0]["units"] == 2 and report["llm"][0]["calls"] == 4
        ledger = {row["resource"]: row for row in report["ledger"]}
        assert ledger["tool:search"]["spent"] == 2 and ledger["tool:search"]["remaining"] == 3
        assert ledger["tokens"]["spent"] == sum(r["input_tokens"] + r["output_tokens"] for r in report["llm"])
        assert report["cost"]["tool_usd"] > 0 and [s["node"] for s in report["trajectory"]][:2] == ["agent", "tool"]
        await rt.aclose()

    asyncio.run(go())


def test_depleted_tool_is_refused_and_agent_must_answer(db_url: str) -> None:
    async def go() -> None:
        calls: list[str] = []
        rt = _rt(db_url, searching_client(10), calls)
        res = await rt.run("react", {"question": "q"}, backend="fake", tools=["search"], budget="search=2",
                           options={"max_turns": 8})
        assert res.status == "succeeded"
        assert len(calls) == 2  # the third search never reached the tool
        async with rt.store.session() as s:
            refused = (await s.execute(select(func.count()).where(ToolCallRow.refused))).scalar_one()
        assert refused == 1
        assert res.result["stop_reason"] in ("turn_limit", "answered")
        await rt.aclose()

    asyncio.run(go())


def test_token_budget_pauses_and_resume_with_more_budget_finishes(db_url: str) -> None:
    async def go() -> None:
        calls: list[str] = []
        rt = _rt(db_url, searching_client(3), calls)
        # Reservations are upper bounds (chars/2 + 64 output tokens): about two turns fit.
        res = await rt.run("react", {"question": "q"}, backend="fake", tools=["search"], budget="tokens=500")
        assert res.status == "paused" and "tokens" in (res.error or "")
        async with rt.store.session() as s:
            assert (await s.get(RunRow, res.run_id)).status == "paused"
        done = await rt.resume(res.run_id, budget="tokens=+100000")
        assert done.status == "succeeded" and done.result["answer"] == "Paris"
        assert len(calls) == 3  # no search repeated across the pause
        async with rt.store.session() as s:
            n_tool_rows = (await s.execute(select(func.count()).select_from(ToolCallRow)
                                           .where(ToolCallRow.run_id == res.run_id))).scalar_one()
            n_llm = (await s.execute(select(func.count()).select_from(LLMCallRow)
                                     .where(LLMCallRow.run_id == res.run_id))).scalar_one()
        assert n_tool_rows == 3 and n_llm == 5  # four turns and the reading call
        await rt.aclose()

    asyncio.run(go())
