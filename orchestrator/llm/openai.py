"""The ``openai`` backend: any OpenAI-compatible chat-completions server over httpx (vLLM, remote APIs).

Every request carries the program hints as ``vllm_xargs`` (and ``priority`` when non-zero) so
the serving patch can keep a program's KV cache over its tool call. Requests of one program go
to one endpoint (rendezvous hash of the program id, see :mod:`orchestrator.llm.routing`);
requests without hints round-robin. Retries with exponential backoff and jitter on 429, 5xx and
connection errors; a connection error moves the request to the next endpoint in the program's
order, an overloaded endpoint (429/5xx) is retried in place because it holds the program's cache.

Optional fields a server may not know: a request with ``structured_outputs`` (``choices``,
``regex``) or ``logprobs`` that the server answers HTTP 400 is sent again at once without that
field (``structured_outputs`` first, then ``logprobs``), not counted as a retry. A field whose
removal got the request through is remembered: the client never sends it again, and
:attr:`OpenAIClient.num_rejected` counts per field the requests sent without it (the reply is then
free text, or has no logprobs, which callers already allow for). A 400 that persists without the
fields is the request's own fault and raises :class:`EngineDead` as before.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from orchestrator.errors import ConfigError, EngineDead, EngineUnavailable
from orchestrator.llm.routing import EndpointRouter
from orchestrator.types import LLMRequest, LLMResponse, TokenLogprob, Usage

__all__ = ["OpenAIClient", "OpenAIConfig", "backoff_delay", "parse_logprobs", "parse_usage"]

_RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))

_OPTIONAL_FIELDS: dict[str, tuple[str, ...]] = {
    "structured_outputs": ("structured_outputs",),
    "logprobs": ("logprobs", "top_logprobs"),
}
"""Request fields dropped (in this order) when a server rejects a request with HTTP 400: each
name with the body keys that go with it."""


@dataclass(frozen=True)
class OpenAIConfig:
    """How to reach one or more OpenAI-compatible servers."""

    base_urls: Sequence[str] = ("http://127.0.0.1:8000/v1",)
    """Base URLs up to and including ``/v1`` (a comma-separated string is accepted too)."""
    api_key: str | None = "EMPTY"
    """Sent as ``Authorization: Bearer``; ``None`` or empty sends no header."""
    model: str = ""
    """Model name; empty asks each endpoint's ``/models`` once and uses its first model."""
    timeout_s: float = 300.0
    """Read/write timeout of one attempt (a long generation must fit in it)."""
    connect_timeout_s: float = 5.0
    """Timeout for opening a connection."""
    max_retries: int = 4
    """Retries after the first attempt on 429, 5xx and connection errors (0: no retry)."""
    backoff_base_s: float = 0.5
    """Delay before the first retry; doubled on each further retry."""
    backoff_max_s: float = 8.0
    """Upper bound of one retry delay (also caps a server's ``Retry-After``)."""
    max_connections: int = 1024
    """Connection pool size per client (high concurrency for benchmarks)."""
    http_transport: str = "aiohttp"
    """``aiohttp`` (default): requests go over aiohttp's connection pool
    (:mod:`orchestrator.llm.aiohttp_transport`), which holds up at hundreds of concurrent calls;
    ``httpx``: httpx's own pool (httpcore), several times slower at high concurrency."""
    send_hints: bool = True
    """Send ``vllm_xargs``/``priority``; turn off for servers that reject unknown fields."""
    structured_outputs: bool = True
    """Send a request's ``choices`` or ``regex`` as vLLM's ``structured_outputs: {"choice": [...]}``
    or ``{"regex": ...}``; turn off for servers without it (the reply is then free text, which
    callers match to a choice or check against the regex). A server that answers it HTTP 400
    turns it off for the client by itself (see the module docstring)."""
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    """Extra JSON fields merged into every request body (e.g. ``chat_template_kwargs``); a
    ``seed`` here is a default that a request's own ``SamplingOptions.seed`` overrides."""
    tokenizer: Callable[[str], Sequence[Any] | int] | None = None
    """Exact token counting (e.g. a Hugging Face tokenizer's ``encode``); default: chars/4."""
    seed: int | None = None
    """Seed of the retry jitter (tests); ``None`` draws it from the OS."""
    exact_prompt_tokens: bool = True
    """Ask the server's ``/tokenize`` (vLLM) for the exact prompt size before each call, so the
    budget reserves exactly what the call will use; where a server has none, the runtime reserves
    an upper bound computed from the prompt's bytes instead."""

    def __post_init__(self) -> None:
        urls = self.base_urls
        if isinstance(urls, str):
            urls = urls.split(",")
        urls = tuple(u.strip().rstrip("/") for u in urls if u and u.strip())
        if not urls:
            raise ConfigError("openai backend: no base URL; pass base_urls=['http://host:8000/v1']")
        object.__setattr__(self, "base_urls", urls)
        if self.http_transport not in ("aiohttp", "httpx"):
            raise ConfigError(f"openai backend: http_transport is 'aiohttp' or 'httpx', not {self.http_transport!r}")
        if self.max_retries < 0 or self.timeout_s <= 0 or self.backoff_base_s < 0:
            raise ConfigError("openai backend: max_retries >= 0, timeout_s > 0 and backoff_base_s >= 0 required")


