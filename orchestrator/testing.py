"""The test kit for QuotaFlow and for workflow authors: one of each test double, and conformance
suites that every implementation of the two seams passes (as LangGraph's checkpointer suite).

    from orchestrator.testing import FakeRunContext, LoopbackServer, ScriptedClient, ScriptedConfig

    ctx = FakeRunContext(llm=ScriptedClient(ScriptedConfig(["search: Paris", "answer: Paris"])),
                         tools=my_registry, tool_limits={"search": 2})
    state = await my_workflow.build(ctx).compile().ainvoke(...)
    assert [c.name for c in ctx.tool_calls] == ["search"]

    with LoopbackServer(lambda request: "hello") as server:   # real HTTP on 127.0.0.1
        client = OpenAIClient(OpenAIConfig(base_urls=[server.base_url], model=server.model))

- :class:`FakeRunContext`: the :class:`~orchestrator.context.RunContext` of unit tests, in
  memory: tool and token limits enforced (refusals marked), calls and steps kept for assertions.
- :class:`ScriptedClient`: the scripted LLM (:mod:`orchestrator.llm.scripted`).
- :class:`LoopbackServer`: an OpenAI-compatible server (``/v1/chat/completions`` plain and SSE,
  ``/v1/models``, ``/tokenize``) whose behaviour is a *responder*, ``ChatRequest -> Reply | str``
  (sync or async): reply text, HTTP status, delay, usage, logprobs. It runs in a thread
  (``start``/``stop`` or ``with``) or in its own process::

      python -m orchestrator.testing serve --port 0 --responder package.module:function

  which prints ``PORT <n>`` once listening. Plain asyncio streams with keep-alive, no framework:
  the orchestrator bench drives it at thousands of calls per second.
- :func:`check_run_context` and :func:`check_llm_client`: every promise of the two interfaces,
  run against each implementation in ``tests/orchestrator/test_conformance.py``.

Nothing here is a source of quality figures.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import re
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, NamedTuple, Self

from orchestrator.context import RunContext, ToolBudgetView
from orchestrator.errors import BudgetExhausted, EngineUnavailable
from orchestrator.llm.base import LLMClient
from orchestrator.llm.choices import closest_choice
from orchestrator.llm.scripted import (
    ScriptedClient,
    ScriptedConfig,
    cut_reply,
    simple_token_count,
    split_deltas,
)
from orchestrator.tools.base import Tool, ToolResult, ToolSpec
from orchestrator.tools.registry import ToolRegistry
from orchestrator.types import (
    LLMRequest,
    LLMResponse,
    Message,
    ProgramHints,
    SamplingOptions,
    Usage,
)

__all__ = [
    "LLM_CLIENT_CHECKS",
    "RUN_CONTEXT_CHECKS",
    "ChatCall",
    "ChatRequest",
    "ContextFactory",
    "FakeRunContext",
    "LoopbackServer",
    "Reply",
    "Responder",
    "ScriptedClient",
    "ScriptedConfig",
    "ToolCall",
    "check_llm_client",
    "check_run_context",
    "conformance_tools",
]


# -- the fake RunContext ---------------------------------------------------------------------------

@dataclass
class ChatCall:
    """One :meth:`FakeRunContext.chat`, kept before the LLM is asked (so a script can read
    ``ctx.calls[-1].purpose``)."""

    purpose: str
    messages: list[Message]
    sampling: SamplingOptions
    is_last_step: bool
    tool_name: str | None
    scope: str | None


class ToolCall(NamedTuple):
    """One :meth:`FakeRunContext.call_tool`."""

    name: str
    args: Any
    refused: bool


@dataclass
class FakeRunContext:
    """A :class:`~orchestrator.context.RunContext` in memory: no store, ledger or journal.

    It keeps the runtime's promises that a workflow can observe: program hints on every LLM
    request, tool failures as error observations, per-tool limits (``tool_limits``, units per
    run) refused with ``metadata["refused"]``, a token limit (``token_limit``) that clamps
    ``max_tokens`` to what is left and raises BudgetExhausted when no output fits, records
    replaced by key. What it did is kept in
    ``calls``, ``tool_calls``, ``used``, ``steps`` and ``records`` for the test to assert on.
    """

    llm: LLMClient = field(default_factory=ScriptedClient)
    tools: ToolRegistry = field(default_factory=ToolRegistry)
    tool_limits: Mapping[str, float | None] = field(default_factory=dict)
    """Units per tool this run may use; a tool not named here is unlimited."""
    token_limit: int | None = None
    """Tokens (input and output) this run may use; None: unlimited."""
    config: dict[str, Any] = field(default_factory=dict)
    run_id: str = "test-run"
    store: Any = None
    """No store: a workflow that needs one is tested through the Runtime."""
    calls: list[ChatCall] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    used: dict[str, float] = field(default_factory=dict)
    """Units charged per tool (refused and malformed calls cost nothing)."""
    usage: Usage = field(default_factory=Usage)
    """Tokens of every LLM call so far."""
    steps: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    records: dict[tuple[str, str], Any] = field(default_factory=dict)

    def purposes(self) -> list[str]:
        """The ``purpose`` of each LLM call, in order."""
        return [c.purpose for c in self.calls]

    async def chat(
        self,
        messages: list[Message] | tuple[Message, ...],
        *,
        sampling: SamplingOptions | None = None,
        tool_name: str | None = None,
        is_last_step: bool = False,
        scope: str | None = None,
        purpose: str = "agent",
    ) -> LLMResponse:
        sampling = sampling or SamplingOptions()
        hints = ProgramHints(program_id=self.run_id, turn=len(self.calls), is_last_step=is_last_step,
                             tool_name=tool_name)
        request = LLMRequest(messages=tuple(messages), sampling=sampling, hints=hints)
        if self.token_limit is not None:
            request = await self._within_token_limit(request, self.token_limit)
        self.calls.append(ChatCall(purpose, list(messages), request.sampling, is_last_step, tool_name, scope))
        response = await self.llm.complete(request)
        self.usage = self.usage + response.usage
        return response

    async def _within_token_limit(self, request: LLMRequest, limit: int) -> LLMRequest:
        counter = getattr(self.llm, "count_prompt_tokens", None)
        prompt = await counter(request) if counter is not None else None
        if prompt is None:
            prompt = self.llm.count_tokens("\n".join(m.content for m in request.messages))
        used = self.usage.total_tokens
        room = limit - used - prompt
        if room < 1:
            raise BudgetExhausted(f"run:{self.run_id}", "tokens", limit, used, prompt + request.sampling.max_tokens)
        return replace(request, sampling=replace(request.sampling, max_tokens=min(request.sampling.max_tokens, room)))

    async def call_tool(self, name: str, args: dict[str, Any], *, scope: str | None = None) -> ToolResult:
        units = float(self.tools.units_for(name, args))
        limit = self.tool_limits.get(name)
        used = self.used.get(name, 0.0)
        if units and limit is not None and used + units > limit:
            self.tool_calls.append(ToolCall(name, args, True))
            unit = self.tools.get(name).spec.unit
            return ToolResult(f"Refused: the {name} budget is exhausted ({used:g} of {limit:g} {unit}s used). "
                              "Answer with what you have.", is_error=True,
                              metadata={"refused": True, "resource": f"tool:{name}"})
        if units:
            self.used[name] = used + units
        self.tool_calls.append(ToolCall(name, args, False))
        return await self.tools.invoke(name, args)

    async def tool_budgets(self) -> list[ToolBudgetView]:
        return [ToolBudgetView(s.name, s.unit, self.used.get(s.name, 0.0), self.tool_limits.get(s.name))
                for s in self.tools.specs()]

    async def record_step(self, node: str, data: dict[str, Any]) -> None:
        self.steps.append((node, data))

    async def put_record(self, namespace: str, key: str, data: Any) -> None:
        # Through JSON, as the store keeps it: a test sees what a resumed run would read.
        self.records[(namespace, key)] = json.loads(json.dumps(data))

    async def get_record(self, namespace: str, key: str) -> Any | None:
        return self.records.get((namespace, key))


# -- the loopback OpenAI-compatible server ---------------------------------------------------------

@dataclass(frozen=True)
class ChatRequest:
    """One HTTP request the loopback server received."""

    method: str
    path: str
    raw_head: bytes = b""
    """The request line and headers as received."""
    raw_body: bytes = b""

    @cached_property
    def headers(self) -> Mapping[str, str]:
        """Header names in lower case."""
        out = {}
        for line in self.raw_head.decode("latin-1").split("\r\n")[1:]:
            name, sep, value = line.partition(":")
            if sep:
                out[name.strip().lower()] = value.strip()
        return out

    @cached_property
    def body(self) -> dict[str, Any]:
        """The JSON body (decoded on first use: a responder that ignores it costs nothing)."""
        return json.loads(self.raw_body) if self.raw_body else {}

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    @property
    def max_tokens(self) -> int | None:
        value = self.body.get("max_tokens")
        return int(value) if value is not None else None


@dataclass(frozen=True)
class Reply:
    """What the server answers to one chat request (a plain ``str`` from a responder is
    ``Reply(text)``).

    Token counts left as None are counted with :func:`~orchestrator.llm.scripted.simple_token_count`;
    the text is then cut at the request's stop strings and ``max_tokens`` like a server would
    (a reply that gives ``completion_tokens`` is sent as it is).
    """

    text: str = ""
    status: int = 200
    """An HTTP error status sends ``{"error": ...}`` instead (429 with ``Retry-After``)."""
    delay_s: float = 0.0
    """Seconds to wait before answering (timeouts, slow servers); ``stop()`` ends the wait."""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    logprobs: Sequence[tuple[str, float]] | None = None
    """(token, logprob) pairs, sent when the request asks for ``logprobs`` (None: the reply's
    word-sized pieces, each with logprob 0). A request constrained to ``structured_outputs.choice``
    gets the choice closest to ``text`` instead, as vLLM would only ever decode a choice."""
    retry_after_s: float | None = 0.0
    """``Retry-After`` of a 429 reply (None: no header)."""


Responder = Callable[[ChatRequest], "Reply | str | Awaitable[Reply | str]"]
"""The behaviour of a :class:`LoopbackServer`: one reply per chat request."""


def _head(status: int, length: int | None, content_type: str = "application/json",
          extra: str = "") -> bytes:
    reason = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}.get(status, "")
    size = f"content-length: {length}\r\nconnection: keep-alive\r\n" if length is not None else "connection: close\r\n"
    return f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n{size}{extra}\r\n".encode()


def _json_response(status: int, payload: Any, extra: str = "") -> bytes:
    body = json.dumps(payload).encode()
    return _head(status, len(body), extra=extra) + body


def _constant(text: str) -> Responder:
    def respond(_request: ChatRequest) -> str:
        return text

    return respond


def _count_prompt(messages: list[dict[str, Any]]) -> int:
    return sum(simple_token_count(m["content"]) for m in messages if isinstance(m.get("content"), str))


class LoopbackServer:
    """An OpenAI-compatible HTTP server on 127.0.0.1 (an ephemeral port unless ``port`` is given).

    ``responder`` decides each chat reply (a plain string answers every request with it).
    ``requests`` keeps every request received (``record=False`` keeps none, for load tests);
    ``errors`` every exception a responder raised (answered with HTTP 500). ``/tokenize`` counts
    as the default usage does; ``tokenize=False`` answers it 404 (a server without it: what a
    responder that reports its own ``prompt_tokens`` wants, so clients do not reserve by it).
    ``reject_fields`` names top-level request fields (``structured_outputs``, ``logprobs``) the
    server does not know: a chat request with any of them is answered HTTP 400, before the
    responder sees it (a server without structured outputs or logprobs). A
    ``structured_outputs.regex`` is not enforced: the reply is the responder's, as the scripted
    client's (a responder that honours it reads it from the body).
    """

    def __init__(self, responder: Responder | str = "hello", *, model: str = "loopback-model",
                 host: str = "127.0.0.1", port: int = 0, record: bool = True, tokenize: bool = True,
                 reject_fields: Sequence[str] = ()) -> None:
        self.responder: Responder = _constant(responder) if isinstance(responder, str) else responder
        self.model = model
        self.host = host
        self.record = record
        self.tokenize = tokenize
        self.reject_fields = tuple(reject_fields)
        self.requests: list[ChatRequest] = []
        self.errors: list[str] = []
        self._port = port
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._canned: tuple[Reply, bytes] | None = None

    # -- addresses and records ------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the loopback server is not listening; call start() first")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: what an OpenAI client's ``base_urls`` takes."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def chat_bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat requests received, in order."""
        return [r.body for r in self.requests if r.path.endswith("/chat/completions")]

    # -- running ------------------------------------------------------------------------------------
    async def listen(self) -> None:
        """Start listening on the running event loop (see :meth:`start` for a thread of its own)."""
        self._server = await asyncio.start_server(self._on_connection, self.host, self._port, backlog=4096)
        self._port = int(self._server.sockets[0].getsockname()[1])  # kept after stop: a URL that refuses

    async def aclose(self) -> None:
        """Stop listening and drop open connections (answers in flight are abandoned)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    def start(self) -> Self:
        """Serve from a daemon thread with its own event loop; returns once listening."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.listen())
            except BaseException as exc:  # re-raised by start() in the caller's thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.aclose())
            loop.close()

        self._thread = threading.Thread(target=run, name="loopback-openai", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop the thread :meth:`start` began (replies still waiting on a delay are dropped)."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP ---------------------------------------------------------------------------------------
    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                method, path, _ = head[:head.index(b"\r\n")].decode("latin-1").split(" ", 2)
                at = head.lower().find(b"\r\ncontent-length:")
                length = int(head[at + 17:head.index(b"\r\n", at + 2)]) if at >= 0 else 0
                body = await reader.readexactly(length) if length else b""
                request = ChatRequest(method, path.split("?", 1)[0], head, body)
                if self.record:
                    self.requests.append(request)
                if not await self._answer(request, writer):
                    return
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _answer(self, request: ChatRequest, writer: asyncio.StreamWriter) -> bool:
        """Write the response; False when the connection must close after it (a stream)."""
        if request.method == "GET" and request.path.endswith("/models"):
            writer.write(_json_response(200, {"object": "list", "data": [{"id": self.model, "object": "model"}]}))
        elif request.method == "POST" and request.path.endswith("/chat/completions"):
            return await self._chat(request, writer)
        elif request.method == "POST" and request.path.endswith("/tokenize") and self.tokenize:
            body = request.body
            count = (_count_prompt(body["messages"]) if "messages" in body
                     else simple_token_count(str(body.get("prompt", ""))))
            writer.write(_json_response(200, {"count": count, "max_model_len": 32768, "tokens": list(range(count))}))
        else:
            writer.write(_json_response(404, {"error": {"message": f"no route {request.method} {request.path}"}}))
        return True

    async def _chat(self, request: ChatRequest, writer: asyncio.StreamWriter) -> bool:
        unknown = [name for name in self.reject_fields if name in request.body]
        if unknown:
            writer.write(_json_response(400, {"error": {"message": f"loopback server: unknown field(s) {unknown}"}}))
            return True
        try:
            out = self.responder(request)
            if inspect.isawaitable(out):
                out = await out
        except Exception as exc:  # the test reads self.errors, the client gets a 500
            self.errors.append(f"{type(exc).__name__}: {exc}")
            writer.write(_json_response(500, {"error": {"message": f"responder failed: {exc}"}}))
            return True
        reply = Reply(out) if isinstance(out, str) else out
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.status >= 400:
            extra = (f"retry-after: {reply.retry_after_s:g}\r\n"
                     if reply.status == 429 and reply.retry_after_s is not None else "")
            writer.write(_json_response(reply.status, {"error": {"message": f"loopback server: {reply.status}"}},
                                        extra))
            return True
        raw = request.raw_body
        if (reply.prompt_tokens is not None and reply.completion_tokens is not None
                and b'"stream"' not in raw and b'"logprobs"' not in raw):
            # A canned reply (the overhead bench): nothing to decode, the same bytes as last time.
            if self._canned is None or self._canned[0] is not reply:
                self._canned = (reply, self._completion(reply, reply.text, reply.finish_reason or "stop", {}))
            writer.write(self._canned[1])
            return True
        body = request.body
        text, finish = reply.text, reply.finish_reason or "stop"
        choices = (body.get("structured_outputs") or {}).get("choice")
        if choices:
            text = closest_choice(text, [str(c) for c in choices])
        if reply.completion_tokens is None:
            stop = body.get("stop") or ()
            text, cut = cut_reply(text, [stop] if isinstance(stop, str) else stop, request.max_tokens)
            finish = reply.finish_reason or cut
        if not body.get("stream"):
            writer.write(self._completion(reply, text, finish, body))
            return True
        usage = self._usage(reply, text, body)
        model = self.model
        writer.write(_head(200, None, "text/event-stream"))
        pieces = split_deltas(text)
        logprobs = self._logprobs(reply, text, body)
        for i, piece in enumerate(pieces):
            choice: dict[str, Any] = {"index": 0, "delta": {"content": piece},
                                      "finish_reason": finish if i == len(pieces) - 1 else None}
            if logprobs is not None:  # a token per chunk, the rest with the last: clients concatenate
                choice["logprobs"] = {"content": logprobs[i:] if i == len(pieces) - 1 else logprobs[i:i + 1]}
            chunk = {"model": model, "choices": [choice]}
            writer.write(f"data: {json.dumps(chunk)}\n\n".encode())
        if (body.get("stream_options") or {}).get("include_usage"):
            writer.write(f"data: {json.dumps({'model': model, 'choices': [], 'usage': usage})}\n\n".encode())
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()
        return False


    @staticmethod
    def _logprobs(reply: Reply, text: str, body: dict[str, Any]) -> list[dict[str, Any]] | None:
        if not body.get("logprobs"):
            return None
        pairs = reply.logprobs if reply.logprobs is not None else [(p, 0.0) for p in split_deltas(text)]
        top = int(body.get("top_logprobs") or 0)
        return [{"token": t, "logprob": lp, "top_logprobs": [{"token": t, "logprob": lp}][:top]} for t, lp in pairs]

    def _usage(self, reply: Reply, text: str, body: dict[str, Any]) -> dict[str, Any]:
        prompt = reply.prompt_tokens if reply.prompt_tokens is not None else _count_prompt(body.get("messages") or [])
        completion = reply.completion_tokens if reply.completion_tokens is not None else simple_token_count(text)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
                "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens}}

    def _completion(self, reply: Reply, text: str, finish: str, body: dict[str, Any]) -> bytes:
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text},
                                  "finish_reason": finish}
        logprobs = self._logprobs(reply, text, body)
        if logprobs is not None:
            choice["logprobs"] = {"content": logprobs}
        return _json_response(200, {"id": "chatcmpl-loopback", "object": "chat.completion", "created": 0,
                                    "model": self.model, "choices": [choice],
                                    "usage": self._usage(reply, text, body)})


