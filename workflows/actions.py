"""The text action format agents use, and its tolerant parser (pure).

Small models follow a line format far better than JSON function calls::

    search: capital of France
    browse: wiki://Paris
    answer: Paris

The first line that starts with a known tool name or ``answer`` (case-insensitive, optional
markdown bullets or "Action:" prefix) wins. Text with no such line is treated as a final answer
when ``fallback_answer`` is set: the documented fallback for output that does not parse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ANSWER = "answer"
_LINE = re.compile(r"^\s*(?:[-*>]\s*)?(?:action\s*:\s*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?::|\[|\()\s*(?P<arg>.*?)\s*[\])]?\s*$",
                   re.IGNORECASE)


@dataclass(frozen=True)
class Action:
    name: str
    """A tool name, or ``answer``."""
    argument: str
    parsed: bool = True
    """False when no action line was found and the whole text was taken as the answer."""

    @property
    def is_answer(self) -> bool:
        return self.name == ANSWER


def parse_action(text: str, tools: list[str] | tuple[str, ...], *, fallback_answer: bool = True) -> Action | None:
    known = {t.lower(): t for t in tools}
    aliases = {"final_answer": ANSWER, "final": ANSWER, "finish": ANSWER, ANSWER: ANSWER}
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        name = m["name"].lower()
        arg = m["arg"].strip().strip('"').strip()
        if name in aliases and arg:
            return Action(ANSWER, arg)
        if name in known and arg:
            return Action(known[name], arg)
    if fallback_answer and text.strip():
        return Action(ANSWER, text.strip().splitlines()[0][:500], parsed=False)
    return None
