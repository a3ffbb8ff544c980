"""The scripted backend and the client factory."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.errors import ConfigError, EngineDead
from orchestrator.llm import create_client, known_backends
from orchestrator.llm.base import LLMClient
from orchestrator.llm.scripted import ScriptedClient, ScriptedConfig
from orchestrator.types import LLMRequest, LLMResponse, Message, ProgramHints, SamplingOptions


def _ask(text: str, stop: tuple[str, ...] = ()) -> LLMRequest:
    return LLMRequest(messages=(Message("system", "sys"), Message("user", text)),
                      sampling=SamplingOptions(stop=stop), hints=ProgramHints("p", turn=1))


def test_list_script_in_order_then_clear_error() -> None:
    client = ScriptedClient(ScriptedConfig(responses=["first", "second"]))

    async def go() -> list[str]:
        return [(await client.complete(_ask("q"))).text for _ in range(2)]

    assert asyncio.run(go()) == ["first", "second"]
    with pytest.raises(EngineDead, match="ran out: it has 2 response"):
        asyncio.run(client.complete(_ask("q")))
    assert client.requests[0].hints == ProgramHints("p", turn=1)


def test_callable_and_regex_scripts() -> None:
    echo = ScriptedClient(ScriptedConfig(responses=lambda msgs: msgs[-1].content.upper()))
    assert asyncio.run(echo.complete(_ask("abc"))).text == "ABC"

    rules = ScriptedClient(ScriptedConfig(responses={r"capital of (France|Spain)": "Paris or Madrid",
                                                     r"\d+ \+ \d+": "4"}))
    assert asyncio.run(rules.complete(_ask("2 + 2 = ?"))).text == "4"
    assert asyncio.run(rules.complete(_ask("the capital of Spain?"))).text == "Paris or Madrid"
    with pytest.raises(EngineDead, match="no pattern"):
        asyncio.run(rules.complete(_ask("unrelated")))


def test_usage_counts_and_stop_strings() -> None:
    client = ScriptedClient(ScriptedConfig(responses=["Thought: search it.\nObservation: made up"]))
    response = asyncio.run(client.complete(_ask("What is it?", stop=("Observation:",))))
    assert response.text == "Thought: search it.\n"
    assert response.usage.input_tokens == 1 + 4  # "sys" + "What is it ?"
    assert response.usage.output_tokens == 5  # "Thought : search it ."


def test_stream_concatenates_to_the_response() -> None:
    client = ScriptedClient(ScriptedConfig(responses=["alpha beta  gamma"]))

    async def go() -> list[str | LLMResponse]:
        return [item async for item in client.stream(_ask("q"))]

    *deltas, final = asyncio.run(go())
    assert len(deltas) == 3 and isinstance(final, LLMResponse)
    assert "".join(deltas) == final.text == "alpha beta  gamma"  # type: ignore[arg-type]


def test_factory_builds_each_backend_and_rejects_unknown() -> None:
    scripted = create_client("scripted", responses=["x"])
    assert isinstance(scripted, ScriptedClient) and isinstance(scripted, LLMClient)
    openai = create_client("openai", base_urls=["http://127.0.0.1:9/v1"], model="m", max_retries=0)
    assert isinstance(openai, LLMClient) and openai.model == "m"
    asyncio.run(openai.aclose())
    assert known_backends() == ["local", "openai", "scripted"]
    with pytest.raises(ConfigError, match="known backends: local, openai, scripted"):
        create_client("nope")
    with pytest.raises(ConfigError, match=r"unknown option.*bogus.*known options"):
        create_client("scripted", bogus=1)
    with pytest.raises(ConfigError, match="no base URL"):
        create_client("openai", base_urls=[])