def backoff_delay(retry: int, base_s: float, max_s: float, rng: random.Random,
                  retry_after_s: float | None = None) -> float:
    """Seconds to wait before retry number ``retry`` (0-based): exponential with equal jitter.

    Half of ``base * 2**retry`` (capped at ``max_s``) is fixed and half random, so clients that
    failed together do not come back together. A server's ``Retry-After`` wins, capped at ``max_s``.
    """
    if retry_after_s is not None:
        return min(max(retry_after_s, 0.0), max_s)
    ceiling = min(max_s, base_s * (2.0**retry))
    return ceiling / 2 + rng.random() * ceiling / 2


def parse_usage(raw: Any) -> Usage | None:
    """A :class:`Usage` from an OpenAI ``usage`` object (``None`` when absent)."""
    if not isinstance(raw, dict):
        return None
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=int(raw.get("prompt_tokens") or 0),
        cached_input_tokens=int(prompt_details.get("cached_tokens") or 0),
        output_tokens=int(raw.get("completion_tokens") or 0),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
    )


class _Rejected(Exception):
    """The server answered HTTP 400 to a request that carries an optional field it may not know."""

    def __init__(self, message: str, field_name: str) -> None:
        super().__init__(message)
        self.field_name = field_name
        """The first optional field of the request (:data:`_OPTIONAL_FIELDS`): the one to drop."""


class _Retryable(Exception):
    """One attempt failed in a way a retry may fix."""

    def __init__(self, message: str, retry_after_s: float | None = None, move_on: bool = False) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.move_on = move_on
        """True when the endpoint could not be reached: the next try goes to the next endpoint."""


