"""Data types shared by LLM clients, tools and workflows (no I/O here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

# The wire contract for program hints lives with the plugin that reads them (one definition).
from serving_patch.core.hints import ProgramHints

if TYPE_CHECKING:
    from orchestrator.errors import QuotaFlowError

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class Message:
    """One chat message. ``name`` is the tool's name on ``tool`` messages."""

    role: Role
    content: str
    name: str | None = None

    def to_wire(self) -> dict[str, Any]:
        # Tool observations are sent as user turns: small instruction models and every chat
        # template accept that, while a "tool" role needs a tool-call id most servers insist on.
        if self.role == "tool":
            return {"role": "user", "content": f"Observation from {self.name or 'tool'}:\n{self.content}"}
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class SamplingOptions:
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    json_schema: Mapping[str, Any] | None = field(default=None, hash=False)
    """Constrain the reply to JSON matching this schema where the backend can (OpenAI-compatible
    servers get ``response_format`` of type ``json_schema``; other backends ignore it)."""
    choices: tuple[str, ...] = ()
    """Constrain the reply to exactly one of these strings (empty: free text). vLLM decodes it
    constrained (``structured_outputs.choice``); the local backend scores each choice and returns
    the likeliest; the scripted one returns the choice closest to its scripted reply. Callers
    still check the reply (:func:`orchestrator.llm.choices.closest_choice`): a server without
    structured outputs answers free text."""
    logprobs: bool = False
    """Return each generated token's log-probability in :attr:`LLMResponse.logprobs`."""
    top_logprobs: int = 0
    """Also return this many most likely alternatives per generated token (implies ``logprobs``)."""
    regex: str | None = None
    """Constrain the reply to match this regular expression in full (None: free text). vLLM
    decodes it constrained (``structured_outputs.regex``); the scripted and local backends and
    the kit's loopback server do not enforce it (their reply is what it would be without). Callers
    still check the reply: a server without structured outputs answers free text."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))  # a list from JSON or a caller
        if sum((bool(self.choices), self.json_schema is not None, self.regex is not None)) > 1:
            raise ValueError("sampling: two constraints among choices, json_schema and regex; pass one")
        if self.regex is not None and not self.regex:
            raise ValueError("sampling: regex is an empty pattern; pass None for free text")
        if any(not isinstance(c, str) or not c for c in self.choices):
            raise ValueError(f"sampling: choices must be non-empty strings, got {self.choices!r}")
        if not 0 <= self.top_logprobs <= 20:
            raise ValueError(f"sampling: top_logprobs must be in 0..20, got {self.top_logprobs}")

    @property
    def wants_logprobs(self) -> bool:
        """Whether the reply's token log-probabilities were asked for."""
        return self.logprobs or self.top_logprobs > 0


@dataclass(frozen=True)
class LLMRequest:
    messages: tuple[Message, ...]
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    hints: ProgramHints | None = None
    model: str | None = None


@dataclass(frozen=True)
class Usage:
    """Token counts of one call, as the server reports them."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.output_tokens + other.output_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token with its log-probability (natural log) and, where asked for, the most
    likely alternatives at that position as ``(token, logprob)``, likeliest first."""

    token: str
    logprob: float
    top_logprobs: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class LLMResponse:
    text: str
    usage: Usage
    model: str
    finish_reason: str = "stop"
    latency_s: float = 0.0
    endpoint: str = ""
    logprobs: tuple[TokenLogprob, ...] | None = None
    """The generated tokens with their log-probabilities when the request asked for them
    (:attr:`SamplingOptions.logprobs`) and the backend reports them; None otherwise. A reply
    replayed from the journal (a resumed run) has the ones it had."""


class RunStatus(StrEnum):
    """Every status a run row can hold."""

    RUNNING = "running"
    PAUSED = "paused"  # a budget ran out: resumable with more budget
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # storage failed, or its process died (shown once its lease expired)
    PARTIAL = "partial"  # a dataset run (parent) some but not all of whose item runs succeeded


@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: str
    result: dict[str, Any] | None = None
    error: str | None = None
    exit_code: int = 0
    """For command lines: 0 succeeded, 3 paused on a budget, else the error's code (4: engine)."""

    @classmethod
    def failed(cls, error: QuotaFlowError, run_id: str = "") -> RunResult:
        """A program that failed with ``error`` (``run_id`` empty where it was never stored)."""
        return cls(run_id, RunStatus.FAILED, None, str(error), error.exit_code)
