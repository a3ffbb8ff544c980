"""The per-item records of a DRQA run and the final pick over them (pure).

An attempt record is what one solve, continuation, retry or forced-answer call left: its text
(raw), parsed answer, finish reason, tokens and the quota it was given. :func:`final_answer`
chooses between them and the probe's answers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from orchestrator.types import LLMResponse
from workflows.answers import extract_final_answer, normalize_answer
from workflows.drqa.quota.batch import approx_token_count

__all__ = [
    "TEXT_RECORD_CHARS",
    "attempt_record",
    "clip",
    "final_answer",
    "held_for_answers",
    "tokens_of",
    "working_of",
]

TEXT_RECORD_CHARS = 600
"""Per-item records keep at most this much of the raw output (its start and its end)."""


def tokens_of(response: LLMResponse) -> int:
    """Output tokens a call spent."""
    # Backends that do not report usage still spend: estimate rather than count zero.
    return response.usage.output_tokens or approx_token_count(response.text)


def attempt_record(response: LLMResponse, quota: int, kind: str, **extra: Any) -> dict[str, Any]:
    """The record of one call given ``quota`` tokens; ``extra`` fields are kept as they are.

    A reply cut at its ``max_tokens`` is not read for a trailing number: mid-working, the last
    number is an intermediate result, not an answer.
    """
    truncated = response.finish_reason == "length"
    return {
        "kind": kind,
        "text": response.text,
        "answer": extract_final_answer(response.text, allow_last_number=not truncated),
        "truncated": truncated,
        "finish_reason": response.finish_reason,
        "tokens": tokens_of(response),
        "quota": quota,
        **extra,
    }


def held_for_answers(attempts: Sequence[dict[str, Any] | None]) -> int:
    """Quota reserves of answerless solves: held for their forced answers, not spendable elsewhere."""
    return sum(a["reserve"] for a in attempts if a is not None and a["answer"] is None)


def working_of(attempt: dict[str, Any] | None, retry: dict[str, Any] | None) -> tuple[str, str | None, bool]:
    """The working a forced answer continues from, its answer so far, and whether it needs one.

    A continuation extends the solve's text; a fresh re-solve replaces it; a 'retry' (second
    opinion on an answered question) never needs forcing, the first answer stands.
    """
    if attempt is None:
        return "", None, False
    if retry is not None and retry["kind"] == "continuation":
        joiner = "" if retry["text"][:1].isspace() or attempt["text"][-1:].isspace() else " "
        return attempt["text"] + joiner + retry["text"], retry["answer"], retry["answer"] is None
    if retry is not None and retry["kind"] == "solve":
        if retry["answer"] is None and attempt["answer"] is None:
            return retry["text"], None, True
        return retry["text"], retry["answer"] or attempt["answer"], False
    return attempt["text"], attempt["answer"], attempt["answer"] is None


def clip(text: str, limit: int = TEXT_RECORD_CHARS) -> str:
    """``text`` cut to about ``limit`` characters: its first third and its end."""
    if len(text) <= limit:
        return text
    head = limit // 3
    return f"{text[:head]} [...] {text[-(limit - head):]}"


def final_answer(
    probe: dict[str, Any], attempt: dict[str, Any] | None, retry: dict[str, Any] | None,
    forced: dict[str, Any] | None = None,
) -> tuple[str | None, str]:
    """Pick the answer and say where it came from: continuation or re-solve > vote(solve, retry,
    probe) > solve > forced > probe > quick."""
    if retry is not None and retry["answer"] is not None and retry["kind"] in ("continuation", "solve"):
        return retry["answer"], retry["kind"]
    if attempt is not None and attempt["answer"] is not None:
        if retry is not None and retry["answer"] is not None:
            return _vote(attempt["answer"], retry["answer"], probe.get("answer")), "vote"
        return attempt["answer"], "solve"
    if forced is not None and forced["answer"] is not None:
        return forced["answer"], "forced"
    if probe.get("answer") is not None:
        return probe["answer"], "probe" if probe.get("resolved") else "probe-fallback"
    if probe.get("quick") is not None:
        return probe["quick"], "quick-fallback"
    return None, "none"


def _vote(first: str, second: str, third: str | None) -> str:
    """Majority over normalised answers; a tie keeps ``first`` (the full-quota solve)."""
    votes = Counter(normalize_answer(a) for a in (first, second, third) if a is not None)
    best, count = votes.most_common(1)[0]
    if count > 1 and best != normalize_answer(first):
        return second if normalize_answer(second) == best else (third or first)
    return first
