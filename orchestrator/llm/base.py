"""The one interface every LLM backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from orchestrator.types import LLMRequest, LLMResponse


@runtime_checkable
class LLMClient(Protocol):
    """An LLM backend. Implementations: ``openai`` (httpx), ``local`` (in-process), ``scripted``.

    ``complete`` returns the whole response; ``stream`` yields text deltas and then, as its last
    item, the complete :class:`LLMResponse` (with usage).

    Optional: ``async def count_prompt_tokens(request) -> int | None``, the exact prompt tokens
    the call will be charged (chat template included), None where unknown. The runtime reserves
    exactly that much; without it, an upper bound from the prompt's bytes
    (:func:`orchestrator.accounting.input_tokens_upper_bound`).
    """

    model: str

    async def complete(self, request: LLMRequest) -> LLMResponse: ...

    def stream(self, request: LLMRequest) -> AsyncIterator[str | LLMResponse]: ...

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes for this model (exact where the tokenizer is local)."""
        ...
    async def aclose(self) -> None: ...
