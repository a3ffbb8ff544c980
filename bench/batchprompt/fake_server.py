"""A fake OpenAI-compatible chat server for the BatchPrompt benchmark's plumbing checks.

It answers ``/v1/chat/completions`` with the scripted labeler (gold labels, some flipped, some
unsure, answers past position 20 dropped) and returns ``usage`` and, when asked, ``logprobs`` in
the OpenAI/vLLM shape. In process (``FakeServer(...).transport()``, an httpx transport: what
``run.py --fake-server`` uses) or over a socket::

    python bench/batchprompt/fake_server.py --port 8123 --data-dir ../shared/data --limit 40

It knows the gold labels: never a source of quality figures.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from orchestrator.types import LLMRequest, Message, SamplingOptions
from workflows.batchprompt.scripted import ScriptedLabeler
from workflows.batchprompt.tasks import Item, TaskSpec


class FakeServer:
    """Scripted labelers behind the chat-completions wire format, one per task."""

    def __init__(self, tasks: Iterable[tuple[TaskSpec, list[Item]]], *, max_answers: int = 20,
                 accept_structured: bool = True) -> None:
        self.labelers = [
            (task, ScriptedLabeler(task, items, error_rate=0.1, unsure_rate=0.3, max_answers=max_answers,
                                   logprobs=True, model="fake-server"),
             ScriptedLabeler(task, items, error_rate=0.1, unsure_rate=0.3, logprobs=True, model="fake-server"))
            for task, items in tasks
        ]
        self.accept_structured = accept_structured
        """False: answer HTTP 400 to requests with ``structured_outputs`` (as a server without it)."""
        self.num_requests = 0
        self.num_structured = 0

    async def handle(self, body: dict[str, Any]) -> dict[str, Any]:
        """One chat completion response body for a request body."""
        self.num_requests += 1
        messages = tuple(Message(m["role"], m["content"]) for m in body["messages"])
        system = messages[0].content if messages else ""
        # A regex-constrained request (structured_outputs) gets every line: what the constraint forces.
        structured = bool(body.get("structured_outputs"))
        if structured:
            self.num_structured += 1
        labeler = next((full if structured else lab for task, lab, full in self.labelers
                        if system.startswith(task.instructions)), self.labelers[0][1])
        response = await labeler.complete(LLMRequest(messages, SamplingOptions(max_tokens=body.get("max_tokens", 256))))
        if structured and not re.fullmatch(body["structured_outputs"]["regex"], response.text):
            raise AssertionError(f"constrained answer does not match its regex: {response.text[:200]!r}")
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": response.text},
                                  "finish_reason": "stop"}
        if body.get("logprobs"):
            choice["logprobs"] = {"content": [{"token": t, "logprob": lp, "top_logprobs": []}
                                              for t, lp in getattr(response, "token_logprobs", ())]}
        return {
            "id": f"fake-{self.num_requests}", "object": "chat.completion", "model": body.get("model", "fake"),
            "choices": [choice],
            "usage": {"prompt_tokens": response.usage.input_tokens, "completion_tokens": response.usage.output_tokens,
                      "total_tokens": response.usage.total_tokens},
        }

    def transport(self) -> Any:
        """An httpx transport serving this fake in process."""
        import httpx

        async def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/models"):
                return httpx.Response(200, json={"data": [{"id": "fake-server"}]})
            body = json.loads(request.content)
            if "structured_outputs" in body and not self.accept_structured:
                return httpx.Response(400, json={"error": {"message": "unknown field structured_outputs"}})
            return httpx.Response(200, json=await self.handle(body))

        return httpx.MockTransport(handler)


def main() -> None:
    from aiohttp import web

    from workflows.batchprompt.tasks import BUILTIN_TASKS, load_builtin_items, load_task

    p = argparse.ArgumentParser(description="fake OpenAI-compatible server for bench/batchprompt")
    p.add_argument("--port", type=int, default=8123)
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args()
    server = FakeServer((load_task(n), load_builtin_items(n, args.data_dir, limit=args.limit).items)
                        for n in BUILTIN_TASKS)

    async def chat(request: web.Request) -> web.Response:
        return web.json_response(await server.handle(await request.json()))

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "fake-server"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    web.run_app(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