# -- conformance: RunContext -----------------------------------------------------------------------

ContextFactory = Callable[[LLMClient, ToolRegistry, Mapping[str, float]], AbstractAsyncContextManager[RunContext]]
"""``(llm, tools, limits) -> async context manager of a fresh RunContext for one run``; ``limits``
names tools (units per run) and ``tokens`` (input and output tokens per run)."""

RunContextCheck = Callable[[ContextFactory, bool], Awaitable[None]]


def conformance_tools(ran: list[str] | None = None) -> ToolRegistry:
    """The tools the RunContext suite calls: ``search`` (one ``query`` per call, unit ``query``;
    each query it runs is appended to ``ran``)."""

    async def search(args: dict[str, Any]) -> ToolResult:
        if ran is not None:
            ran.append(args["query"])
        return ToolResult(f"results for {args['query']}")

    spec = ToolSpec("search", "search the corpus", {"type": "object", "properties": {"query": {"type": "string"}},
                                                    "required": ["query"], "additionalProperties": False},
                    unit="query")
    return ToolRegistry([Tool(spec, search)])


LONG_ANSWER = " ".join(f"fact{i}" for i in range(80))


def _ask(text: str) -> list[Message]:
    return [Message("system", "You are terse."), Message("user", text)]


async def _chat_returns_a_response_with_usage(make: ContextFactory, ledger: bool) -> None:
    llm = ScriptedClient(ScriptedConfig(["Paris is the capital."]))
    async with make(llm, conformance_tools(), {}) as ctx:
        response = await ctx.chat(_ask("Capital of France?"), sampling=SamplingOptions(max_tokens=32))
    assert isinstance(response, LLMResponse), f"chat returned {type(response).__name__}, not LLMResponse"
    assert response.text == "Paris is the capital.", f"chat changed the reply: {response.text!r}"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0, f"no usage: {response.usage}"


