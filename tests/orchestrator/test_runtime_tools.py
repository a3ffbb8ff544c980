"""Which tools a run gets from the built-in registry, with and without a search corpus."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from orchestrator.errors import BadInputError
from orchestrator.llm.scripted import ScriptedClient, ScriptedConfig
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from orchestrator.store.models import RunRow
from workflows.drqa.sim import make_rows, sim_client


def _runtime(tmp_path: Path, **clients: object) -> Runtime:
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'r.db'}", home=tmp_path, corpus_path=tmp_path / "none.db")
    return Runtime(settings, clients=clients)  # type: ignore[arg-type]


def test_without_a_corpus_tool_free_runs_work_and_search_runs_say_how_to_build_one(tmp_path: Path) -> None:
    rt = _runtime(tmp_path, sim=sim_client(), scripted=ScriptedClient(ScriptedConfig(["Final answer: x"])))

    async def go() -> None:
        try:
            res = await rt.run("drqa", {"rows": make_rows([1, 2]), "dataset": "gsm8k"}, backend="sim",
                               options={"method": "uniform", "total_budget": 400})
            assert res.status == "succeeded", res.error
            # Everything but the corpus tools is still there for workflows that name none.
            assert set(rt.tools.names()) == {"python", "calculator"}
            with pytest.raises(BadInputError, match="quotaflow corpus build"):
                await rt.run("react", {"question": "Who?"}, backend="scripted")
            async with rt.store.session() as session:  # the refused run was not stored
                workflows = (await session.execute(select(RunRow.workflow))).scalars().all()
            assert workflows == ["drqa"]
        finally:
            await rt.aclose()

    asyncio.run(go())
    assert not (tmp_path / "none.db").exists()
