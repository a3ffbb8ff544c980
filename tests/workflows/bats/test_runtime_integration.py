"""BATS and a baseline end to end through the real Runtime (SQLite store, ledger, checkpoints)
and the real corpus tools over a tiny corpus, with the scripted LLM for control flow only."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select

from budget.tables import BudgetAccountRow
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from orchestrator.store.models import LLMCallRow, StepRow, ToolCallRow
from orchestrator.testing import ScriptedClient, ScriptedConfig
from orchestrator.tools.corpus import Corpus, CorpusSource, browse_tool, build_corpus, search_tool
from orchestrator.tools.registry import ToolRegistry
from orchestrator.types import Message
from workflows.bats import prompts
from workflows.bats.agent import strip_demo


def rule(messages: Sequence[Message]) -> str:
    system = messages[0].content
    if system == prompts.PLANNER_SYSTEM:
        return "explore: who designed the tower\nverify: where the designer was born"
    if system == prompts.READ_SYSTEM:
        return "Dijon" if "born in Dijon" in messages[-1].content else "unknown"
    if system == prompts.VERIFIER_SYSTEM:
        return ('{"verdicts": ["satisfied", "unverifiable"], "decision": "CONTINUE", '
                '"justification": "birthplace open", "summary": "designer found"}')
    if any(m.role == "tool" for m in strip_demo(messages)):
        return "answer: Gustave Eiffel"  # the agent's line names the searched entity; the reading corrects it
    # Three queries against a budget of two: the ledger must refuse the third.
    return "search: eiffel tower\nsearch: gustave eiffel\nsearch: one too many"


def make_runtime(tmp_path: Path) -> Runtime:
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps(d) for d in [
        {"title": "Eiffel Tower", "text": "The Eiffel Tower was designed by the company of Gustave Eiffel."},
        {"title": "Gustave Eiffel", "text": "Gustave Eiffel was a French engineer born in Dijon."},
    ]))
    build_corpus(tmp_path / "corpus.db", [CorpusSource(docs, "documents")])
    corpus = Corpus(tmp_path / "corpus.db")
    tools = ToolRegistry([search_tool(corpus), browse_tool(corpus)])
    return Runtime(Settings(db_url=f"sqlite:///{tmp_path / 'store.db'}", home=tmp_path),
                   tools=tools, clients={"rule": ScriptedClient(ScriptedConfig(responses=rule))})


def test_bats_through_runtime_never_overspends(tmp_path: Path) -> None:
    async def go() -> None:
        async with make_runtime(tmp_path) as rt:
            await check_bats(rt)

    asyncio.run(go())


async def check_bats(rt: Runtime) -> None:
    res = await rt.run("bats", {"question": "Where was the Eiffel Tower's designer born?"},
                       backend="rule", budget="search=2,browse=3")
    assert res.status == "succeeded", res.error
    assert res.result["answer"] == "Dijon" and res.result["attempts"][0]["agent_answer"] == "Gustave Eiffel"
    assert res.result["attempts"][0]["decision"] == "CONTINUE"
    assert res.result["stats"]["num_attempts"] == 1  # search hit 0: no second attempt
    async with rt.store.session() as s:
        tools = (await s.execute(select(ToolCallRow).where(ToolCallRow.run_id == res.run_id))).scalars().all()
        accounts = (await s.execute(select(BudgetAccountRow).where(
            BudgetAccountRow.scope == f"run:{res.run_id}"))).scalars().all()
        purposes = (await s.execute(select(LLMCallRow.purpose).where(LLMCallRow.run_id == res.run_id)
                                    .order_by(LLMCallRow.id))).scalars().all()
        steps = (await s.execute(select(StepRow.node).where(StepRow.run_id == res.run_id))).scalars().all()
    assert [(t.tool, t.refused) for t in tools] == [("search", False), ("search", False), ("search", True)]
    spent = {a.resource: (a.spent, a.limit_amount, a.reserved) for a in accounts}
    assert spent["tool:search"] == (2.0, 2.0, 0.0)
    assert purposes == ["planner", "agent", "agent", "agent_read", "verifier"]
    assert "verify" in steps and "agent" in steps
    # The agent's second turn saw real search results followed by the tracker block.
    async with rt.store.session() as s:
        second = (await s.execute(select(LLMCallRow.prompt).where(LLMCallRow.run_id == res.run_id)
                                  .order_by(LLMCallRow.id).offset(2).limit(1))).scalar_one()
        reading = (await s.execute(select(LLMCallRow.prompt).where(LLMCallRow.run_id == res.run_id)
                                   .order_by(LLMCallRow.id).offset(3).limit(1))).scalar_one()
    observation = second[-2]["content"]  # the last message asks for the final answer
    assert "Eiffel Tower <wiki://Eiffel Tower>" in observation and "Refused" in observation
    assert "Search Budget Used: 2, Search Budget Remaining: 0 (of 2 queries)" in observation
    # The reading call saw both searches' results, without the refusal or the tracker block.
    read = reading[-1]["content"]
    assert "[search: eiffel tower]" in read and "[search: gustave eiffel]" in read and "born in Dijon" in read
    assert "Refused" not in read and "Budget" not in read


def test_parallel_samples_keep_separate_journal_keys(tmp_path: Path) -> None:
    async def go() -> None:
        async with make_runtime(tmp_path) as rt:
            await check_parallel(rt)

    asyncio.run(go())


async def check_parallel(rt: Runtime) -> None:
    res = await rt.run("parallel", {"question": "Where was the Eiffel Tower's designer born?"}, backend="rule",
                       budget="search=20,browse=20", options={"num_samples": 3})
    assert res.status == "succeeded", res.error
    assert res.result["answer"] == "Dijon" and res.result["samples"] == ["Dijon"] * 3
    async with rt.store.session() as s:
        rows = (await s.execute(select(LLMCallRow.key, LLMCallRow.purpose)
                                .where(LLMCallRow.run_id == res.run_id))).all()
    assert {p for _, p in rows} == {f"sample_{i}{end}" for i in range(3) for end in ("", "_read")}
    # Each sample's calls are journaled under its own graph task, so a resumed run replays them correctly.
    # (a sample's reading call runs in its task too)
    sample = {p: p.removesuffix("_read") for _, p in rows}
    task_of = {s: {k.split("/")[1] for k, q in rows if sample[q] == s} for s in sample.values()}
    assert all(len(tasks) == 1 for tasks in task_of.values())
    assert len({next(iter(tasks)) for tasks in task_of.values()}) == 3


def test_bats_on_the_scripted_backend(tmp_path: Path) -> None:
    """The same run through the real ``scripted`` backend (create_client), not a test double."""

    async def go() -> None:
        rt = make_runtime(tmp_path)
        async with rt:
            res = await rt.run("bats", {"question": "Where was the Eiffel Tower's designer born?"},
                               backend="scripted", budget="search=2,browse=3",
                               backend_options={"responses": rule})
            assert res.status == "succeeded", res.error
            assert res.result["answer"] == "Dijon"
            async with rt.store.session() as s:
                model = (await s.execute(select(LLMCallRow.model).where(LLMCallRow.run_id == res.run_id))).scalars()
                assert set(model) == {"scripted"}

    asyncio.run(go())