async def _chat_sends_program_hints_and_sampling(make: ContextFactory, ledger: bool) -> None:
    llm = ScriptedClient(ScriptedConfig(["one", "two"]))
    async with make(llm, conformance_tools(), {}) as ctx:
        await ctx.chat(_ask("first"), sampling=SamplingOptions(max_tokens=7, temperature=0.5))
        await ctx.chat(_ask("second"), tool_name="search", is_last_step=True)
        run_id = ctx.run_id
    first, second = llm.requests
    assert first.sampling.max_tokens == 7 and first.sampling.temperature == 0.5, "sampling options were not passed"
    for request in (first, second):
        assert request.hints is not None and run_id in request.hints.program_id, \
            f"request without this run's program id in its hints: {request.hints}"
    assert second.hints is not None and second.hints.is_last_step and second.hints.tool_name == "search", \
        f"is_last_step/tool_name not in the hints: {second.hints}"


async def _call_tool_runs_the_tool(make: ContextFactory, ledger: bool) -> None:
    ran: list[str] = []
    async with make(ScriptedClient(), conformance_tools(ran), {}) as ctx:
        result = await ctx.call_tool("search", {"query": "eiffel"})
    assert isinstance(result, ToolResult) and not result.is_error, f"tool call failed: {result}"
    assert result.content == "results for eiffel" and ran == ["eiffel"], f"tool not run as asked: {result}, {ran}"