def parse_logprobs(raw: Any) -> tuple[TokenLogprob, ...] | None:
    """The tokens of an OpenAI ``logprobs`` object (``{"content": [{token, logprob,
    top_logprobs}]}``, a chat choice's or a stream chunk's); None when absent or malformed."""
    content = raw.get("content") if isinstance(raw, dict) else None
    if not isinstance(content, list):
        return None
    try:
        return tuple(
            TokenLogprob(str(t["token"]), float(t["logprob"]),
                         tuple((str(a["token"]), float(a["logprob"])) for a in t.get("top_logprobs") or ()))
            for t in content
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _json_body(body: dict[str, Any]) -> dict[str, Any]:
    """A request body as ASCII JSON: text with lone surrogates (a reply or tool output that had
    invalid UTF-8) travels as ``\\udXXX`` escapes instead of failing to encode."""
    return {"content": json.dumps(body).encode("ascii"), "headers": {"Content-Type": "application/json"}}


def _excerpt(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def parse_completion(endpoint: str, response: httpx.Response) -> tuple[dict[str, Any], dict[str, Any]]:
    """The payload and first choice of a chat completion; EngineDead when it is malformed."""
    try:
        payload = response.json()
        choice = payload["choices"][0]
        if not isinstance(choice.get("message"), dict):
            raise TypeError("choice without a message")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise EngineDead(f"{endpoint}: malformed chat completion: {_excerpt(response.text)}") from exc
    return payload, choice


class OpenAIClient:
    """:class:`~orchestrator.llm.base.LLMClient` over OpenAI-compatible ``/chat/completions``."""

    def __init__(self, config: OpenAIConfig | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config or OpenAIConfig()
        self.model = self.config.model
        self._router = EndpointRouter(self.config.base_urls)
        self._rng = random.Random(self.config.seed)
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        self._timeout = httpx.Timeout(self.config.timeout_s, connect=self.config.connect_timeout_s)
        self._aio: Any = None  # the aiohttp transport when this client made it: non-streaming posts go direct
        if transport is None and self.config.http_transport == "aiohttp":
            from orchestrator.llm.aiohttp_transport import AiohttpTransport

            transport = self._aio = AiohttpTransport(max_connections=self.config.max_connections)
        self._post_headers = {**headers, "Content-Type": "application/json", "Accept": "application/json"}
        self._http = httpx.AsyncClient(
            headers=headers,
            transport=transport,
            timeout=self._timeout,
            limits=httpx.Limits(max_connections=self.config.max_connections,
                                max_keepalive_connections=self.config.max_connections),
        )
        self._models: dict[str, str] = {}
        self._no_tokenize: set[str] = set()  # endpoints without a usable /tokenize
        self._rejected: set[str] = set()
        self.num_rejected: dict[str, int] = dict.fromkeys(_OPTIONAL_FIELDS, 0)
        """Per optional field (``structured_outputs``, ``logprobs``): requests sent without it
        because the server rejected it (HTTP 400); once non-zero, no later request carries it."""

    # -- public API ---------------------------------------------------------------------------

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """Send ``request`` and return the whole response (retried, routed by program)."""
        return await self._with_retries(request, self._complete_once, stream=False)

    async def stream(self, request: LLMRequest) -> AsyncIterator[str | LLMResponse]:
        """Yield text deltas as the server streams them, then the complete :class:`LLMResponse`.

        Retries happen only before the first delta: text already handed out cannot be taken back,
        so a failure after it raises :class:`EngineUnavailable` at once.
        """
        queue: asyncio.Queue[str] = asyncio.Queue()
        started = False

        async def attempt(endpoint: str, body: dict[str, Any]) -> LLMResponse:
            nonlocal started
            result: LLMResponse | None = None
            async for item in self._stream_once(endpoint, body):
                if isinstance(item, LLMResponse):
                    result = item
                else:
                    started = True
                    queue.put_nowait(item)
            assert result is not None
            return result

        task = asyncio.ensure_future(self._with_retries(request, attempt, stream=True, no_retry_after=lambda: started))
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                    continue
                getter.cancel()
                while not queue.empty():
                    yield queue.get_nowait()
                yield task.result()
                return
        finally:
            if not task.done():
                task.cancel()

    def count_tokens(self, text: str) -> int:
        """Exact with the configured tokenizer, else about one token per four characters."""
        tokenizer = self.config.tokenizer
        if tokenizer is None:
            return math.ceil(len(text) / 4)
        counted = tokenizer(text)
        return counted if isinstance(counted, int) else len(counted)

    async def count_prompt_tokens(self, request: LLMRequest) -> int | None:
        """The prompt's exact size from the ``/tokenize`` endpoint of the server the program is
        routed to (vLLM's: chat template applied); None when off or the server has no such
        endpoint (asked once per endpoint) or cannot be reached (the call itself will say so)."""
        if not self.config.exact_prompt_tokens:
            return None
        endpoint = self._router.endpoints[self._router.order(request.hints.program_id if request.hints else None)[0]]
        if endpoint in self._no_tokenize:
            return None
        body = {"messages": [m.to_wire() for m in request.messages], "add_generation_prompt": True}
        if model := request.model or self.config.model or self._models.get(endpoint):
            body["model"] = model
        try:
            response = await self._post(f"{endpoint.removesuffix('/v1')}/tokenize", body)
        except httpx.HTTPError:
            return None
        if response.status_code in (404, 405, 501):
            self._no_tokenize.add(endpoint)
            return None
        try:
            count = response.json()["count"] if response.status_code == 200 else None
        except (ValueError, KeyError, TypeError):
            count = None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return None
        return count

    async def _post(self, url: str, body: dict[str, Any]) -> httpx.Response:
        """POST ``body`` as JSON and read the reply (direct over aiohttp where this client made
        the aiohttp transport, else through the httpx client)."""
        if self._aio is not None:
            return await self._aio.post(url, _json_body(body)["content"], self._post_headers, self._timeout)  # type: ignore[no-any-return]
        return await self._http.post(url, **_json_body(body))

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- one request --------------------------------------------------------------------------

    def _body(self, request: LLMRequest, model: str, stream: bool) -> dict[str, Any]:
        sampling = request.sampling
        body: dict[str, Any] = {
            "model": model,
            "messages": [m.to_wire() for m in request.messages],
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.json_schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "reply", "schema": dict(sampling.json_schema), "strict": True}}
        constrained = bool(sampling.choices) or sampling.regex is not None
        if constrained and self.config.structured_outputs and self._may_send("structured_outputs"):
            body["structured_outputs"] = ({"choice": list(sampling.choices)} if sampling.choices
                                          else {"regex": sampling.regex})
        if sampling.wants_logprobs and self._may_send("logprobs"):
            body["logprobs"] = True
            if sampling.top_logprobs:
                body["top_logprobs"] = sampling.top_logprobs
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if request.hints is not None and self.config.send_hints:
            body["vllm_xargs"] = request.hints.to_xargs()
            if request.hints.priority:
                body["priority"] = request.hints.priority
        body.update(self.config.extra_body)
        if sampling.seed is not None:  # a request's own seed wins over a client-wide one
            body["seed"] = sampling.seed
        return body

    def _may_send(self, field_name: str) -> bool:
        """Whether the server takes this optional field; a body left without it is counted."""
        if field_name in self._rejected:
            self.num_rejected[field_name] += 1
            return False
        return True

    async def _model_for(self, endpoint: str, request: LLMRequest) -> str:
        if request.model or self.config.model:
            return request.model or self.config.model
        if endpoint not in self._models:
            try:
                response = await self._http.get(f"{endpoint}/models")
            except httpx.TransportError as exc:
                raise _Retryable(f"{endpoint}: {type(exc).__name__}: {exc}", move_on=True) from exc
            self._check_status(endpoint, response)
            try:
                self._models[endpoint] = response.json()["data"][0]["id"]
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise EngineDead(f"{endpoint}/models lists no model; pass model=... explicitly") from exc
            if not self.model:
                self.model = self._models[endpoint]
        return self._models[endpoint]

    async def _with_retries(self, request: LLMRequest, attempt: Callable[[str, dict[str, Any]], Any], *,
                            stream: bool, no_retry_after: Callable[[], bool] = lambda: False) -> LLMResponse:
        order = self._router.order(request.hints.program_id if request.hints else None)
        position = 0
        failures: list[str] = []
        for retry in range(self.config.max_retries + 1):
            endpoint = self.config.base_urls[order[position % len(order)]]
            try:
                model = await self._model_for(endpoint, request)
                return await self._without_rejected(endpoint, self._body(request, model, stream=stream), attempt)
            except _Retryable as exc:
                failures.append(str(exc))
                if no_retry_after() or retry == self.config.max_retries:
                    break
                if exc.move_on:
                    position += 1
                await asyncio.sleep(backoff_delay(retry, self.config.backoff_base_s, self.config.backoff_max_s,
                                                  self._rng, exc.retry_after_s))
        distinct = list(dict.fromkeys(failures))  # the same refusal three times is said once
        raise EngineUnavailable(
            f"LLM server unavailable after {len(failures)} attempt(s) ({'; '.join(distinct[-3:])}); "
            f"check that the server at {', '.join(self.config.base_urls)} is running and not overloaded"
        )

    async def _without_rejected(self, endpoint: str, body: dict[str, Any],
                                attempt: Callable[[str, dict[str, Any]], Any]) -> LLMResponse:
        """``attempt``, sent again without each optional field in turn while the server answers
        HTTP 400; the fields whose removal got the request through are never sent again."""
        dropped: list[str] = []
        while True:
            try:
                response: LLMResponse = await attempt(endpoint, body)
            except _Rejected as exc:
                dropped.append(exc.field_name)
                body = {k: v for k, v in body.items() if k not in _OPTIONAL_FIELDS[exc.field_name]}
                continue
            for name in dropped:
                self._rejected.add(name)
                self.num_rejected[name] += 1
            return response

    def _check_status(self, endpoint: str, response: httpx.Response, body: Mapping[str, Any] | None = None) -> None:
        if response.status_code < 400:
            return
        detail = f"{endpoint}: HTTP {response.status_code} {_excerpt(response.text)}"
        if response.status_code in _RETRYABLE_STATUS:
            raise _Retryable(detail, _retry_after(response))
        optional = next((name for name, keys in _OPTIONAL_FIELDS.items() if keys[0] in (body or ())), None)
        if response.status_code == 400 and optional is not None:
            raise _Rejected(detail, optional)
        raise EngineDead(f"LLM server rejected the request ({detail}); fix the request or the model name")

    async def _complete_once(self, endpoint: str, body: dict[str, Any]) -> LLMResponse:
        started = time.perf_counter()
        try:
            response = await self._post(f"{endpoint}/chat/completions", body)
        except httpx.TransportError as exc:
            raise _Retryable(f"{endpoint}: {type(exc).__name__}: {exc}",
                             move_on=isinstance(exc, httpx.ConnectError)) from exc
        except httpx.HTTPError as exc:
            raise EngineDead(f"{endpoint}: {type(exc).__name__}: {exc}") from exc
        self._check_status(endpoint, response, body)
        payload, choice = parse_completion(endpoint, response)
        text = choice["message"].get("content") or ""
        finish = choice.get("finish_reason") or "stop"
        usage = parse_usage(payload.get("usage")) or self._estimate_usage(body, text)
        return LLMResponse(text=text, usage=usage, model=payload.get("model") or body["model"],
                           finish_reason=finish, latency_s=time.perf_counter() - started, endpoint=endpoint,
                           logprobs=parse_logprobs(choice.get("logprobs")) if body.get("logprobs") else None)

    async def _stream_once(self, endpoint: str, body: dict[str, Any]) -> AsyncIterator[str | LLMResponse]:
        started = time.perf_counter()
        parts: list[str] = []
        usage: Usage | None = None
        finish = "stop"
        model = body["model"]
        tokens: list[TokenLogprob] | None = [] if body.get("logprobs") else None
        try:
            async with self._http.stream("POST", f"{endpoint}/chat/completions", **_json_body(body)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self._check_status(endpoint, response, body)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                        model = chunk.get("model") or model
                        usage = parse_usage(chunk.get("usage")) or usage
                        for choice in chunk.get("choices") or ():
                            delta = (choice.get("delta") or {}).get("content")
                            finish = choice.get("finish_reason") or finish
                            if tokens is not None:
                                tokens.extend(parse_logprobs(choice.get("logprobs")) or ())
                            if delta:
                                parts.append(delta)
                                yield delta
                    except (ValueError, TypeError, AttributeError) as exc:
                        raise EngineDead(f"{endpoint}: malformed stream chunk: {_excerpt(data)}") from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"{endpoint}: {type(exc).__name__}: {exc}",
                             move_on=isinstance(exc, httpx.ConnectError)) from exc
        except httpx.HTTPError as exc:
            raise EngineDead(f"{endpoint}: {type(exc).__name__}: {exc}") from exc
        text = "".join(parts)
        yield LLMResponse(text=text, usage=usage or self._estimate_usage(body, text), model=model,
                          finish_reason=finish, latency_s=time.perf_counter() - started, endpoint=endpoint,
                          logprobs=tuple(tokens) if tokens is not None else None)

    def _estimate_usage(self, body: dict[str, Any], text: str) -> Usage:
        # Servers that report no usage still get charged: estimate from the wire text.
        prompt = "".join(m["content"] for m in body["messages"])
        return Usage(input_tokens=self.count_tokens(prompt), output_tokens=self.count_tokens(text))
