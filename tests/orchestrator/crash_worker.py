"""Subprocess for the crash tests: runs a react program and dies (SIGKILL, by its own hand or the
test's) at one of two points.

``in-search``: the third search blocks forever after telling the test (through a FIFO) that it
has started, so the test can SIGKILL it mid-run.
``before-checkpoint:K``: the process kills itself when LangGraph goes to save the checkpoint of
step K: every task of the step before it has ended; the saver still keeps their writes (it writes
them with that checkpoint), so they are lost with the process.
``after-writes:K``: the same, once those writes are in the database (as the saver writes them
when a graph stops on an error): the tasks' results are stored, the checkpoint applying them is not.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from orchestrator.tools.base import Tool, ToolResult
from tests.orchestrator.fakes import fake_search_registry, searching_client


def _die_before_checkpoint(saver: Any, step: int, *, writes_saved: bool) -> None:
    """Make ``saver`` kill this process instead of saving the checkpoint of ``step``, after
    writing the kept task writes of the step before it when ``writes_saved``."""
    put = saver.aput

    async def aput(config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        if metadata.get("step") == step:
            if writes_saved:
                await saver.aflush(config["configurable"]["thread_id"])
            os.kill(os.getpid(), signal.SIGKILL)
        return await put(config, checkpoint, metadata, new_versions)

    saver.aput = aput


def main(db_url: str, run_id: str, mode: str, fifo: str = "") -> None:
    registry = fake_search_registry()
    plain = registry.get("search")
    calls = 0

    async def search(args: dict) -> ToolResult:  # type: ignore[type-arg]
        nonlocal calls
        calls += 1
        if calls == 3 and mode == "in-search":
            with open(fifo, "w") as f:  # blocking on purpose: the test opens the FIFO
                f.write("in third search\n")
            await asyncio.Event().wait()
        return await plain.fn(args)

    registry.register(Tool(plain.spec, search), replace=True)

    async def go() -> None:
        rt = Runtime(Settings(db_url=db_url), tools=registry, clients={"fake": searching_client(4)})
        point, _, step = mode.partition(":")
        if point in ("before-checkpoint", "after-writes"):
            await rt.__aenter__()
            _die_before_checkpoint(rt.checkpointer, int(step), writes_saved=point == "after-writes")
        await rt.run("react", {"question": "Capital of France?"}, backend="fake", tools=["search"],
                     budget="search=10", run_id=run_id, options={"max_turns": 8})

    asyncio.run(go())


if __name__ == "__main__":
    main(*sys.argv[1:5])