async def _call_tool_unknown_tool_is_an_error_observation(make: ContextFactory, ledger: bool) -> None:
    async with make(ScriptedClient(), conformance_tools(), {}) as ctx:
        result = await ctx.call_tool("no_such_tool", {"x": 1})
    assert result.is_error and not result.metadata.get("refused"), f"unknown tool not an error observation: {result}"
    assert "no_such_tool" in result.content, f"the observation does not name the tool: {result.content!r}"


async def _call_tool_bad_arguments_is_an_error_observation(make: ContextFactory, ledger: bool) -> None:
    ran: list[str] = []
    async with make(ScriptedClient(), conformance_tools(ran), {}) as ctx:
        result = await ctx.call_tool("search", {"q": "eiffel"})
    assert result.is_error and not result.metadata.get("refused"), f"bad arguments not an error observation: {result}"
    assert not ran, "a call with bad arguments reached the tool"


async def _call_tool_refusal_is_marked(make: ContextFactory, ledger: bool) -> None:
    if not ledger:
        return
    ran: list[str] = []
    async with make(ScriptedClient(), conformance_tools(ran), {"search": 1}) as ctx:
        first = await ctx.call_tool("search", {"query": "a"})
        second = await ctx.call_tool("search", {"query": "b"})
    assert not first.is_error, f"a call within the limit failed: {first}"
    assert second.is_error and second.metadata.get("refused") is True, f"over-limit call not refused: {second}"
    assert ran == ["a"], f"a refused call reached the tool: {ran}"


