"""The test kit itself: the loopback server's wire behaviour and command, the fake context's
records (the conformance suites are in test_conformance.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from orchestrator.testing import (
    ChatRequest,
    FakeRunContext,
    LoopbackServer,
    Reply,
    ScriptedClient,
    ScriptedConfig,
)
from orchestrator.types import Message

ROOT = Path(__file__).resolve().parents[2]


def _chat(server: LoopbackServer, **body: object) -> httpx.Response:
    payload = {"model": server.model, "messages": [{"role": "user", "content": "count to ten"}], **body}
    return httpx.post(f"{server.base_url}/chat/completions", json=payload, timeout=10)


def test_replies_are_cut_at_stop_strings_and_max_tokens_like_a_server() -> None:
    with LoopbackServer("one two three. four five") as server:
        stopped = _chat(server, stop=["."]).json()
        cut = _chat(server, max_tokens=2).json()
        whole = _chat(server).json()
    assert stopped["choices"][0]["message"]["content"] == "one two three"
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert cut["choices"][0]["message"]["content"] == "one two" and cut["choices"][0]["finish_reason"] == "length"
    assert cut["usage"]["completion_tokens"] == 2 and whole["usage"]["completion_tokens"] == 6
    assert whole["usage"]["prompt_tokens"] == 3 and whole["model"] == server.model
    assert whole["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}


def test_a_responder_sets_status_usage_and_logprobs_per_request() -> None:
    def respond(request: ChatRequest) -> Reply:
        if "busy" in request.messages[-1]["content"]:
            return Reply(status=429, retry_after_s=2)
        return Reply("yes", prompt_tokens=50, completion_tokens=1, cached_tokens=40, logprobs=[("yes", -0.1)])

    with LoopbackServer(respond) as server:
        busy = _chat(server, messages=[{"role": "user", "content": "busy?"}])
        plain = _chat(server).json()
        with_logprobs = _chat(server, logprobs=True).json()
    assert busy.status_code == 429 and busy.headers["retry-after"] == "2"
    assert plain["usage"]["prompt_tokens"] == 50 and plain["usage"]["prompt_tokens_details"]["cached_tokens"] == 40
    assert "logprobs" not in plain["choices"][0]
    assert with_logprobs["choices"][0]["logprobs"]["content"] == [{"token": "yes", "logprob": -0.1, "top_logprobs": []}]
    assert [r.path for r in server.requests] == ["/v1/chat/completions"] * 3


def test_a_failing_responder_is_a_500_and_recorded() -> None:
    def respond(request: ChatRequest) -> str:
        raise ValueError("no reply for this one")

    with LoopbackServer(respond) as server:
        response = _chat(server)
    assert response.status_code == 500 and "no reply for this one" in response.text
    assert server.errors == ["ValueError: no reply for this one"]


def test_tokenize_agrees_with_the_usage_or_is_absent() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello, world!"}]
    with LoopbackServer("hi") as server:
        count = httpx.post(f"http://127.0.0.1:{server.port}/tokenize", json={"messages": messages}).json()["count"]
        usage = _chat(server, messages=messages).json()["usage"]
        models = httpx.get(f"{server.base_url}/models").json()
    assert count == usage["prompt_tokens"] == 7
    assert models["data"][0]["id"] == "loopback-model"
    with LoopbackServer("hi", tokenize=False) as server:
        assert httpx.post(f"http://127.0.0.1:{server.port}/tokenize", json={"prompt": "x"}).status_code == 404


def test_stop_ends_a_reply_still_waiting_on_its_delay() -> None:
    server = LoopbackServer(lambda _r: Reply("late", delay_s=3600)).start()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.base_url}/chat/completions", json={"messages": []}, timeout=0.2)
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.base_url}/models", timeout=1)


def test_serve_command_runs_a_responder_in_its_own_process() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.testing", "serve", "--port", "0", "--model", "m",
                             "--responder", "bench.drqa.responder:respond", "--no-tokenize"],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[1])
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=10, json={
            "messages": [{"role": "user", "content": "What is 2 + 3?"}, {"role": "user", "content": "used up"}]})
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert reply.json()["choices"][0]["message"]["content"].startswith("#### ")
    assert reply.json()["usage"]["prompt_tokens"] == 100 and reply.json()["model"] == "m"


def test_fake_context_keeps_calls_before_asking_and_records_as_json() -> None:
    ctx = FakeRunContext(config={"k": 1})
    ctx.llm = ScriptedClient(ScriptedConfig(responses=lambda _m: f"as the {ctx.calls[-1].purpose}"))

    async def go() -> tuple[str, object]:
        response = await ctx.chat([Message("user", "hi")], purpose="judge", tool_name="search")
        await ctx.put_record("votes", "r1", {"labels": ("a", "b")})
        return response.text, await ctx.get_record("votes", "r1")

    text, record = asyncio.run(go())
    assert text == "as the judge" and ctx.purposes() == ["judge"] and ctx.calls[0].tool_name == "search"
    assert record == {"labels": ["a", "b"]}  # what a store would give back
    assert ctx.usage.output_tokens == 3
