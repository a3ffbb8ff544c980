"""The ``scripted`` backend: deterministic replies for control-flow tests, never for quality figures.

A script is one of
- a list of replies, handed out in order (one per call);
- a callable ``messages -> reply``;
- a mapping ``regex -> reply``: the first pattern (in mapping order) found in the last message.
Usage is a simple count of words and punctuation marks, so budgets move the way they would with a
real model. Sampling's stop strings and ``max_tokens`` are honoured like a server would
(:func:`cut_reply`, which the loopback server of :mod:`orchestrator.testing` applies too); a
request constrained to ``choices`` gets the choice closest to the scripted reply
(:func:`~orchestrator.llm.choices.closest_choice`), and one asking for ``logprobs`` gets the
reply's tokens with log-probabilities from the config's ``logprobs`` function (default 0 each).
A ``regex`` is not enforced (no reply can be made up to fit it): the scripted reply comes back
as it is, and one that does not match the regex in full is counted in
:attr:`ScriptedClient.num_regex_mismatches`, so a test can tell its script from the constraint.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import ConfigError, EngineDead
from orchestrator.llm.choices import closest_choice
from orchestrator.types import LLMRequest, LLMResponse, Message, TokenLogprob, Usage

__all__ = ["ScriptedClient", "ScriptedConfig", "cut_reply", "simple_token_count", "split_deltas"]

Script = Sequence[str] | Callable[[Sequence[Message]], str] | Mapping[str, str]

_TOKEN = re.compile(r"\w+|[^\w\s]")


def simple_token_count(text: str) -> int:
    """Words and punctuation marks in ``text``: a stand-in tokenizer, deterministic and cheap."""
    return len(_TOKEN.findall(text))


def cut_reply(text: str, stop: Sequence[str] = (), max_tokens: int | None = None) -> tuple[str, str]:
    """``(text, finish_reason)`` as a server hands a reply out: cut before the first stop string
    (``"stop"``), then after ``max_tokens`` tokens of :func:`simple_token_count` (``"length"``)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    if cut >= 0:
        text = text[:cut]
    if max_tokens is not None:
        tokens = list(_TOKEN.finditer(text))
        if len(tokens) > max_tokens:
            return text[:tokens[max_tokens - 1].end()] if max_tokens > 0 else "", "length"
    return text, "stop"


def _prompt_tokens(request: LLMRequest) -> int:
    return simple_token_count("\n".join(m.content for m in request.messages))


def _matches(pattern: str, text: str) -> bool:
    """Whether ``text`` matches ``pattern`` in full; a pattern Python cannot compile (vLLM's
    dialects differ) counts as no match."""
    try:
        return re.fullmatch(pattern, text) is not None
    except re.error:
        return False


def split_deltas(text: str) -> list[str]:
    """``text`` in word-sized stream deltas (each word with the whitespace before it)."""
    return re.findall(r"\s*\S+|\s+$", text)


@dataclass(frozen=True)
class ScriptedConfig:
    """What the scripted backend answers."""

    responses: Script = field(default_factory=list)
    """Replies in order, a callable ``messages -> reply``, or a mapping ``regex -> reply``."""
    model: str = "scripted"
    """Model name reported in responses (prices are looked up by it)."""
    logprobs: Callable[[str], Sequence[tuple[str, float]]] | None = None
    """``reply -> (token, logprob) pairs`` for requests that ask for logprobs; None: each token of
    :func:`simple_token_count` (with the whitespace before it) with logprob 0 (probability 1)."""


class ScriptedClient:
    """:class:`~orchestrator.llm.base.LLMClient` that replies from a script."""

    def __init__(self, config: ScriptedConfig | None = None) -> None:
        self.config = config or ScriptedConfig()
        self.model = self.config.model
        self.requests: list[LLMRequest] = []
        """Every request received, in order (tests assert on hints and prompts)."""
        self.num_regex_mismatches = 0
        """Replies to a request with a ``regex`` that did not match it (handed out unchanged)."""
        script = self.config.responses
        if isinstance(script, str) or not (callable(script) or isinstance(script, (Mapping, Sequence))):
            raise ConfigError("scripted backend: responses must be a list of strings, a callable or a "
                              f"mapping regex -> reply, not {type(script).__name__}")
        self._patterns = ([(re.compile(p), r) for p, r in script.items()]
                          if isinstance(script, Mapping) else [])

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """The next scripted reply, cut like a server would (:func:`cut_reply`), with simple token
        counts."""
        self.requests.append(request)
        sampling = request.sampling
        reply = self._reply(request)
        if sampling.choices:
            reply = closest_choice(reply, sampling.choices)
        text, finish = cut_reply(reply, sampling.stop, sampling.max_tokens)
        if sampling.regex is not None and not _matches(sampling.regex, text):
            self.num_regex_mismatches += 1
        usage = Usage(input_tokens=_prompt_tokens(request), output_tokens=self.count_tokens(text))
        return LLMResponse(text=text, usage=usage, model=request.model or self.model, finish_reason=finish,
                           endpoint="scripted", logprobs=self._logprobs(text, sampling.top_logprobs)
                           if sampling.wants_logprobs else None)

    async def stream(self, request: LLMRequest) -> AsyncIterator[str | LLMResponse]:
        """The reply of :meth:`complete` in word-sized deltas, then the response."""
        response = await self.complete(request)
        for piece in split_deltas(response.text):
            yield piece
        yield response

    def count_tokens(self, text: str) -> int:
        """See :func:`simple_token_count`."""
        return simple_token_count(text)

    async def count_prompt_tokens(self, request: LLMRequest) -> int:
        """Exact: what :meth:`complete` will report as input tokens."""
        return _prompt_tokens(request)

    async def aclose(self) -> None:
        """Nothing to release."""

    def _logprobs(self, text: str, top: int) -> tuple[TokenLogprob, ...]:
        pairs = (self.config.logprobs(text) if self.config.logprobs
                 else [(t, 0.0) for t in re.findall(r"\s*(?:\w+|[^\w\s])", text)])
        return tuple(TokenLogprob(t, lp, ((t, lp),)[:top]) for t, lp in pairs)

    def _reply(self, request: LLMRequest) -> str:
        script: Any = self.config.responses
        n = len(self.requests)
        if self._patterns:
            last = request.messages[-1].content if request.messages else ""
            for pattern, reply in self._patterns:
                if pattern.search(last):
                    return reply
            raise EngineDead(f"scripted backend: call {n}: no pattern of {[p.pattern for p, _ in self._patterns]} "
                             f"matches the last message {last[:200]!r}; add a pattern for it")
        if callable(script):
            reply = script(list(request.messages))
            if not isinstance(reply, str):
                raise EngineDead(f"scripted backend: the script callable returned {type(reply).__name__}, not str")
            return reply
        if n > len(script):
            raise EngineDead(f"scripted backend: the script ran out: it has {len(script)} response(s) and call "
                             f"{n} asked for one more; add responses to the script")
        return str(script[n - 1])