async def _tool_budgets_report_used_units(make: ContextFactory, ledger: bool) -> None:
    async with make(ScriptedClient(), conformance_tools(), {"search": 3}) as ctx:
        before = {v.tool: v for v in await ctx.tool_budgets()}
        await ctx.call_tool("search", {"query": "a"})
        await ctx.call_tool("search", {"query": "b"})
        await ctx.call_tool("search", {"q": "malformed: not charged"})
        after = {v.tool: v for v in await ctx.tool_budgets()}
    assert set(after) == {"search"}, f"tool_budgets lists {sorted(after)}, not the run's tools"
    assert before["search"].used == 0 and after["search"].used == 2, \
        f"used units {before['search'].used} -> {after['search'].used}, expected 0 -> 2"
    assert after["search"].unit == "query", f"unit {after['search'].unit!r}, expected 'query'"
    if ledger:
        assert after["search"].limit == 3 and after["search"].remaining == 1, f"limit not reported: {after['search']}"


async def _token_limit_is_never_passed(make: ContextFactory, ledger: bool) -> None:
    if not ledger:
        return
    llm = ScriptedClient(ScriptedConfig(lambda _messages: LONG_ANSWER))
    used = 0
    async with make(llm, conformance_tools(), {"tokens": 150}) as ctx:
        for _ in range(20):
            try:
                response = await ctx.chat(_ask("Tell me everything."), sampling=SamplingOptions(max_tokens=40))
            except BudgetExhausted as exc:
                assert exc.resource == "tokens", f"refused on {exc.resource!r}, not tokens"
                break
            used += response.usage.total_tokens
        else:
            raise AssertionError("20 calls of up to 50 tokens never ran out of a 150-token budget")
    assert 0 < used <= 150, f"{used} tokens used under a limit of 150"


