"""Batch composer, answer parser and context-window planner (pure: no I/O).

Wire format (ours). Items are numbered from 1 inside each call::

    [1] Passage: ...
    Question: ...

    [2] ...

and the model answers one line per number, with a confidence mark::

    [1] yes (sure)
    [2] no (unsure)

``(sure)``/``(unsure)`` are our short forms of the paper's ``(confident)``/``(not confident)``
(one token each instead of up to four per answer line; the parser reads both spellings).
The parser accepts the usual ways small models bend that format (``1.``, ``Input 2:``,
``**[3]** Yes``, several answers on one line, chatter around them) and reports what it could not
use: missing, duplicate (conflicting) and out-of-range numbers, and numbers without a label.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from orchestrator.types import Message
from workflows.batchprompt.tasks import Item, TaskSpec, normalize_text

__all__ = [
    "Answer",
    "BatchParse",
    "answer_regex",
    "compose_messages",
    "item_number",
    "label_probabilities",
    "parse_answers",
    "plan_batches",
    "render_inputs",
]

CONFIDENT = "sure"
NOT_CONFIDENT = "unsure"


@dataclass(frozen=True)
class Answer:
    """One usable answer: a label value and whether the model marked it confident."""

    label: str
    """A :attr:`~workflows.batchprompt.tasks.LabelSpec.value`."""
    confident: bool
    """True only for an explicit ``(confident)`` mark; no mark counts as not confident."""


@dataclass
class BatchParse:
    """What one response says about the items of its call (numbers are 1-based positions)."""

    num_items: int
    """How many items the call asked about."""
    answers: dict[int, Answer] = field(default_factory=dict)
    """Usable answers by position."""
    missing: list[int] = field(default_factory=list)
    """Positions with no line at all."""
    unlabeled: list[int] = field(default_factory=list)
    """Positions whose line(s) named no label of the task."""
    duplicates: list[int] = field(default_factory=list)
    """Positions answered more than once (usable only when every answer agrees)."""
    conflicting: list[int] = field(default_factory=list)
    """Duplicates whose answers disagree (not usable)."""
    out_of_range: list[int] = field(default_factory=list)
    """Numbers outside 1..num_items that the model answered."""
    num_noise_lines: int = 0
    """Non-empty lines without an item number."""

    @property
    def failed(self) -> list[int]:
        """Positions without a usable answer, in order."""
        return [i for i in range(1, self.num_items + 1) if i not in self.answers]

    @property
    def is_clean(self) -> bool:
        """Every item answered once, nothing out of range."""
        return not (self.failed or self.duplicates or self.out_of_range)


def render_inputs(task: TaskSpec, inputs: dict[str, str]) -> str:
    """An item's fields, one ``Title: value`` line each (whitespace inside values collapsed)."""
    return "\n".join(f"{f.title}: {' '.join(str(inputs[f.key]).split())}" for f in task.input_fields)


def _render_batch(task: TaskSpec, rows: Sequence[dict[str, str]]) -> str:
    blocks = [f"[{i}] {render_inputs(task, row)}" for i, row in enumerate(rows, start=1)]
    n = len(rows)
    span = "[1]" if n == 1 else f"[1] to [{n}]"
    return "\n\n".join(blocks) + f"\n\nAnswer all {n}, {span}."


def _render_answers(task: TaskSpec, labels: Sequence[tuple[str, bool]]) -> str:
    return "\n".join(
        f"[{i}] {task.display_of(label)} ({CONFIDENT if confident else NOT_CONFIDENT})"
        for i, (label, confident) in enumerate(labels, start=1)
    )


def system_prompt(task: TaskSpec) -> str:
    """The task instructions plus the answer format (kept short: it is sent with every call)."""
    words = " or ".join(label.display for label in task.labels)
    return (
        f"{task.instructions}\n"
        f"Answer each numbered input on its own line, in order, as: [number] {words} (sure)\n"
        f"Write (unsure) instead of (sure) when you are not sure. Only these lines, nothing else."
    )


