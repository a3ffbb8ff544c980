"""Tolerant parsing of the agent's action lines (``search: q``, ``browse: url``, ``answer: a``).

Small models decorate their lines (bullets, bold, backticks, ``Action: search[q]``, quotes); all
of that is accepted. A line only counts as an action when the keyword is followed by a separator
(``:``, ``=``, ``[``, ``(``), so prose such as "Search results show..." is not mistaken for one,
and neither is a line copied from the prompt: a budget-block line (``search: 1 used, 4 left (of 5
queries)``) or a format line with its placeholder (``search: <keywords>``, ``answer: <short answer>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ANSWER", "EXAMPLE_WORDS", "Action", "clean_answer", "copies_example", "example_words", "fallback_answer",
    "parse_actions", "split_example_copies",
]

ANSWER = "answer"

_ALIASES = {
    "final answer": ANSWER,
    "final_answer": ANSWER,
    "answer": ANSWER,
    "open": "browse",
    "visit": "browse",
    "read": "browse",
    "lookup": "search",
    "query": "search",
}

_DECORATION = re.compile(r"^(?:[\s>*`#\-\u2022]+|\d+[.)]\s+)*(?:action\s*\d*\s*[:\-]\s*)?", re.IGNORECASE)
_LINE = re.compile(r"^(?P<kw>[A-Za-z_][A-Za-z_ ]{0,20}?)\s*\**\s*(?P<sep>[:=\[(])\s*\**\s*(?P<rest>.*)$")
_ANSWER_IS = re.compile(r"\banswer\b.*?\bis\b\s*:\s*(.*)$", re.IGNORECASE)
_PLAN_ECHO = re.compile(r"^\[[ x!~]\]|^\((?:explore|verify)\)|^plan\b", re.IGNORECASE)
_ANSWER_LEAD = re.compile(r"^(?:the\s+)?(?:final\s+)?answer\s+is\s*:?\s*", re.IGNORECASE)
_BUDGET_ECHO = re.compile(r"^\d+(?:\.\d+)?\s+used\s*,\s*(?:\d+(?:\.\d+)?\s+left|no\s+limit)\b", re.IGNORECASE)
"""A tool line whose argument is a line of the Budget Tracker's block as it read until 2026-12-04
(``search: 1 used, 4 left (of 5 queries)``; workflows.bats.tracker.tracker_block now writes the paper's
``Search Budget Used: 1, ...``, which has no action syntax) copied by the agent: a small model
repeated them (Qwen2.5-Coder-0.5B on the CPU, 2026-12-04: two of three Tracker runs spent their
search budget on such "queries"). Never a real query: skipped."""
PLACEHOLDERS = frozenset({
    "keywords", "a few keywords", "query", "url", "a url copied from a search result", "short answer",
    "the answer", "answer",
})
"""The format's own placeholders (``search: <keywords>``, ``answer: <short answer>``) as arguments:
the agent copied the format line, it did not act (the same CPU runs, once the block's lines were
skipped, searched "keywords", browsed "url" and answered "short answer"). Skipped."""

EXAMPLE_WORDS = frozenset({"eiffel", "dijon", "1832", "1887", "1889"})
"""Words of the worked examples the agents are shown (the Eiffel Tower exchange of the ReAct and
BATS prompts): a real question's trajectory mentions them only when the question or a tool result
does. A small model copies the example instead: Qwen2.5-Coder-0.5B on one H200 (plan methods-6,
200 HotpotQA questions, 800 runs per method) answered "Gustave Eiffel", "Dijon" or a date of the
example in 66 ReAct, 267 Tracker and 241 BATS runs. A search for the example's keywords is a copy
too: its results would name the example and so seem to ground a copied answer."""
_EXAMPLE_WORD = re.compile(r"\b(?:" + "|".join(sorted(EXAMPLE_WORDS)) + r")\b", re.IGNORECASE)


@dataclass(frozen=True)
class Action:
    """One parsed action: ``kind`` is a tool name or ``answer``; ``value`` its argument."""

    kind: str
    value: str


def _clean_value(rest: str, sep: str) -> str:
    value = rest.strip()
    if sep in "[(":
        closing = "]" if sep == "[" else ")"
        if value.endswith(closing):
            value = value[:-1]
    value = value.strip().strip("*`").strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    return value.strip()


def clean_answer(text: str) -> str:
    """An answer without quotes, a trailing full stop or an "The answer is" lead-in."""
    text = _ANSWER_LEAD.sub("", text.strip()).strip().strip("*`").rstrip(".").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    return text.strip()


def parse_actions(text: str, tools: Iterable[str] = ("search", "browse")) -> list[Action]:
    """Every action line of ``text`` in order; unknown keywords and prose lines are skipped."""
    known = {t.lower(): t for t in tools}
    actions: list[Action] = []
    for raw in text.splitlines():
        line = _DECORATION.sub("", raw).strip()
        m = _LINE.match(line)
        if not m:
            continue
        keyword = " ".join(m["kw"].lower().split())
        kind = known.get(keyword) or _ALIASES.get(keyword)
        if kind is None or (kind != ANSWER and kind not in known.values()):
            continue
        value = _clean_value(m["rest"], m["sep"])
        if kind == ANSWER:
            value = clean_answer(value)
        elif _BUDGET_ECHO.match(value):
            continue
        if value and value.lower() not in PLACEHOLDERS:
            actions.append(Action(kind, value))
    return actions


def fallback_answer(text: str, max_chars: int = 200) -> str:
    """Best-effort answer from a reply with no action line.

    Takes what follows "answer ... is:" when the reply says so (on the same or the next line),
    else the first line that is not an echo of the plan checklist.
    """
    lines = [_DECORATION.sub("", raw).strip() for raw in text.splitlines()]
    lines = [ln for ln in lines if ln and not _PLAN_ECHO.match(ln) and not _copied(ln)]
    for i, line in enumerate(lines):
        m = _ANSWER_IS.search(line)
        if m:
            rest = m.group(1).strip() or (lines[i + 1] if i + 1 < len(lines) else "")
            if rest:
                return clean_answer(rest)[:max_chars]
    return clean_answer(lines[0])[:max_chars] if lines else ""


def _copied(line: str) -> bool:
    """A line the agent copied from its prompt rather than wrote: a budget-block line or a format
    line with its placeholder (``answer: <short answer>``, ``<short answer>``)."""
    m = _LINE.match(line)
    value = _clean_value(m["rest"], m["sep"]) if m else _clean_value(line, ":")
    return bool(_BUDGET_ECHO.match(value)) or value.lower() in PLACEHOLDERS


def example_words(text: str) -> list[str]:
    """The :data:`EXAMPLE_WORDS` in ``text``, lowercase, sorted, once each."""
    return sorted({w.lower() for w in _EXAMPLE_WORD.findall(text)})


def copies_example(value: str, question: str, observed: str = "") -> bool:
    """Whether ``value`` (an action's argument) names the worked example (an :data:`EXAMPLE_WORDS`
    word) that the agent has no reason to name: the question is not about the example's subject
    (it names none of the words) and ``observed`` (the tool results so far) does not contain that
    word. Then the agent copied the example rather than acting on its question; a question about
    the Eiffel Tower, or a search result that mentions Dijon, makes the words fair to use."""
    words = set(example_words(value))
    if not words or _EXAMPLE_WORD.search(question):
        return False
    return not words <= set(example_words(observed))


def split_example_copies(actions: list[Action], question: str, observed: str = "") -> tuple[list[Action], list[Action]]:
    """``actions`` as (kept, copied from the worked example), by :func:`copies_example`."""
    copied = [a for a in actions if copies_example(a.value, question, observed)]
    return [a for a in actions if a not in copied], copied