async def _records_round_trip_and_replace(make: ContextFactory, ledger: bool) -> None:
    async with make(ScriptedClient(), conformance_tools(), {}) as ctx:
        assert await ctx.get_record("votes", "round-1") is None, "a record that was never written is not None"
        await ctx.put_record("votes", "round-1", {"item": [1, 2], "label": "yes"})
        await ctx.put_record("other", "round-1", "kept apart")
        assert await ctx.get_record("votes", "round-1") == {"item": [1, 2], "label": "yes"}, "record not read back"
        await ctx.put_record("votes", "round-1", {"item": [3]})
        assert await ctx.get_record("votes", "round-1") == {"item": [3]}, "writing a key again did not replace it"
        assert await ctx.get_record("other", "round-1") == "kept apart", "namespaces are not kept apart"


async def _record_step_accepts_json_data(make: ContextFactory, ledger: bool) -> None:
    async with make(ScriptedClient(), conformance_tools(), {}) as ctx:
        await ctx.record_step("plan", {"items": ["a", "b"], "n": 2, "ok": True, "none": None})
        await ctx.record_step("plan", {"items": []})


async def _exposes_run_attributes(make: ContextFactory, ledger: bool) -> None:
    llm = ScriptedClient()
    tools = conformance_tools()
    async with make(llm, tools, {}) as ctx:
        assert isinstance(ctx.run_id, str) and ctx.run_id, f"run_id {ctx.run_id!r} is not a non-empty string"
        assert ctx.llm is llm, "ctx.llm is not the client the run was given"
        assert "search" in ctx.tools, "ctx.tools does not hold the run's tools"
        assert isinstance(ctx.config, dict), f"config is {type(ctx.config).__name__}, not dict"
        assert hasattr(ctx, "store"), "no store attribute (None where there is no store)"


RUN_CONTEXT_CHECKS: dict[str, RunContextCheck] = {
    "chat returns an LLMResponse with usage": _chat_returns_a_response_with_usage,
    "chat sends program hints and sampling": _chat_sends_program_hints_and_sampling,
    "call_tool runs the tool": _call_tool_runs_the_tool,
    "call_tool: unknown tool is an error observation": _call_tool_unknown_tool_is_an_error_observation,
    "call_tool: bad arguments are an error observation": _call_tool_bad_arguments_is_an_error_observation,
    "call_tool: over-limit call is refused and marked": _call_tool_refusal_is_marked,
    "tool_budgets report used units": _tool_budgets_report_used_units,
    "token limit is never passed": _token_limit_is_never_passed,
    "put_record/get_record round trip and replace": _records_round_trip_and_replace,
    "record_step accepts JSON data": _record_step_accepts_json_data,
    "run attributes": _exposes_run_attributes,
}
"""Each promise of :class:`~orchestrator.context.RunContext`, by name."""


def check_run_context(make_context: ContextFactory, *, ledger: bool = True) -> list[str]:
    """Run every RunContext check against ``make_context``; returns the names of the checks.

    ``ledger=False`` for a context without a budget ledger (DRQA's direct context): limits are
    neither enforced nor reported there, so those promises are not asked of it. Raises
    AssertionError naming every check that failed. Call it outside an event loop.
    """
    return _run_checks(RUN_CONTEXT_CHECKS, lambda check: check(make_context, ledger), "RunContext")


# -- conformance: LLM clients ----------------------------------------------------------------------

