"""Programs for the Ray executor's tests, in a module Ray workers import as the driver does.

The model is the kit's loopback OpenAI server playing a react agent that searches ``SEARCHES``
times, then answers with its question reversed (its reading call too; a pure function of the conversation, so a resumed
run gets the same replies); the question ``doom`` searches for ``doom`` instead. The search tool
appends ``pid query`` to ``calls.log`` in a scratch directory; with ``block_once`` the first
``query number 2`` anywhere blocks forever after writing its process id to ``blocked.pid`` (the
test kills that worker); a ``doom`` search kills its own process, every time.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from orchestrator.testing import ChatRequest
from orchestrator.tools.base import Tool, ToolResult, ToolSpec
from orchestrator.tools.registry import ToolRegistry
from workflows.bats.prompts import READ_SYSTEM

SEARCHES = 4
DOOM = "doom"


def react_agent(request: ChatRequest) -> str:
    """The loopback server's responder."""
    messages = request.messages
    if messages[0]["content"] == READ_SYSTEM:  # the reading call: the same answer from the results
        line = next(x for x in messages[-1]["content"].splitlines() if x.startswith("Question: "))
        return line.removeprefix("Question: ")[::-1]
    start = max(i for i, m in enumerate(messages) if m["role"] == "user" and m["content"].startswith("Question:"))
    question = messages[start]["content"].removeprefix("Question: ").splitlines()[0]
    if question == DOOM:
        return f"search: {DOOM}"
    seen = sum(1 for m in messages[start:] if m["role"] == "user" and m["content"].startswith("Observation from"))
    return f"search: query number {seen}" if seen < SEARCHES else f"answer: {question[::-1]}"


def _claim(path: Path) -> bool:
    """Create ``path`` holding this process's id, atomically; False when it exists."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}")
    tmp.write_text(str(os.getpid()))
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink()


@dataclass(frozen=True)
class WorkerRuntime:
    """The runtime factory of the test workers (picklable: Ray sends it to each worker)."""

    db_url: str
    scratch: str
    block_once: bool = False

    def __call__(self) -> Runtime:
        return Runtime(Settings(db_url=self.db_url), tools=self.tools())

    def tools(self) -> ToolRegistry:
        scratch = Path(self.scratch)

        async def search(args: dict) -> ToolResult:  # type: ignore[type-arg]
            query = args["query"]
            with open(scratch / "calls.log", "a") as log:
                log.write(f"{os.getpid()} {query}\n")
            if query == DOOM:
                os.kill(os.getpid(), signal.SIGKILL)
            if self.block_once and query == "query number 2" and _claim(scratch / "blocked.pid"):
                await asyncio.Event().wait()
            return ToolResult(f"1. Paris (wiki://Paris): capital of France. [{query}]")

        spec = ToolSpec("search", "search the corpus", {"type": "object", "properties": {"query": {"type": "string"}},
                                                        "required": ["query"]}, unit="query")
        return ToolRegistry([Tool(spec, search)])
