"""An attempt's trajectory and the context the agent sees of it (pure).

A trajectory is a list of plain dicts (they live in the LangGraph state, so they checkpoint):
``{"role": "assistant"|"tool"|"user", "content": str, "name": str|None, "stub": str|None,
"actions": [[kind, value], ...]}``. Only the most recent tool outputs are shown in full; older
ones are replaced by their one-line stub (BATS keeps only the latest tool response), and a new
attempt starts from a summary instead of the raw trajectory of the earlier ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.types import Message
from workflows.bats import prompts

__all__ = [
    "Entry",
    "action_log",
    "assistant_entry",
    "demo_messages",
    "evidence_text",
    "render_messages",
    "strip_demo",
    "tool_entry",
    "tool_outputs",
    "truncate",
    "user_entry",
]

Entry = dict[str, Any]


def truncate(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` with a marker saying how much was cut."""
    if len(text) <= max_chars:
        return text
    return text[:max_chars] + f" [... {len(text) - max_chars} more characters cut]"


def assistant_entry(content: str, actions: Sequence[tuple[str, str]] = ()) -> Entry:
    return {"role": "assistant", "content": content, "actions": [list(a) for a in actions]}


def tool_entry(name: str, content: str, stub: str) -> Entry:
    return {"role": "tool", "name": name, "content": content, "stub": stub}


def user_entry(content: str) -> Entry:
    return {"role": "user", "content": content}


def render_messages(
    system: str,
    head: str,
    entries: Sequence[Mapping[str, Any]],
    *,
    keep_tool_outputs: int = 1,
) -> list[Message]:
    """The chat the agent sees: system prompt, the task (``head``), then the trajectory with all
    but the last ``keep_tool_outputs`` tool outputs replaced by their stubs."""
    tool_positions = [i for i, e in enumerate(entries) if e["role"] == "tool"]
    keep = max(keep_tool_outputs, 0)
    dropped = set(tool_positions[: len(tool_positions) - keep]) if keep else set(tool_positions)
    messages = [Message("system", system), Message("user", head)]
    for i, e in enumerate(entries):
        content = (e.get("stub") or "[older tool output dropped]") if i in dropped else e["content"]
        messages.append(Message(e["role"], content, e.get("name")))
    return messages


def demo_messages() -> list[Message]:
    """The worked example exchange shown before the question (see ``prompts.DEMO_TURNS``)."""
    out = [Message("user", f"{prompts.DEMO_QUESTION}\n\n{prompts.NEXT_ACTION}")]
    for role, content in prompts.DEMO_TURNS:
        out.append(Message(role, content, "search" if role == "tool" else None))  # type: ignore[arg-type]
    return out


def strip_demo(messages: Sequence[Message]) -> list[Message]:
    """``messages`` without the demo exchange (for rule clients and tests reading the context)."""
    demo = {(m.role, m.content) for m in demo_messages()}
    return [m for m in messages if (m.role, m.content) not in demo]


def evidence_text(entries: Sequence[Mapping[str, Any]], *, max_chars_per_output: int = 600) -> str:
    """The trajectory as the verifier reads it: every action and a cut of every tool output."""
    lines: list[str] = []
    for e in entries:
        if e["role"] == "assistant":
            lines.extend(f"{kind}: {value}" for kind, value in e.get("actions", []))
        elif e["role"] == "tool":
            lines.append("-> " + truncate(e["content"], max_chars_per_output).replace("\n", "\n   "))
    return "\n".join(lines) or "(no actions)"


def tool_outputs(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The tool results of a trajectory, in order."""
    return [e["content"] for e in entries if e["role"] == "tool"]


def action_log(entries: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """What an attempt did, by kind: ``{"search": [...], "browse": [...], "answer": [...]}``."""
    log: dict[str, list[str]] = {}
    for e in entries:
        for kind, value in e.get("actions", []):
            log.setdefault(kind, []).append(value)
    return log