ClientFactory = Callable[[], LLMClient]
"""A fresh client whose replies run past four tokens when asked for a long answer."""

LLMClientCheck = Callable[[ClientFactory], Awaitable[None]]

_LONG = LLMRequest(messages=(Message("system", "You are a helpful assistant."),
                             Message("user", "Count from 1 to 50 in words, separated by commas.")),
                   sampling=SamplingOptions(max_tokens=24), hints=ProgramHints("conformance"))


async def _closing(make: ClientFactory, use: Callable[[LLMClient], Awaitable[Any]]) -> Any:
    client = make()
    try:
        return await use(client)
    finally:
        await client.aclose()


async def _is_an_llm_client(make: ClientFactory) -> None:
    async def use(client: LLMClient) -> None:
        assert isinstance(client, LLMClient), f"{type(client).__name__} lacks part of the LLMClient interface"
        assert isinstance(client.model, str), f"model is {type(client.model).__name__}, not str"

    await _closing(make, use)


async def _complete_returns_text_and_usage(make: ClientFactory) -> None:
    response = await _closing(make, lambda c: c.complete(_LONG))
    assert isinstance(response, LLMResponse), f"complete returned {type(response).__name__}"
    assert isinstance(response.text, str) and response.text, "complete returned no text"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0, f"no usage: {response.usage}"
    assert isinstance(response.model, str) and response.finish_reason, f"model/finish_reason missing: {response}"


async def _max_tokens_bounds_the_output(make: ClientFactory) -> None:
    short = LLMRequest(messages=_LONG.messages, sampling=SamplingOptions(max_tokens=4), hints=_LONG.hints)
    response = await _closing(make, lambda c: c.complete(short))
    assert 0 < response.usage.output_tokens <= 4, f"{response.usage.output_tokens} output tokens for max_tokens=4"
    assert response.finish_reason == "length", f"finish_reason {response.finish_reason!r} for a cut reply"


async def _stream_yields_deltas_then_the_response(make: ClientFactory) -> None:
    async def use(client: LLMClient) -> list[str | LLMResponse]:
        return [item async for item in client.stream(_LONG)]

    *deltas, final = await _closing(make, use)
    assert isinstance(final, LLMResponse), f"the stream's last item is {type(final).__name__}, not LLMResponse"
    assert deltas and all(isinstance(d, str) for d in deltas), "the stream yielded no text deltas"
    assert "".join(deltas) == final.text, "the deltas do not add up to the response text"  # type: ignore[arg-type]
    assert final.usage.output_tokens > 0, f"a streamed response without usage: {final.usage}"


async def _count_tokens_counts(make: ClientFactory) -> None:
    async def use(client: LLMClient) -> tuple[int, int]:
        return client.count_tokens("The capital of France is Paris."), client.count_tokens("Paris. " * 20)

    short, long = await _closing(make, use)
    assert isinstance(short, int) and short > 0, f"count_tokens gave {short!r} for a sentence"
    assert long > short, f"count_tokens: {long} tokens for a longer text than one of {short}"


async def _count_prompt_tokens_is_what_usage_reports(make: ClientFactory) -> None:
    # Optional method: the runtime reserves exactly this count, so usage must not report more.
    async def use(client: LLMClient) -> tuple[int | None, LLMResponse | None]:
        counter = getattr(client, "count_prompt_tokens", None)
        if counter is None:
            return None, None
        counted = await counter(_LONG)
        return counted, (await client.complete(_LONG) if counted is not None else None)

    counted, response = await _closing(make, use)
    if counted is None or response is None:
        return
    assert isinstance(counted, int) and counted > 0, f"count_prompt_tokens gave {counted!r}"
    assert response.usage.input_tokens == counted, \
        f"count_prompt_tokens said {counted}, the call reported {response.usage.input_tokens} input tokens"


_CHOOSE = LLMRequest(messages=(Message("system", "Answer with one word."),
                               Message("user", "Is Paris the capital of France? Answer yes or no.")),
                     sampling=SamplingOptions(max_tokens=8, choices=("yes", "no")), hints=ProgramHints("conformance"))


async def _choices_constrain_the_reply(make: ClientFactory) -> None:
    response = await _closing(make, lambda c: c.complete(_CHOOSE))
    assert response.text in _CHOOSE.sampling.choices, f"a reply constrained to yes/no was {response.text!r}"


_ANY_TEXT = r"[\s\S]*"


async def _regex_is_accepted(make: ClientFactory) -> None:
    # Backends that enforce it (vLLM) and backends that do not (documented) alike answer a request
    # with a regex; one that every reply matches keeps the check true of both.
    asked = replace(_LONG, sampling=replace(_LONG.sampling, max_tokens=6, regex=_ANY_TEXT))
    response = await _closing(make, lambda c: c.complete(asked))
    assert isinstance(response, LLMResponse) and response.text, f"a request with a regex got {response!r}"
    assert re.fullmatch(_ANY_TEXT, response.text), f"the reply {response.text!r} does not match {_ANY_TEXT!r}"


