"""BATS's planning module (pure): constraints classified as exploration or verification, kept as
a checklist in the graph state and updated from the verifier's per-constraint verdicts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = [
    "EXPLORE",
    "VERIFY",
    "apply_verdicts",
    "default_plan",
    "parse_plan",
    "render_plan",
]

EXPLORE = "explore"
VERIFY = "verify"

# Checklist marks: pending, done, failed, partial (unverified).
_MARKS = {"pending": " ", "satisfied": "x", "contradicted": "!", "unverifiable": "~"}
_ITEM = re.compile(
    r"^[\s>*`#\-\u2022\d.)\[\]x~! ]*(?P<kind>explore|exploration|explorative|verify|verification|check)"
    r"\s*\**\s*[:\-)\]]\s*\**\s*(?P<text>.+)$",
    re.IGNORECASE,
)

PlanItem = dict[str, Any]


def _item(kind: str, text: str) -> PlanItem:
    return {"kind": kind, "text": text, "status": "pending"}


def parse_plan(text: str, max_items: int = 4) -> list[PlanItem]:
    """Plan items from the planner's ``explore: ...``/``verify: ...`` lines, exploration first
    (a verification step only makes sense once candidates exist)."""
    items: list[PlanItem] = []
    for line in text.splitlines():
        m = _ITEM.match(line.strip())
        if not m:
            continue
        kind = EXPLORE if m["kind"].lower().startswith("explor") else VERIFY
        body = m["text"].strip().strip("*`").strip()
        if body:
            items.append(_item(kind, body))
    items = items[:max_items]
    return sorted(items, key=lambda it: it["kind"] != EXPLORE)


def default_plan() -> list[PlanItem]:
    """The plan used when the planner's reply has no usable line."""
    return [
        _item(EXPLORE, "find the entity the question is about"),
        _item(VERIFY, "check that the answer fits every part of the question"),
    ]


def render_plan(plan: Sequence[PlanItem]) -> str:
    """The checklist as the agent and the verifier read it."""
    lines = ["Plan ([ ] to do, [x] done, [!] failed, [~] unconfirmed):"]
    for i, item in enumerate(plan, start=1):
        lines.append(f"[{_MARKS.get(item['status'], ' ')}] {i}. ({item['kind']}) {item['text']}")
    return "\n".join(lines)


def apply_verdicts(plan: Sequence[PlanItem], verdicts: Sequence[str]) -> list[PlanItem]:
    """A new plan whose item statuses are the verifier's verdicts (items beyond them unchanged)."""
    out = []
    for i, item in enumerate(plan):
        status = verdicts[i] if i < len(verdicts) and verdicts[i] in _MARKS else item["status"]
        out.append({**item, "status": status})
    return out
