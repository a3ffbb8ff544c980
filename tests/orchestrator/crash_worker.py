"""Subprocess for the crash test: runs a react program whose third search blocks forever after
telling the test (through a FIFO) that it has started, so the test can SIGKILL it mid-run."""

from __future__ import annotations

import asyncio
import sys

from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from orchestrator.tools.base import Tool, ToolResult
from tests.orchestrator.fakes import fake_search_registry, searching_client


def main(db_url: str, run_id: str, fifo: str) -> None:
    registry = fake_search_registry()
    plain = registry.get("search")
    calls = 0

    async def search(args: dict) -> ToolResult:  # type: ignore[type-arg]
        nonlocal calls
        calls += 1
        if calls == 3:
            with open(fifo, "w") as f:  # blocking on purpose: the test opens the FIFO
                f.write("in third search\n")
            await asyncio.Event().wait()
        return await plain.fn(args)

    registry.register(Tool(plain.spec, search), replace=True)

    async def go() -> None:
        rt = Runtime(Settings(db_url=db_url), tools=registry, clients={"fake": searching_client(4)})
        await rt.run("react", {"question": "Capital of France?"}, backend="fake", tools=["search"],
                     budget="search=10", run_id=run_id, options={"max_turns": 8})

    asyncio.run(go())


if __name__ == "__main__":
    main(*sys.argv[1:4])