async def _logprobs_are_returned_when_asked(make: ClientFactory) -> None:
    asked = replace(_LONG, sampling=replace(_LONG.sampling, max_tokens=6, logprobs=True, top_logprobs=2))

    async def use(client: LLMClient) -> tuple[LLMResponse, LLMResponse]:
        return await client.complete(asked), await client.complete(_LONG)

    response, plain = await _closing(make, use)
    tokens = response.logprobs
    assert tokens, f"logprobs=True returned {tokens!r}"
    assert all(t.logprob <= 1e-4 for t in tokens), f"a log-probability above 0: {tokens}"
    assert all(1 <= len(t.top_logprobs) <= 2 for t in tokens), "top_logprobs=2 not honoured"
    assert "".join(t.token for t in tokens).strip() in response.text, "the tokens are not the reply's"
    assert plain.logprobs is None, "logprobs returned without being asked for"


async def _aclose_is_idempotent(make: ClientFactory) -> None:
    client = make()
    await client.complete(_LONG)
    await client.aclose()
    await client.aclose()


LLM_CLIENT_CHECKS: dict[str, LLMClientCheck] = {
    "implements LLMClient": _is_an_llm_client,
    "complete returns text and usage": _complete_returns_text_and_usage,
    "max_tokens bounds the output": _max_tokens_bounds_the_output,
    "stream yields deltas then the response": _stream_yields_deltas_then_the_response,
    "count_tokens counts": _count_tokens_counts,
    "count_prompt_tokens is what usage reports": _count_prompt_tokens_is_what_usage_reports,
    "choices constrain the reply": _choices_constrain_the_reply,
    "regex is accepted": _regex_is_accepted,
    "logprobs are returned when asked": _logprobs_are_returned_when_asked,
    "aclose is idempotent": _aclose_is_idempotent,
}
"""Each promise of :class:`~orchestrator.llm.base.LLMClient`, by name."""


def check_llm_client(make_client: ClientFactory, *, make_unreachable: ClientFactory | None = None) -> list[str]:
    """Run every LLMClient check against clients from ``make_client``; returns the check names.

    ``make_unreachable`` (server backends): a client whose server is down; its ``complete`` must
    raise :class:`~orchestrator.errors.EngineUnavailable`. Raises AssertionError naming every
    check that failed. Call it outside an event loop.
    """
    checks: dict[str, Callable[[ClientFactory], Awaitable[None]]] = dict(LLM_CLIENT_CHECKS)
    if make_unreachable is not None:
        unreachable = make_unreachable

        async def down(_make: ClientFactory) -> None:
            try:
                await _closing(unreachable, lambda c: c.complete(_LONG))
            except EngineUnavailable:
                return
            raise AssertionError("complete against a server that is down did not raise EngineUnavailable")

        checks["server down raises EngineUnavailable"] = down
    return _run_checks(checks, lambda check: check(make_client), "LLMClient")


def _run_checks(checks: Mapping[str, Any], run: Callable[[Any], Awaitable[None]], what: str) -> list[str]:
    failed = []
    for name, check in checks.items():
        try:
            asyncio.run(run(check))  # type: ignore[arg-type]
        except Exception as exc:  # every failed check is reported, not only the first
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    if failed:
        raise AssertionError(f"{len(failed)} of {len(checks)} {what} checks failed:\n  " + "\n  ".join(failed))
    return list(checks)


# -- command line ----------------------------------------------------------------------------------

def load_responder(spec: str) -> Responder:
    """``package.module:name`` -> the responder it names (a callable, or a zero-argument factory
    marked by a trailing ``()``)."""
    module, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"responder {spec!r}: expected package.module:name")
    factory = name.endswith("()")
    target = getattr(importlib.import_module(module), name.removesuffix("()"))
    return target() if factory else target  # type: ignore[no-any-return]


async def _serve(server: LoopbackServer) -> None:
    await server.listen()
    print(f"PORT {server.port}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """``serve``: the loopback server in this process until killed (prints ``PORT <n>``)."""
    parser = argparse.ArgumentParser(prog="python -m orchestrator.testing", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="an OpenAI-compatible loopback server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
    serve.add_argument("--responder", default=None,
                       help="package.module:name of a responder (name() for a factory); default: 'hello'")
    serve.add_argument("--model", default="loopback-model", help="the model /v1/models lists")
    serve.add_argument("--no-tokenize", action="store_true", help="answer /tokenize with 404")
    args = parser.parse_args(argv)
    responder: Responder | str = load_responder(args.responder) if args.responder else "hello"
    server = LoopbackServer(responder, model=args.model, host=args.host, port=args.port, record=False,
                            tokenize=not args.no_tokenize)
    try:
        asyncio.run(_serve(server))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
