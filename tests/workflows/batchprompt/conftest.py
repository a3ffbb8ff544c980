"""Fixtures for the BatchPrompt tests: small RTE/BoolQ item sets and the chat seam over a client."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.types import LLMRequest, LLMResponse, Message, SamplingOptions, TokenLogprob
from workflows.batchprompt.scripted import label_logprobs
from workflows.batchprompt.tasks import Item, TaskSpec, load_task

_SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The shared data folder (BoolQ, RTE, QQP and the paper's subsets); skips when absent."""
    if not _SHARED_DATA.is_dir():
        pytest.skip("shared data folder not present")
    return _SHARED_DATA


@pytest.fixture
def rte() -> TaskSpec:
    return load_task("rte")


@pytest.fixture
def rte_items() -> list[Item]:
    """24 synthetic RTE-shaped items with alternating gold labels."""
    return [
        Item(
            key=str(i),
            inputs={
                "premise": f"Premise number {i} says the sky was grey on day {i}.",
                "hypothesis": f"Day {i} was grey.",
            },
            gold="entailment" if i % 2 == 0 else "not_entailment",
        )
        for i in range(24)
    ]


@pytest.fixture
def chat_of():  # type: ignore[no-untyped-def]
    """Turns a client into a ``chat(messages, sampling)`` coroutine over its ``complete``;
    ``logprobs=True`` adds a scripted labeler's token logprobs to each response, else none."""

    def make(client, logprobs: bool = False):  # type: ignore[no-untyped-def]
        async def chat(messages: list[Message], sampling: SamplingOptions) -> LLMResponse:
            response = await client.complete(LLMRequest(tuple(messages), sampling))
            if not logprobs:  # a backend that reports none
                return replace(response, logprobs=None)
            return replace(response, logprobs=tuple(TokenLogprob(t, lp) for t, lp in label_logprobs(response.text)))

        return chat

    return make
