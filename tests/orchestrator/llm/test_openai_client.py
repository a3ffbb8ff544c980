"""The openai backend against real HTTP servers on loopback."""

from __future__ import annotations

import asyncio
import random

import pytest

from orchestrator.errors import EngineDead, EngineUnavailable
from orchestrator.llm.openai import OpenAIClient, OpenAIConfig, backoff_delay
from orchestrator.llm.routing import EndpointRouter, affinity_score, rank_endpoints
from orchestrator.testing import LoopbackServer
from orchestrator.types import LLMRequest, LLMResponse, Message, ProgramHints, SamplingOptions
from tests import extras

from .conftest import behaviour


def _request(program_id: str | None = "prog-1", **hint_fields: object) -> LLMRequest:
    hints = ProgramHints(program_id=program_id, **hint_fields) if program_id else None  # type: ignore[arg-type]
    return LLMRequest(messages=(Message("system", "be brief"), Message("user", "say hello")),
                      sampling=SamplingOptions(max_tokens=16, stop=("\n\n",), seed=7), hints=hints)


def _client(*urls: str, **options: object) -> OpenAIClient:
    options.setdefault("backoff_base_s", 0.001)
    options.setdefault("seed", 0)
    return OpenAIClient(OpenAIConfig(base_urls=urls, model="m", **options))  # type: ignore[arg-type]


def test_request_carries_hints_priority_and_sampling(servers: list[LoopbackServer]) -> None:
    server = servers[0]

    async def go() -> LLMResponse:
        client = _client(server.base_url, api_key="sk-test")
        try:
            return await client.complete(_request(turn=3, is_last_step=True, tool_name="search", priority=5))
        finally:
            await client.aclose()

    response = asyncio.run(go())
    assert response.text == "hello from a"
    assert response.endpoint == server.base_url
    body = server.chat_bodies[0]
    assert body["vllm_xargs"] == {"program_id": "prog-1", "turn": 3, "is_last_step": 1, "tool_name": "search"}
    assert body["priority"] == 5
    assert body["max_tokens"] == 16 and body["stop"] == ["\n\n"] and body["seed"] == 7
    assert body["messages"][1] == {"role": "user", "content": "say hello"}
    assert server.requests[0].headers["authorization"] == "Bearer sk-test"


def test_no_priority_field_when_zero_and_no_xargs_without_hints(servers: list[LoopbackServer]) -> None:
    server = servers[0]

    async def go() -> None:
        client = _client(server.base_url)
        await client.complete(_request())
        await client.complete(_request(program_id=None))
        await client.aclose()

    asyncio.run(go())
    with_hints, without = server.chat_bodies
    assert "priority" not in with_hints and with_hints["vllm_xargs"]["program_id"] == "prog-1"
    assert "vllm_xargs" not in without


def test_extra_body_fields_reach_every_request_and_its_seed_yields_to_the_requests(
        servers: list[LoopbackServer]) -> None:
    server = servers[0]

    async def go() -> None:
        client = _client(server.base_url, extra_body={"seed": 0, "chat_template_kwargs": {"x": 1}})
        await client.complete(_request())  # its sampling has seed 7
        unseeded = _request()
        await client.complete(LLMRequest(unseeded.messages, SamplingOptions(max_tokens=16), unseeded.hints))
        await client.aclose()

    asyncio.run(go())
    seeded, default = server.chat_bodies
    assert (seeded["seed"], default["seed"]) == (7, 0)
    assert seeded["chat_template_kwargs"] == default["chat_template_kwargs"] == {"x": 1}


def test_usage_includes_cached_and_reasoning_tokens(servers: list[LoopbackServer]) -> None:
    server = servers[0]
    behaviour(server).cached_tokens, behaviour(server).reasoning_tokens = 3, 2

    async def go() -> LLMResponse:
        client = _client(server.base_url)
        try:
            return await client.complete(_request())
        finally:
            await client.aclose()

    usage = asyncio.run(go()).usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens, usage.reasoning_tokens) == (4, 3, 3, 2)


def test_retries_429_and_503_then_succeeds(servers: list[LoopbackServer]) -> None:
    server = servers[0]
    behaviour(server).failures = [429, 503, 500]

    async def go() -> LLMResponse:
        client = _client(server.base_url, max_retries=3)
        try:
            return await client.complete(_request())
        finally:
            await client.aclose()

    assert asyncio.run(go()).text == "hello from a"
    assert len(server.chat_bodies) == 4


