"""What one agent turn sends to the model: its role's system prompt (with the dataset's answer
format and the routing instructions) and a user turn with the task and the teammates' notes.

Pure: values in, messages out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.types import Message
from workflows.priordynaflow.agents import Roster, option_lines, routing_instructions
from workflows.priordynaflow.config import END
from workflows.priordynaflow.tasks import Dataset

MAX_NOTE_CHARS = 1800
"""Only the tail of a teammate's reply this long is shown to later agents."""

NUM_NOTES = 4
"""Only the latest notes are shown, so prompts stay bounded on long paths."""

ROUTE_REPLY_CHARS = 600
"""Only the end of a reply goes to the routing call: where its answer and any NEXT line are."""

ROUTE_TASK_CHARS = 1500
"""The start of the task in the routing call (a code task's signature and docstring)."""

BRIEF_REPLY_CHARS = 300
BRIEF_TASK_CHARS = 400
"""The same for the "brief" routing call: about half the compact call's prompt on code tasks."""

ROUTER_SYSTEM = "You route a task among the agents of a team. Reply with one option name only."


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
    marker: bool = True,
) -> tuple[Message, ...]:
    """The messages of ``agent``'s turn; ``path`` ends with ``agent`` itself. ``marker``: the
    system prompt ends with the routing instructions (the options and the ``NEXT:`` line); without
    them the turn is the role's prompt and the answer format only, as in a fixed chain."""
    role = roster.get(agent)
    parts = [role.prompt, role.answer_format or dataset.answer_format]
    if marker:
        parts.append(routing_instructions(roster, path, candidates))
    system = "\n\n".join(parts)
    return Message("system", system), Message("user", task_message(dataset.question(task), notes))


def choice_messages(
    roster: Roster, question: str, path: Sequence[str], reply: str, candidates: Sequence[str], *,
    task_chars: int = ROUTE_TASK_CHARS, reply_chars: int = ROUTE_REPLY_CHARS,
) -> tuple[Message, ...]:
    """The constrained routing call after the turn of ``path[-1]``, kept small: the start of the
    task (``task_chars``), the path, the end of the agent's ``reply`` (``reply_chars``) and the
    ``candidates`` with what each does. The turn's role prompt and the teammates' notes stay out
    (resending the whole turn doubled an episode's tokens)."""
    cut = len(reply) > reply_chars
    user = "\n\n".join([
        f"Task:\n{question[:task_chars]}",
        f"Agents so far: {' -> '.join(path)}.",
        f"The latest reply, by {path[-1]}{' (its end)' if cut else ''}:\n{reply[-reply_chars:]}",
        "\n".join(["Options:", *option_lines(roster, candidates)]),
        _who_next(candidates),
    ])
    return Message("system", ROUTER_SYSTEM), Message("user", user)


def full_choice_messages(messages: Sequence[Message], reply: str, candidates: Sequence[str]) -> tuple[Message, ...]:
    """The routing call as it was first built, for comparison: the turn's whole ``messages`` and
    the agent's ``reply`` (a prefix the server may have cached), then the question."""
    question = _who_next(candidates)
    if END in candidates:
        question += f" Choose {END} only if the answer above is final and correct."
    return (*messages, Message("assistant", reply), Message("user", question))


def _who_next(candidates: Sequence[str]) -> str:
    return f"Who works next? Answer with exactly one of: {', '.join(candidates)}."
