"""The BatchPrompt benchmark's stand-in model for its plumbing checks: a responder for the kit's
loopback OpenAI-compatible server (:class:`orchestrator.testing.LoopbackServer`).

It answers with the scripted labeler (gold labels, some flipped, some unsure, answers past
position 20 dropped, all of them under a ``structured_outputs`` regex) and returns ``usage`` and,
when asked, ``logprobs`` in the OpenAI/vLLM shape. ``run.py --fake-server`` serves it in a thread;
by hand, over every built-in task of the shared data folder::

    python -m orchestrator.testing serve --port 8123 --model fake-server \\
        --responder "bench.batchprompt.responder:builtin_tasks()"

It knows the gold labels: never a source of quality figures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from orchestrator.testing import ChatRequest, Reply
from orchestrator.types import Message
from workflows.batchprompt.scripted import Labeler, label_logprobs
from workflows.batchprompt.tasks import Item, TaskSpec

ROOT = Path(__file__).resolve().parents[2]


class BatchPromptModel:
    """Scripted labelers behind the chat-completions wire format, one per task."""

    def __init__(self, tasks: Iterable[tuple[TaskSpec, list[Item]]], *, max_answers: int = 20,
                 accept_structured: bool = True) -> None:
        self.labelers = [
            (task, Labeler(task, items, error_rate=0.1, unsure_rate=0.3, max_answers=max_answers),
             Labeler(task, items, error_rate=0.1, unsure_rate=0.3))
            for task, items in tasks
        ]
        self.accept_structured = accept_structured
        """False: answer HTTP 400 to requests with ``structured_outputs`` (as a server without it)."""
        self.num_requests = 0
        self.num_structured = 0

    def __call__(self, request: ChatRequest) -> Reply:
        body = request.body
        # A regex-constrained request (structured_outputs) gets every line: what the constraint forces.
        structured = bool(body.get("structured_outputs"))
        if structured and not self.accept_structured:
            return Reply(status=400)
        self.num_requests += 1
        self.num_structured += structured
        messages = [Message(m["role"], m["content"]) for m in request.messages]
        system = messages[0].content if messages else ""
        labeler = next((full if structured else lab for task, lab, full in self.labelers
                        if system.startswith(task.instructions)), self.labelers[0][1])
        text = labeler(messages)
        if structured and not re.fullmatch(body["structured_outputs"]["regex"], text):
            raise AssertionError(f"constrained answer does not match its regex: {text[:200]!r}")
        return Reply(text, logprobs=label_logprobs(text))


def builtin_tasks(data_dir: Path = ROOT.parent / "shared" / "data", limit: int | None = None) -> BatchPromptModel:
    """The model over every built-in task's items in ``data_dir``."""
    from workflows.batchprompt.tasks import BUILTIN_TASKS, load_builtin_items, load_task

    return BatchPromptModel((load_task(n), load_builtin_items(n, data_dir, limit=limit).items) for n in BUILTIN_TASKS)
