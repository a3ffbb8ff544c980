"""Subprocess for the crash tests: runs a react program and dies (SIGKILL, by its own hand or the
test's) at one of two points.

``in-search``: the third search blocks forever after telling the test (through a FIFO) that it
has started, so the test can SIGKILL it mid-run.
``between-steps:K``: the process kills itself when LangGraph goes to save the checkpoint of step
K, once the writes of the step before it are saved: every task of that step has finished, its
results are stored as pending writes, and the checkpoint that applies them is not.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import defaultdict
from typing import Any

from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from orchestrator.tools.base import Tool, ToolResult
from tests.orchestrator.fakes import fake_search_registry, searching_client


def _die_before_checkpoint(saver: Any, step: int) -> None:
    """Make ``saver`` kill this process instead of saving the checkpoint of ``step`` (after the
    previous checkpoint's task writes are saved)."""
    saved: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
    put_writes, put = saver.aput_writes, saver.aput

    async def aput_writes(config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        await put_writes(config, writes, task_id, task_path)
        saved[config["configurable"]["checkpoint_id"]].set()

    async def aput(config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        if metadata.get("step") == step:
            await saved[config["configurable"]["checkpoint_id"]].wait()
            os.kill(os.getpid(), signal.SIGKILL)
        return await put(config, checkpoint, metadata, new_versions)

    saver.aput_writes, saver.aput = aput_writes, aput


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
        if mode.startswith("between-steps:"):
            await rt._ensure_started()
            _die_before_checkpoint(rt._checkpointer, int(mode.partition(":")[2]))
        await rt.run("react", {"question": "Capital of France?"}, backend="fake", tools=["search"],
                     budget="search=10", run_id=run_id, options={"max_turns": 8})

    asyncio.run(go())


if __name__ == "__main__":
    main(*sys.argv[1:5])
