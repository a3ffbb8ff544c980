"""The answer an attempt is scored on (pure): the agent's answer cleaned of its wrapping, and for
a long one (a pasted passage, a sentence) the one extraction call that asks for the shortest
answering phrase."""

from __future__ import annotations

import re

from orchestrator.types import Message, SamplingOptions
from workflows.answers import is_yes_no_question, yes_no_answer
from workflows.bats import prompts
from workflows.bats.config import AgentConfig
from workflows.bats.trajectory import truncate

__all__ = ["clean_answer", "extraction_messages", "extraction_sampling", "judge_form", "needs_extraction",
           "pick_extraction"]

_ANSWER_PREFIX = re.compile(r"^\s*(?:final\s+)?(?:the\s+)?answer\s*(?:is)?\s*[:\-]?\s*", re.IGNORECASE)


def clean_answer(text: str) -> str:
    """An answer without its wrapping: first non-empty line, no ``answer:`` prefix, no quotes,
    brackets or trailing full stop."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = _ANSWER_PREFIX.sub("", line).strip()
    line = line.strip("\"'`*<> ").rstrip(".").strip()
    return line


def judge_form(question: str, cleaned: str, config: AgentConfig) -> str | None:
    """With ``yes_no_form``, the bare "yes"/"no" a yes/no question's answer opens with (the only
    form HotpotQA's judge credits); else None (the answer is kept, or extracted)."""
    if not config.yes_no_form or not is_yes_no_question(question):
        return None
    return yes_no_answer(cleaned)


def needs_extraction(cleaned: str, config: AgentConfig) -> bool:
    """Whether the cleaned answer gets the extraction call: longer than ``answer_max_words``."""
    return config.short_answer and bool(cleaned) and len(cleaned.split()) > config.answer_max_words


def extraction_messages(question: str, cleaned: str) -> tuple[Message, ...]:
    """The extraction call. It names the kind of answer: a small model offered "or yes/no" for
    every question answered bare "Yes" to 245 of 800 non-yes/no BATS runs (Qwen2.5-Coder-0.5B,
    issue 22), mostly when a spent budget forced a long final answer."""
    kind = prompts.EXTRACT_KIND_YES_NO if is_yes_no_question(question) else prompts.EXTRACT_KIND_OPEN
    return (
        Message("system", prompts.EXTRACT_SYSTEM),
        Message("user", prompts.EXTRACT_USER.format(question=question, answer=truncate(cleaned, 1500), kind=kind)),
    )


def extraction_sampling(config: AgentConfig) -> SamplingOptions:
    return SamplingOptions(max_tokens=config.extract_max_tokens, temperature=0.0, stop=("\n",))


def pick_extraction(cleaned: str, reply: str, question: str) -> str:
    """The extracted phrase when it is non-empty, shorter than the cleaned answer and of the kind
    the question asks for (a bare yes/no answers only a yes/no question), else that answer."""
    short = clean_answer(reply)
    if not short or len(short) >= len(cleaned):
        return cleaned
    if yes_no_answer(short) is not None and len(short.split()) == 1 and not is_yes_no_question(question):
        return cleaned
    return short
