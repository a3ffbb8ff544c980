"""Batch-mode probe: k questions in one prompt, and a parser for the k answers.

Answering several questions in one reply makes a model spend less reasoning on the easy ones
(DRQA's observation). The probe uses that as a cheap difficulty signal: for each question the
reply carries a short working, an answer and a stated confidence, in blocks like::

    [Q2]
    Reasoning: 12 apples minus 5 eaten leaves 7.
    Answer: 7
    Confidence: 90

The parser is tolerant of what small models do to that format (markdown bold, ``Question 2:``,
``Q2.``, missing fields, confidence as ``0.9`` or ``90%``, blocks out of order or repeated) and
reports questions with no block at all as ``missing``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from orchestrator.types import Message
from workflows.answers import extract_final_answer

__all__ = [
    "ProbeItem",
    "approx_token_count",
    "chunk_indices",
    "compose_probe_messages",
    "compose_quick_messages",
    "parse_probe_response",
    "parse_quick_answer",
]

TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class ProbeItem:
    """What the probe reply says about one question (positions are 1-based in the prompt)."""

    position: int
    """1-based position of the question in its probe prompt."""
    answer: str | None
    """The stated answer, or None when the block has none."""
    reasoning: str
    """The working written for this question ('' when none)."""
    reasoning_tokens: int
    """Length of ``reasoning`` in tokens, by the counter the parser was given."""
    confidence: float | None
    """Stated confidence in [0, 1], or None when not stated or unreadable."""
    missing: bool = False
    """True when the reply has no block for this question at all."""
    answer_span: tuple[int, int] | None = field(default=None, compare=False)
    """Where the stated answer (the ``Answer:`` field's first line, stripped) lies in the reply
    text, as ``(start, end)`` character offsets; None when the block has no ``Answer:`` field.
    The ``logprob`` difficulty signal reads the probe's token log-probabilities over it."""


def approx_token_count(text: str) -> int:
    """A tokenizer-free estimate: about one token per 4 characters, at least one per word."""
    stripped = text.strip()
    if not stripped:
        return 0
    return max(len(stripped.split()), (len(stripped) + 3) // 4)


def chunk_indices(num_items: int, batch_size: int) -> list[list[int]]:
    """Split ``range(num_items)`` into consecutive groups of at most ``batch_size``."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    return [list(range(i, min(i + batch_size, num_items))) for i in range(0, num_items, batch_size)]


_PROBE_SYSTEM = (
    "You answer several independent questions in one reply. Spend few words on questions "
    "that are easy and more on those that are hard."
)


def compose_probe_messages(
    questions: Sequence[str], *, answer_hint: str = "", max_words_per_question: int | None = None
) -> tuple[Message, ...]:
    """Messages asking for one ``[Qn]`` block (Reasoning / Answer / Confidence) per question.

    ``answer_hint`` says what an answer looks like (e.g. "a number"); ``max_words_per_question``
    states a soft length limit for each working.
    """
    if not questions:
        raise ValueError("a probe needs at least one question")
    k = len(questions)
    limit = (
        f" Keep each Reasoning under {max_words_per_question} words."
        if max_words_per_question
        else ""
    )
    hint = f" Each Answer is {answer_hint}." if answer_hint else ""
    lines = [
        f"Answer all {k} questions below. For every question write a block in exactly this form:",
        "[Qn]",
        "Reasoning: <brief working>",
        "Answer: <final answer only>",
        "Confidence: <0-100, how sure you are>",
        f"Write the blocks in order from [Q1] to [Q{k}].{limit}{hint}",
        "",
    ]
    for i, q in enumerate(questions, start=1):
        lines.append(f"[Q{i}] {q.strip()}")
        lines.append("")
    return (
        Message("system", _PROBE_SYSTEM),
        Message("user", "\n".join(lines).rstrip()),
    )


# A block header at the start of a line: [Q3], Q3:, Q3., **Q3**, ### Question 3, (Q3), Question #3:
_HEADER_RE = re.compile(
    r"^[ \t>#*_(\[]*(?:Q|Question)[ \t]*#?[ \t]*(\d{1,3})[ \t*_)\]]*[:.)\-]?[ \t*_]*",
    re.IGNORECASE | re.MULTILINE,
)
_FIELD_RE = re.compile(
    r"^[ \t*_\-]*(reasoning|working|answer|final answer|confidence)[ \t*_]*[:=][ \t*_]*",
    re.IGNORECASE | re.MULTILINE,
)
_CONF_NUM_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(%?)")


def _parse_confidence(raw: str) -> float | None:
    m = _CONF_NUM_RE.search(raw)
    if not m:
        word = raw.strip().lower()
        return {"high": 0.9, "medium": 0.6, "moderate": 0.6, "low": 0.3}.get(word.split(" ")[0] if word else "")
    value = float(m.group(1))
    if m.group(2) == "%" or value > 1.0:
        value /= 100.0
    if not 0.0 <= value <= 1.0:
        return None
    return value


def _parse_block(body: str, position: int, count: TokenCounter, offset: int = 0) -> ProbeItem:
    """The block ``body``, which starts at ``offset`` in the reply (for :attr:`ProbeItem.answer_span`)."""
    fields: dict[str, str] = {}
    answer_at: int | None = None
    matches = list(_FIELD_RE.finditer(body))
    preamble = body[: matches[0].start()] if matches else body
    for j, m in enumerate(matches):
        end = matches[j + 1].start() if j + 1 < len(matches) else len(body)
        name = m.group(1).lower()
        name = "answer" if name == "final answer" else ("reasoning" if name == "working" else name)
        # The first occurrence of a field wins: a model that restates "Answer:" inside its
        # working does not get to overwrite what it wrote in the field proper.
        if name == "answer" and answer_at is None:
            answer_at = m.end()
        fields.setdefault(name, body[m.end() : end].strip())
    reasoning = fields.get("reasoning", "")
    answer_raw = fields.get("answer")
    answer: str | None
    span: tuple[int, int] | None = None
    if answer_raw is not None:
        first_line = answer_raw.splitlines()[0].strip() if answer_raw.strip() else ""
        if first_line and answer_at is not None:
            start = body.index(first_line, answer_at)
            span = (offset + start, offset + start + len(first_line))
        # The field holds the answer itself (maybe wrapped in \boxed{} or after ####); never
        # reduce it to its last number, which would turn \frac{\sqrt{3}}{2} into 2.
        answer = (extract_final_answer(first_line, allow_last_number=False) or first_line.rstrip("."))
        answer = answer or None
    else:
        # No Answer field: accept an explicit marker (####, \boxed, "answer is") in the text.
        answer = extract_final_answer(body, allow_last_number=False)
        if not reasoning:
            reasoning = preamble.strip()
    confidence = _parse_confidence(fields["confidence"]) if "confidence" in fields else None
    return ProbeItem(
        position=position,
        answer=answer or None,
        reasoning=reasoning,
        reasoning_tokens=count(reasoning),
        confidence=confidence,
        answer_span=span,
    )


def parse_probe_response(
    text: str, num_questions: int, *, count_tokens: TokenCounter = approx_token_count
) -> list[ProbeItem]:
    """One :class:`ProbeItem` per question position 1..``num_questions``, in order.

    Blocks are located by their ``[Qn]``-style headers; text before the first header, and blocks
    numbered outside 1..``num_questions``, are ignored.
    A position with no header is returned with ``missing=True``. When a position appears more
    than once, the first block that has an answer is kept. A reply for a single question with
    no header at all is read as that question's block.
    """
    if num_questions < 1:
        raise ValueError("num_questions must be >= 1")
    # Every header ends the block before it; only in-range ones start a block we keep.
    headers = list(_HEADER_RE.finditer(text))
    found: dict[int, ProbeItem] = {}
    for j, m in enumerate(headers):
        pos = int(m.group(1))
        if not 1 <= pos <= num_questions:
            continue
        end = headers[j + 1].start() if j + 1 < len(headers) else len(text)
        item = _parse_block(text[m.end() : end], pos, count_tokens, m.end())
        prev = found.get(pos)
        if prev is None or (prev.answer is None and item.answer is not None):
            found[pos] = item
    if not headers and num_questions == 1 and text.strip():
        found[1] = _parse_block(text, 1, count_tokens)
    return [
        found.get(pos)
        or ProbeItem(
            position=pos, answer=None, reasoning="", reasoning_tokens=0, confidence=None, missing=True
        )
        for pos in range(1, num_questions + 1)
    ]


def compose_quick_messages(question: str, *, answer_hint: str = "") -> tuple[Message, ...]:
    """Messages asking for the answer alone, with no working (the 'quick single answer')."""
    hint = f" The answer is {answer_hint}." if answer_hint else ""
    return (
        Message(
            "user",
            f"{question.strip()}\n\nReply with the final answer only, no working, "
            f"as one line: Answer: <answer>.{hint}",
        ),
    )


def parse_quick_answer(text: str) -> str | None:
    """The answer in a quick reply ('Answer: X', a bare value, or any explicit marker)."""
    stripped = text.strip()
    if not stripped:
        return None
    explicit = extract_final_answer(stripped, allow_last_number=False)
    if explicit:
        return explicit
    first = stripped.splitlines()[0].strip().rstrip(".")
    # A short bare line is the answer itself; a long one is working the model wrote anyway.
    if len(first.split()) <= 4:
        return first
    return extract_final_answer(stripped, allow_last_number=True)
