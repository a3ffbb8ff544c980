"""Choosing the final answer: an LLM judge among BATS's attempts, majority vote for parallel
sampling. Never "no answer" when some attempt produced one."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from orchestrator.types import Message, SamplingOptions
from workflows.bats import prompts
from workflows.bats.scoring import normalize_answer

if TYPE_CHECKING:
    from orchestrator.context import RunContext

__all__ = ["fallback_choice", "judge_select", "majority_vote", "parse_choice", "vote_select"]

_INT = re.compile(r"\d+")


def majority_vote(answers: Sequence[str]) -> str:
    """The most frequent non-empty answer (compared after normalisation); ties go to the one that
    appeared first. Empty string only when every answer is empty."""
    counts: dict[str, int] = {}
    first: dict[str, str] = {}
    for a in answers:
        key = normalize_answer(a)
        if not key:
            continue
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, a)
    if not counts:
        return ""
    best = max(counts, key=lambda k: counts[k])  # max keeps the first of equals (dict order)
    return first[best]


def parse_choice(text: str, num_candidates: int) -> int | None:
    """The 0-based candidate index in the judge's reply, or None when it names no valid one."""
    for m in _INT.finditer(text):
        k = int(m.group())
        if 1 <= k <= num_candidates:
            return k - 1
    return None


def fallback_choice(candidates: Sequence[Mapping[str, Any]]) -> int:
    """Without a usable judge reply: a verified (SUCCESS) candidate, else the most common answer,
    else the latest."""
    for i in range(len(candidates) - 1, -1, -1):
        if candidates[i].get("decision") == "SUCCESS":
            return i
    winner = normalize_answer(majority_vote([str(c["answer"]) for c in candidates]))
    counts = sum(normalize_answer(str(c["answer"])) == winner for c in candidates)
    if counts > 1:
        return next(i for i, c in enumerate(candidates) if normalize_answer(str(c["answer"])) == winner)
    return len(candidates) - 1


Choice = tuple[str, dict[str, Any]]
"""A final answer and how it was chosen."""


def _settled(attempts: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], Choice | None]:
    """The attempts with an answer, and the final choice when there is nothing to choose: no
    answer at all, or one answer every attempt agrees on."""
    candidates = [a for a in attempts if str(a.get("answer", "")).strip()]
    if not candidates:
        return candidates, ("", {"method": "none", "num_candidates": 0})
    if len({normalize_answer(str(c["answer"])) for c in candidates}) == 1:
        return candidates, (str(candidates[-1]["answer"]), {"method": "unanimous", "num_candidates": len(candidates)})
    return candidates, None


def vote_select(attempts: Sequence[Mapping[str, Any]]) -> Choice:
    """The final answer by majority over the attempts' answers (after normalisation), ties to the
    earliest attempt: the one that had the whole budget. No call."""
    candidates, settled = _settled(attempts)
    if settled is not None:
        return settled
    winner = normalize_answer(majority_vote([str(c["answer"]) for c in candidates]))
    choice = next(i for i, c in enumerate(candidates) if normalize_answer(str(c["answer"])) == winner)
    return str(candidates[choice]["answer"]), {"method": "vote", "num_candidates": len(candidates), "choice": choice}


async def judge_select(
    ctx: RunContext,
    question: str,
    attempts: Sequence[Mapping[str, Any]],
    *,
    max_tokens: int = 8,
) -> Choice:
    """The final answer among ``attempts`` (dicts with ``answer``, ``decision``, ``justification``)
    and how it was chosen. The LLM judge is only asked when the attempts disagree."""
    candidates, settled = _settled(attempts)
    if settled is not None:
        return settled
    listed = "\n".join(
        f"{i}. {c['answer']} (verifier: {c.get('decision', '?')}; {c.get('justification', '')})"
        for i, c in enumerate(candidates, start=1)
    )
    messages = [
        Message("system", prompts.JUDGE_SYSTEM),
        Message("user", prompts.JUDGE_USER.format(question=question, candidates=listed)),
    ]
    reply = await ctx.chat(messages, sampling=SamplingOptions(max_tokens=max_tokens, temperature=0.0), purpose="judge")
    choice = parse_choice(reply.text, len(candidates))
    method = "judge"
    if choice is None:
        choice, method = fallback_choice(candidates), "fallback"
    return str(candidates[choice]["answer"]), {"method": method, "num_candidates": len(candidates), "choice": choice}