def compose_messages(task: TaskSpec, rows: Sequence[dict[str, str]]) -> list[Message]:
    """The chat for one call: instructions, the few-shot batch (if any), then ``rows`` numbered."""
    messages = [Message("system", system_prompt(task))]
    if task.examples:
        messages.append(Message("user", _render_batch(task, [ex.inputs for ex in task.examples])))
        messages.append(
            Message("assistant", _render_answers(task, [(ex.label, ex.confident) for ex in task.examples]))
        )
    messages.append(Message("user", _render_batch(task, rows)))
    return messages


# A line opens with an item number: "[3]", "3.", "3)", "3:", "Input 3:", "Answer #3 -", "**[3]**".
_NUMBER = re.compile(
    r"""^[\s>*\-•#]*
        (?:\[\s*(?P<bracket>\d+)\s*\]
          |(?:label\s+for\s+)?(?:input|item|answer|label|question|pair|no\.?|number)\s*\#?\s*(?P<word>\d+)\b\s*[:.)\]\-]?
          |\#?(?P<bare>\d+)\s*[:.)\]\-](?!\d)
        )""",
    re.IGNORECASE | re.VERBOSE,
)
# Several "[n]" answers on one line: split before a bracket that follows a word or a ")".
_INLINE_BRACKET = re.compile(r"(?<=[\w)])\s*(?=\[\s*\d+\s*\])")
_CONFIDENCE = re.compile(
    r"\(?\s*\b(?P<mark>not\s+confident|unconfident|not\s+sure|unsure|low\s+confidence|"
    r"high\s+confidence|confident|sure)\b\s*\)?",
    re.IGNORECASE,
)
_NEGATIVE_MARKS = ("not confident", "unconfident", "not sure", "unsure", "low confidence")


def item_number(line: str) -> int | None:
    """The item number ``line`` opens with, read as :func:`parse_answers` reads it (None: none)."""
    match = _NUMBER.match(line)
    return int(match.group("bracket") or match.group("word") or match.group("bare")) if match else None


def _split_confidence(text: str) -> tuple[str, bool]:
    """(text without the confidence mark, confident?)."""
    match = _CONFIDENCE.search(text)
    if match is None:
        return text, False
    mark = " ".join(match.group("mark").lower().split())
    return text[: match.start()] + " " + text[match.end():], mark not in _NEGATIVE_MARKS


def _label_pattern(task: TaskSpec) -> tuple[re.Pattern[str], dict[str, str]]:
    table = task.alias_table()
    names = sorted(table, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(n) for n in names) + r")\b"), table


def _find_label(task: TaskSpec, text: str) -> str | None:
    """The label named earliest in ``text`` (the longest alias at that spot wins)."""
    pattern, table = _label_pattern(task)
    match = pattern.search(normalize_text(text))
    return table[match.group(1)] if match else None


def parse_answers(task: TaskSpec, text: str, num_items: int) -> BatchParse:
    """Read the answers for a call of ``num_items`` items out of the model's ``text``."""
    parse = BatchParse(num_items=num_items)
    seen: dict[int, list[Answer | None]] = {}
    for raw_line in _INLINE_BRACKET.sub("\n", text).splitlines():
        if not raw_line.strip():
            continue
        match = _NUMBER.match(raw_line)
        if match is None:
            parse.num_noise_lines += 1
            continue
        number = int(match.group("bracket") or match.group("word") or match.group("bare"))
        if not 1 <= number <= num_items:
            if number not in parse.out_of_range:
                parse.out_of_range.append(number)
            continue
        rest, confident = _split_confidence(raw_line[match.end():])
        label = _find_label(task, rest)
        seen.setdefault(number, []).append(None if label is None else Answer(label, confident))
    for number in range(1, num_items + 1):
        found = seen.get(number)
        if not found:
            parse.missing.append(number)
            continue
        usable = [a for a in found if a is not None]
        if len(found) > 1:
            parse.duplicates.append(number)
        if not usable:
            parse.unlabeled.append(number)
        elif len({a.label for a in usable}) > 1:
            parse.conflicting.append(number)
        else:
            # Agreeing repeats: confident only if every repeat says so.
            parse.answers[number] = Answer(usable[0].label, all(a.confident for a in usable))
    return parse


