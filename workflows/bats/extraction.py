"""The answer an attempt is scored on (pure): by default read from the tool results the attempt
saw (one reading call), else the agent's answer; cleaned of its wrapping, and for a long one (a
pasted passage, a sentence) the one extraction call that asks for the shortest answering phrase."""

from __future__ import annotations

import re
from collections.abc import Sequence

from orchestrator.types import Message, SamplingOptions
from workflows.answers import is_yes_no_question, yes_no_answer
from workflows.bats import prompts
from workflows.bats.config import AgentConfig
from workflows.bats.trajectory import truncate

__all__ = ["clean_answer", "extract_over", "extraction_messages", "judged_form", "pick_extraction", "pick_reading",
           "reading_evidence", "reading_messages", "scored_answer", "short_answer_sampling"]

_ANSWER_PREFIX = re.compile(r"^\s*(?:final\s+)?(?:the\s+)?answer\s*(?:is)?\s*[:\-]?\s*", re.IGNORECASE)


def clean_answer(text: str) -> str:
    """An answer without its wrapping: first non-empty line, no ``answer:`` prefix, no quotes,
    brackets or trailing full stop."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = _ANSWER_PREFIX.sub("", line).strip()
    line = line.strip("\"'`*<> ").rstrip(".").strip()
    return line


def scored_answer(question: str, answer: str, *, yes_no_form: bool, max_words: int | None) -> tuple[str, bool]:
    """(the answer to score, whether it gets the extraction call). The answer is cleaned of its
    wrapping; with ``yes_no_form`` a yes/no question's answer becomes the bare "yes"/"no" it opens
    with (the only form HotpotQA's judge credits). It gets the extraction call when it is longer
    than ``max_words`` words (never with ``None``)."""
    cleaned = judged_form(question, clean_answer(answer), yes_no_form=yes_no_form)
    return cleaned, max_words is not None and bool(cleaned) and len(cleaned.split()) > max_words


def judged_form(question: str, answer: str, *, yes_no_form: bool) -> str:
    """With ``yes_no_form``, a yes/no question's answer as the bare "yes"/"no" it opens with (the
    only form HotpotQA's judge credits); any other answer as it is."""
    if yes_no_form and is_yes_no_question(question):
        return yes_no_answer(answer) or answer
    return answer


def extract_over(config: AgentConfig) -> int | None:
    """The ``max_words`` of :func:`scored_answer` for a BATS agent: ``answer_max_words``, or None
    without ``short_answer``."""
    return config.answer_max_words if config.short_answer else None


def extraction_messages(question: str, cleaned: str) -> tuple[Message, ...]:
    """The extraction call. It names the kind of answer: a small model offered "or yes/no" for
    every question answered bare "Yes" to 245 of 800 non-yes/no BATS runs (Qwen2.5-Coder-0.5B,
    issue 22), mostly when a spent budget forced a long final answer."""
    kind = _answer_kind(question)
    return (
        Message("system", prompts.EXTRACT_SYSTEM),
        Message("user", prompts.EXTRACT_USER.format(question=question, answer=truncate(cleaned, 1500), kind=kind)),
    )


def _answer_kind(question: str) -> str:
    return prompts.EXTRACT_KIND_YES_NO if is_yes_no_question(question) else prompts.EXTRACT_KIND_OPEN


def reading_evidence(results: Sequence[str], max_chars: int) -> str:
    """The tool results the reading call sees, in the order they came: all of them when they fit
    in ``max_chars``, else the first (the search closest to the question) and the latest that fit;
    a first result longer than ``max_chars`` is cut."""
    if not results:
        return ""
    sep = "\n\n"
    first = truncate(results[0], max_chars)
    used, latest = len(first), []
    for text in reversed(results[1:]):
        if used + len(sep) + len(text) > max_chars:
            break
        latest.append(text)
        used += len(sep) + len(text)
    return sep.join([first, *reversed(latest)])


def reading_messages(question: str, results: Sequence[str], max_chars: int) -> tuple[Message, ...]:
    """The reading call: the question answered from the attempt's tool results (``max_chars`` of them)."""
    evidence = reading_evidence(results, max_chars)
    return (
        Message("system", prompts.READ_SYSTEM),
        Message("user", prompts.READ_USER.format(evidence=evidence, question=question, kind=_answer_kind(question))),
    )


def short_answer_sampling(max_tokens: int) -> SamplingOptions:
    """Greedy, one line, at most ``max_tokens``: the reading and the extraction call alike."""
    return SamplingOptions(max_tokens=max_tokens, temperature=0.0, stop=("\n",))


def pick_reading(agent_answer: str, reply: str, question: str) -> str:
    """The reading's answer when it gives one of the kind the question asks for (a bare yes/no
    answers only a yes/no question), else the agent's."""
    read = clean_answer(reply)
    if not read:
        return agent_answer
    if yes_no_answer(read) is not None and len(read.split()) == 1 and not is_yes_no_question(question):
        return agent_answer
    return read


def pick_extraction(cleaned: str, reply: str, question: str) -> str:
    """The extracted phrase when it is non-empty, shorter than the cleaned answer and of the kind
    the question asks for (a bare yes/no answers only a yes/no question), else that answer."""
    short = clean_answer(reply)
    if not short or len(short) >= len(cleaned):
        return cleaned
    if yes_no_answer(short) is not None and len(short.split()) == 1 and not is_yes_no_question(question):
        return cleaned
    return short