def test_gives_up_with_engine_unavailable_after_max_retries_of_5xx(servers: list[LoopbackServer]) -> None:
    server = servers[0]
    behaviour(server).failures = [503] * 10

    async def go() -> None:
        client = _client(server.base_url, max_retries=2)
        try:
            await client.complete(_request())
        finally:
            await client.aclose()

    with pytest.raises(EngineUnavailable, match="after 3 attempt"):
        asyncio.run(go())
    assert len(server.chat_bodies) == 3


def test_closed_port_raises_engine_unavailable(closed_port_url: str) -> None:
    async def go() -> None:
        client = _client(closed_port_url, max_retries=2)
        try:
            await client.complete(_request())
        finally:
            await client.aclose()

    with pytest.raises(EngineUnavailable, match="is running"):
        asyncio.run(go())


def test_other_4xx_is_engine_dead_without_retry(servers: list[LoopbackServer]) -> None:
    server = servers[0]
    behaviour(server).failures = [400, 400]

    async def go() -> None:
        client = _client(server.base_url, max_retries=3)
        try:
            await client.complete(_request())
        finally:
            await client.aclose()

    with pytest.raises(EngineDead, match="HTTP 400"):
        asyncio.run(go())
    assert len(server.chat_bodies) == 1


def test_read_timeout_is_engine_unavailable(servers: list[LoopbackServer]) -> None:
    server = servers[0]
    behaviour(server).hang = True

    async def go() -> None:
        client = _client(server.base_url, max_retries=0, timeout_s=0.2)
        try:
            await client.complete(_request())
        finally:
            await client.aclose()

    with pytest.raises(EngineUnavailable, match="ReadTimeout"):
        asyncio.run(go())


def test_streaming_yields_deltas_then_response_with_cached_usage(servers: list[LoopbackServer]) -> None:
    server = servers[0]
    behaviour(server).reply = "one two three four"
    behaviour(server).cached_tokens = 4

    async def go() -> list[str | LLMResponse]:
        client = _client(server.base_url)
        try:
            return [item async for item in client.stream(_request())]
        finally:
            await client.aclose()

    items = asyncio.run(go())
    *deltas, final = items
    assert deltas == ["one", " two", " three", " four"]
    assert isinstance(final, LLMResponse) and final.text == "one two three four"
    assert final.usage.cached_input_tokens == 4 and final.usage.output_tokens == 4
    body = server.chat_bodies[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["vllm_xargs"]["program_id"] == "prog-1"


def test_streaming_retries_before_first_delta(servers: list[LoopbackServer]) -> None:
    server = servers[0]
    behaviour(server).failures = [429]

    async def go() -> list[str | LLMResponse]:
        client = _client(server.base_url, max_retries=1)
        try:
            return [item async for item in client.stream(_request())]
        finally:
            await client.aclose()

    items = asyncio.run(go())
    assert "".join(i for i in items if isinstance(i, str)) == "hello from a"
    assert len(server.chat_bodies) == 2


def test_hash_routing_is_stable_across_clients(servers: list[LoopbackServer]) -> None:
    a, b = servers
    programs = [f"program-{i}" for i in range(8)]

    async def route_all(urls: tuple[str, ...]) -> dict[str, str]:
        client = _client(*urls)
        try:
            out = {}
            for pid in programs:
                for turn in range(2):
                    out[f"{pid}/{turn}"] = (await client.complete(_request(pid, turn=turn))).endpoint
            return out
        finally:
            await client.aclose()

    first = asyncio.run(route_all((a.base_url, b.base_url)))
    second = asyncio.run(route_all((b.base_url, a.base_url)))  # another instance, other order
    assert first == second
    for pid in programs:
        assert first[f"{pid}/0"] == first[f"{pid}/1"]
    assert set(first.values()) == {a.base_url, b.base_url}
    for server in (a, b):
        for body in server.chat_bodies:
            assert first[f"{body['vllm_xargs']['program_id']}/{body['vllm_xargs']['turn']}"] == server.base_url


def test_requests_without_hints_round_robin(servers: list[LoopbackServer]) -> None:
    a, b = servers

    async def go() -> list[str]:
        client = _client(a.base_url, b.base_url)
        try:
            return [(await client.complete(_request(None))).endpoint for _ in range(4)]
        finally:
            await client.aclose()

    assert asyncio.run(go()) == [a.base_url, b.base_url, a.base_url, b.base_url]


def test_connection_error_fails_over_to_next_endpoint(servers: list[LoopbackServer], closed_port_url: str) -> None:
    live = servers[0]
    urls = (closed_port_url, live.base_url)
    pid = next(f"p{i}" for i in range(100) if rank_endpoints(urls, f"p{i}")[0] == 0)  # prefers the dead one

    async def go() -> LLMResponse:
        client = _client(*urls, max_retries=1)
        try:
            return await client.complete(_request(pid))
        finally:
            await client.aclose()

    assert asyncio.run(go()).endpoint == live.base_url


def test_empty_model_is_asked_from_the_server(servers: list[LoopbackServer]) -> None:
    server = servers[0]

    async def go() -> tuple[str, str]:
        client = OpenAIClient(OpenAIConfig(base_urls=server.base_url))
        try:
            response = await client.complete(_request())
            return response.model, client.model
        finally:
            await client.aclose()

    assert asyncio.run(go()) == ("model-a", "model-a")
    assert server.chat_bodies[0]["model"] == "model-a"


def test_routing_moves_few_programs_when_an_endpoint_is_added() -> None:
    three = ["u1", "u2", "u3"]
    four = [*three, "u4"]
    moved = sum(three[rank_endpoints(three, f"p{i}")[0]] != four[rank_endpoints(four, f"p{i}")[0]]
                for i in range(1000))
    assert 150 < moved < 350  # about a quarter, not (as with modulo hashing) three quarters
    # Pinned value: a process-salted hash (Python's hash()) would differ between processes.
    assert affinity_score("http://a/v1", "p1") == 6525457932924965053
    router = EndpointRouter(three)
    assert router.order("p1") == router.order("p1") == rank_endpoints(three, "p1")


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(r, 0.5, 4.0, rng) for r in range(6)]
    for r, d in enumerate(delays):
        ceiling = min(4.0, 0.5 * 2**r)
        assert ceiling / 2 <= d <= ceiling
    assert backoff_delay(0, 0.5, 4.0, rng, retry_after_s=30) == 4.0


