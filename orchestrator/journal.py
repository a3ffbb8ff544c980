"""The resume journal: every nondeterministic input a graph node consumes, keyed by where in the
graph it was consumed, so that a resumed run takes exactly the path the original took.

What is journaled: LLM replies, tool results, the budget views a node reads
(``ctx.tool_budgets()``) and clock reads (``ctx.now()``). Each entry's key is built from

- the LangGraph task that consumed it (a hash of the task's checkpoint namespace, which holds the
  node name and the task id LangGraph derives deterministically from the checkpoint: the same
  task re-run on resume has the same id, and each ``Send`` fan-out has its own);
- the kind of input and a hash of the request (the messages and sampling options of an LLM
  call, a tool's name and arguments);
- the occurrence of that same request within the task (the second identical call is another
  entry).

On resume, a request whose key is journaled gets the journaled result and nothing is sent or
charged. Within a task whose journaled calls ran one after another, the n-th input a node asks
for must be the n-th journaled one: a different request means the workflow's code took another
path than the original run (it read something that is not journaled), and
:class:`~orchestrator.errors.ReplayDivergence` stops the run, naming the node and both
requests. Within a task that had calls in flight at the same time (``asyncio.gather`` in a
node; the run context journals a marker the first time it happens, and calls whose journaled
times overlap count too), order is not defined, so requests are matched by their key alone: a
branch never gets another branch's result.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from orchestrator.errors import ReplayDivergence

__all__ = ["Entry", "Journal", "request_hash", "task_of_current_node"]

OUTSIDE_GRAPH = "-"


def request_hash(kind: str, request: Any) -> str:
    """A short stable hash of a request (any JSON-able value)."""
    text = json.dumps([kind, request], sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def task_of_current_node() -> tuple[str, str]:
    """(task hash, node name) of the LangGraph task running this code; outside a graph node
    (direct SDK calls), one task for the whole run."""
    try:
        from langgraph.config import get_config

        config = get_config()
    except RuntimeError:
        return OUTSIDE_GRAPH, OUTSIDE_GRAPH
    meta = config.get("metadata", {})
    ns = meta.get("langgraph_checkpoint_ns") or config.get("configurable", {}).get("checkpoint_ns") or ""
    node = str(meta.get("langgraph_node", ns.split(":")[0] or OUTSIDE_GRAPH))
    return hashlib.sha256(ns.encode()).hexdigest()[:16], node


@dataclass(frozen=True)
class Entry:
    """One journaled input: its key, what it was (for the divergence message) and its result."""

    key: str
    kind: str
    request: Any
    result: Any
    started_at: datetime | None = None
    finished_at: datetime | None = None


def parse_key(key: str) -> tuple[str, str, str, int] | None:
    """(task, kind, hash, occurrence) of a key made by :meth:`Journal.key`, else None."""
    parts = key.split("/")
    if len(parts) != 5 or not parts[4].isdigit():
        return None
    return parts[1], parts[2], parts[3], int(parts[4])


@dataclass
class Journal:
    """One run's journal, as loaded on resume, and the positions a live run has reached."""

    run_id: str
    entries: dict[str, Entry] = field(default_factory=dict)
    _by_task: dict[str, list[Entry]] = field(default_factory=dict)
    _parallel: set[str] = field(default_factory=set)
    _position: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _occurrences: dict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))

    @classmethod
    def load(cls, run_id: str, entries: Iterable[Entry]) -> Journal:
        journal = cls(run_id)
        by_task: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            journal.entries[entry.key] = entry
            parsed = parse_key(entry.key)
            if parsed is None or parsed[1] == "step":
                continue
            if parsed[1] == "concurrent":
                journal._parallel.add(parsed[0])
            else:
                by_task[parsed[0]].append(entry)
        for task, task_entries in by_task.items():
            task_entries.sort(key=lambda e: (e.finished_at or datetime.min, e.key))
            journal._by_task[task] = task_entries
            if _overlapping(task_entries):
                journal._parallel.add(task)
        return journal

    def key(self, kind: str, request: Any, task: str) -> str:
        """The key of this request: the same on resume for the same call at the same place."""
        digest = request_hash(kind, request)
        slot = (task, kind, digest)
        occurrence = self._occurrences[slot]
        self._occurrences[slot] = occurrence + 1
        return f"{self.run_id}/{task}/{kind}/{digest}/{occurrence}"

    def concurrency_key(self, task: str) -> str:
        """The key of the marker saying ``task`` had calls in flight at the same time."""
        return f"{self.run_id}/{task}/concurrent/-/0"

    def is_concurrent(self, task: str) -> bool:
        return task in self._parallel

    def mark_concurrent(self, task: str) -> None:
        self._parallel.add(task)

    def replay(self, key: str, kind: str, request: Any, task: str, node: str) -> Entry | None:
        """The journaled entry of this input, None for a new one; raises ReplayDivergence where a
        sequential task asks for something other than what it asked for at this point before."""
        entry = self.entries.get(key)
        if kind == "step":
            return entry
        position = self._position[task]
        self._position[task] = position + 1
        journaled = self._by_task.get(task, [])
        if task in self._parallel or position >= len(journaled):
            return entry
        expected = journaled[position]
        if expected.key != key:
            raise ReplayDivergence(node, expected.kind, expected.request, kind, request)
        return entry


def _overlapping(entries: list[Entry]) -> bool:
    """Whether any two of a task's entries (sorted by end) ran at the same time."""
    latest_end: datetime | None = None
    for entry in entries:
        start = entry.started_at or entry.finished_at
        if latest_end is not None and start is not None and start < latest_end - timedelta(microseconds=1):
            return True
        if entry.finished_at is not None:
            latest_end = max(latest_end, entry.finished_at) if latest_end else entry.finished_at
    return False


# Sampling fields added after runs were first journaled: hashed only when set, so a run paused
# before they existed resumes with the same keys.
_LATER_SAMPLING_DEFAULTS: dict[str, Any] = {"choices": (), "logprobs": False, "top_logprobs": 0, "regex": None}


def llm_request(messages: Iterable[Mapping[str, Any]], sampling: Mapping[str, Any]) -> dict[str, Any]:
    """The journaled (and hashed) form of an LLM request."""
    kept = {k: v for k, v in sampling.items()
            if k not in _LATER_SAMPLING_DEFAULTS or v != _LATER_SAMPLING_DEFAULTS[k]}
    return {"messages": list(messages), "sampling": kept}
