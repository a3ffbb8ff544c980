"""What one agent turn sends to the model: its role's system prompt (with the dataset's answer
format and the routing instructions) and a user turn with the task and the teammates' notes.

Pure: values in, messages out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.types import Message
from workflows.priordynaflow.agents import Roster, routing_instructions
from workflows.priordynaflow.config import END
from workflows.priordynaflow.tasks import Dataset

MAX_NOTE_CHARS = 1800
"""Only the tail of a teammate's reply this long is shown to later agents."""

NUM_NOTES = 4
"""Only the latest notes are shown, so prompts stay bounded on long paths."""


def task_message(question: str, notes: list[dict[str, str]]) -> str:
    """The user turn every agent gets: the task and the latest teammates' notes."""
    parts = [f"Task:\n{question}"]
    if notes:
        parts.append("Notes from your teammates, oldest first:")
        for note in notes[-NUM_NOTES:]:
            text = note["text"][-MAX_NOTE_CHARS:]
            if note.get("observation"):
                text += f"\n[program output]\n{note['observation']}"
            parts.append(f"[{note['agent']}]\n{text}")
    return "\n\n".join(parts)


def agent_messages(
    roster: Roster,
    agent: str,
    dataset: Dataset,
    task: dict[str, Any],
    *,
    path: Sequence[str],
    candidates: Sequence[str],
    notes: list[dict[str, str]],
) -> tuple[Message, ...]:
    """The messages of ``agent``'s turn; ``path`` ends with ``agent`` itself."""
    system = "\n\n".join(
        [roster.get(agent).prompt, dataset.answer_format, routing_instructions(roster, path, candidates)]
    )
    return Message("system", system), Message("user", task_message(dataset.question(task), notes))


def choice_messages(messages: Sequence[Message], reply: str, candidates: Sequence[str]) -> tuple[Message, ...]:
    """The constrained routing call after a turn: the turn's messages and the agent's ``reply``
    (a prefix the server has cached), then the question whose answer is one of ``candidates``."""
    options = ", ".join(candidates)
    question = (f"Who works next? Answer with exactly one of: {options}. "
                f"Choose {END} only if the answer above is final and correct.") if END in candidates else (
                f"Who works next? Answer with exactly one of: {options}.")
    return (*messages, Message("assistant", reply), Message("user", question))