# Chat templates add a few tokens per message (role markers); counted generously.
_TOKENS_PER_MESSAGE = 8
_OUTPUT_SLACK_TOKENS = 16


def max_output_tokens(num_items: int, max_tokens_per_answer: int) -> int:
    """The ``max_tokens`` a call of ``num_items`` items gets."""
    return num_items * max_tokens_per_answer + _OUTPUT_SLACK_TOKENS


def plan_batches(
    task: TaskSpec,
    items: Sequence[Item],
    *,
    batch_size: int,
    count_tokens: Callable[[str], int],
    context_window: int,
    max_tokens_per_answer: int = 12,
) -> list[list[str]]:
    """Split ``items`` (in order) into batches of at most ``batch_size`` keys that fit the window.

    A batch fits when its prompt (instructions, few-shot batch, items) plus the output it may
    generate stays within ``context_window`` tokens as ``count_tokens`` counts them. An item too
    long to fit even alone still gets its own batch (the server decides; it is not dropped).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    overhead = sum(count_tokens(m.content) + _TOKENS_PER_MESSAGE for m in compose_messages(task, []))
    batches: list[list[str]] = []
    current: list[str] = []
    used = overhead
    for item in items:
        # "[n] " prefix, the blank line between items and the footer's per-item share.
        cost = count_tokens(render_inputs(task, item.inputs)) + 4
        fits = used + cost + max_output_tokens(len(current) + 1, max_tokens_per_answer) <= context_window
        if current and (len(current) >= batch_size or not fits):
            batches.append(current)
            current, used = [], overhead
        current.append(item.key)
        used += cost
    if current:
        batches.append(current)
    return batches


def label_probabilities(task: TaskSpec, tokens: Sequence[tuple[str, float]], num_items: int) -> dict[int, float]:
    """Per item number, the probability the model gave the first label token of its answer line.

    ``tokens`` are the generated tokens with their log-probabilities (what an OpenAI-compatible
    server returns with ``logprobs=true``). A line's number is read as :func:`parse_answers`
    reads it; the first token on the line, after the number, that starts a label word (``yes``,
    ``no``, an alias) is the label token. This is the optional ``confidence="logprob"`` signal:
    a small model's own ``(sure)`` marks often carry little information, while the probability of
    its answer token does. Lines without a number or a label token are skipped; a number seen
    twice keeps its first probability.
    """
    starts = {name.split()[0] for name in task.alias_table()}
    probs: dict[int, float] = {}
    line = ""
    done = False  # this line already gave its label token (or has no number)
    for text, logprob in tokens:
        for piece in re.split(r"(\n)", text):
            if piece == "\n":
                line, done = "", False
                continue
            if not piece:
                continue
            before = line
            line += piece
            if done:
                continue
            word = normalize_text(piece)
            if not word or word.split()[0] not in starts:
                continue
            match = _NUMBER.match(before)
            if match is None:
                continue
            number = int(match.group("bracket") or match.group("word") or match.group("bare"))
            if 1 <= number <= num_items and number not in probs:
                probs[number] = math.exp(logprob)
            done = True
    return probs


def answer_regex(task: TaskSpec, num_items: int) -> str:
    """A regex that matches exactly the answer block for ``num_items`` items in our format.

    ``[1] yes (sure)`` ... ``[n] no (unsure)``, one line each, in order, nothing else. Handed to a
    server that supports constrained decoding (vLLM ``structured_outputs: {"regex": ...}``) it
    makes missing, duplicate and unparsable answers impossible; the answer words and confidence
    stay the model's choice.
    """
    words = "|".join(re.escape(label.display) for label in task.labels)
    marks = f"{re.escape(CONFIDENT)}|{re.escape(NOT_CONFIDENT)}"
    return "\\n".join(rf"\[{i}\] ({words}) \(({marks})\)" for i in range(1, num_items + 1))