def test_count_tokens_approximate_or_with_tokenizer() -> None:
    approx = OpenAIClient(OpenAIConfig(base_urls="http://x/v1"))
    exact = OpenAIClient(OpenAIConfig(base_urls="http://x/v1", tokenizer=lambda s: s.split()))
    assert approx.count_tokens("a" * 9) == 3
    assert exact.count_tokens("a b c d e") == 5
    asyncio.run(approx.aclose())
    asyncio.run(exact.aclose())


@pytest.mark.vllm
def test_request_body_is_accepted_by_vllm_and_hints_reach_sampling_params(servers: list[LoopbackServer]) -> None:
    protocol = pytest.importorskip("vllm.entrypoints.openai.chat_completion.protocol", reason=extras.SERVE)
    server = servers[0]

    async def go() -> None:
        client = _client(server.base_url)
        try:
            await client.complete(_request(turn=2, tool_name="search", priority=3))
            [_ async for _ in client.stream(_request(turn=3))]
        finally:
            await client.aclose()

    asyncio.run(go())
    plain, streamed = (protocol.ChatCompletionRequest.model_validate(b) for b in server.chat_bodies)
    assert plain.priority == 3 and streamed.stream and streamed.stream_options.include_usage
    params = plain.to_sampling_params(max_tokens=16, default_sampling_params={})
    assert params.extra_args == {"program_id": "prog-1", "turn": 2, "is_last_step": 0, "tool_name": "search"}
    assert params.stop == ["\n\n"] and params.seed == 7


def test_choices_and_logprobs_travel_as_vllm_fields_and_come_back(servers: list[LoopbackServer]) -> None:
    server = servers[0]
    behaviour(server).reply = "I pick beta."
    constrained = LLMRequest(messages=(Message("user", "pick"),),
                             sampling=SamplingOptions(max_tokens=8, choices=("alpha", "beta"), top_logprobs=2))

    async def go() -> tuple[LLMResponse, LLMResponse, list[str | LLMResponse]]:
        client = _client(server.base_url)
        try:
            return (await client.complete(constrained), await client.complete(_request()),
                    [item async for item in client.stream(constrained)])
        finally:
            await client.aclose()

    chosen, plain, streamed = asyncio.run(go())
    body, plain_body, _ = server.chat_bodies
    assert body["structured_outputs"] == {"choice": ["alpha", "beta"]}
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    assert not {"structured_outputs", "logprobs", "top_logprobs"} & set(plain_body)
    assert chosen.text == "beta" and chosen.logprobs is not None
    assert [t.token for t in chosen.logprobs] == ["beta"] and chosen.logprobs[0].top_logprobs == (("beta", 0.0),)
    assert plain.logprobs is None
    final = streamed[-1]
    assert isinstance(final, LLMResponse) and final.text == "beta" and final.logprobs == chosen.logprobs


def test_structured_outputs_can_be_turned_off(servers: list[LoopbackServer]) -> None:
    server = servers[0]
    request = LLMRequest(messages=(Message("user", "pick"),), sampling=SamplingOptions(choices=("x", "y")))

    async def go() -> LLMResponse:
        client = _client(server.base_url, structured_outputs=False)
        try:
            return await client.complete(request)
        finally:
            await client.aclose()

    assert asyncio.run(go()).text == "hello from a"  # free text: the caller matches it to a choice
    assert "structured_outputs" not in server.chat_bodies[0]


_REGEX = r"\[1\] (yes|no)"


def _regex_request(**sampling: object) -> LLMRequest:
    return LLMRequest(messages=(Message("user", "answer"),),
                      sampling=SamplingOptions(max_tokens=8, regex=_REGEX, **sampling))  # type: ignore[arg-type]


def test_regex_travels_as_vllm_structured_outputs(servers: list[LoopbackServer]) -> None:
    server = servers[0]

    async def go() -> None:
        client = _client(server.base_url)
        try:
            await client.complete(_regex_request())
            [_ async for _ in client.stream(_regex_request())]
        finally:
            await client.aclose()

    asyncio.run(go())
    assert [b["structured_outputs"] for b in server.chat_bodies] == [{"regex": _REGEX}] * 2
    protocol = pytest.importorskip("vllm.entrypoints.openai.chat_completion.protocol", reason=extras.SERVE)
    params = protocol.ChatCompletionRequest.model_validate(server.chat_bodies[0]).to_sampling_params(
        max_tokens=8, default_sampling_params={})
    assert params.structured_outputs is not None and params.structured_outputs.regex == _REGEX


@pytest.mark.parametrize("stream", [False, True])
def test_a_server_that_rejects_structured_outputs_and_logprobs_is_asked_without_them_once(stream: bool) -> None:
    # The fields a server answered HTTP 400 are dropped for that request and never sent again.
    async def ask(client: OpenAIClient, request: LLMRequest) -> LLMResponse:
        if not stream:
            return await client.complete(request)
        *_, final = [item async for item in client.stream(request)]
        assert isinstance(final, LLMResponse)
        return final

    async def go(server: LoopbackServer) -> tuple[OpenAIClient, list[LLMResponse]]:
        client = _client(server.base_url, max_retries=0)
        try:
            return client, [await ask(client, _regex_request(logprobs=True)) for _ in range(2)]
        finally:
            await client.aclose()

    with LoopbackServer("[1] yes", reject_fields=("structured_outputs", "logprobs")) as server:
        client, responses = asyncio.run(go(server))
    assert [r.text for r in responses] == ["[1] yes"] * 2 and all(r.logprobs is None for r in responses)
    # 1st request: rejected with both, rejected without structured_outputs, accepted without either.
    assert [sorted({"structured_outputs", "logprobs"} & set(b)) for b in server.chat_bodies] == [
        ["logprobs", "structured_outputs"], ["logprobs"], [], []]
    assert client.num_rejected == {"structured_outputs": 2, "logprobs": 2} and not server.errors

    with LoopbackServer("[1] yes", reject_fields=("structured_outputs",)) as server:
        client, responses = asyncio.run(go(server))
    assert all(r.logprobs for r in responses), "logprobs dropped although only structured_outputs was rejected"
    assert ["structured_outputs" in b for b in server.chat_bodies] == [True, False, False]
    assert client.num_rejected == {"structured_outputs": 2, "logprobs": 0}


def test_a_400_that_is_not_about_optional_fields_stays_engine_dead(servers: list[LoopbackServer]) -> None:
    server = servers[0]
    behaviour(server).failures = [400, 400, 400]

    async def go() -> None:
        client = _client(server.base_url)
        try:
            with pytest.raises(EngineDead, match="HTTP 400"):
                await client.complete(_regex_request(logprobs=True))
            assert client.num_rejected == {"structured_outputs": 0, "logprobs": 0}
            await client.complete(_regex_request(logprobs=True))  # nothing was remembered
        finally:
            await client.aclose()

    asyncio.run(go())
    # With both fields, without structured_outputs, without either; then the next request with both.
    assert [sorted({"structured_outputs", "logprobs"} & set(b)) for b in server.chat_bodies] == [
        ["logprobs", "structured_outputs"], ["logprobs"], [], ["logprobs", "structured_outputs"]]


def test_parse_logprobs_reads_the_openai_shape_and_rejects_garbage() -> None:
    from orchestrator.llm.openai import parse_logprobs

    raw = {"content": [{"token": "Yes", "logprob": -0.1, "top_logprobs": [{"token": "Yes", "logprob": -0.1},
                                                                          {"token": "No", "logprob": -2.4}]}]}
    (token,) = parse_logprobs(raw) or ()
    assert (token.token, token.logprob, token.top_logprobs) == ("Yes", -0.1, (("Yes", -0.1), ("No", -2.4)))
    assert parse_logprobs(None) is None and parse_logprobs({"content": [{"token": "x"}]}) is None
