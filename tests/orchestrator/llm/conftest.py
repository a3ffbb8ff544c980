"""A tiny OpenAI-compatible HTTP server on loopback that records what it receives."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class FakeOpenAIServer:
    """Answers ``/v1/chat/completions`` (plain and SSE) and ``/v1/models``.

    ``failures`` is a list of HTTP statuses returned, one per chat request, before it succeeds.
    ``cached_tokens`` is reported in ``usage.prompt_tokens_details``.
    """

    name: str
    failures: list[int] = field(default_factory=list)
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    reply: str = ""
    hang: threading.Event | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def chat_bodies(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["path"].endswith("/chat/completions")]

    def start(self) -> FakeOpenAIServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send_json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                server.requests.append({"path": self.path, "headers": dict(self.headers), "body": None})
                self._send_json(200, {"object": "list", "data": [{"id": f"model-{server.name}"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if server.failures:
                    status = server.failures.pop(0)
                    self._send_json(status, {"error": {"message": f"injected {status}"}})
                    return
                if server.hang is not None:
                    server.hang.wait()
                text = server.reply or f"hello from {server.name}"
                prompt = sum(len(m["content"].split()) for m in body["messages"])
                usage = {
                    "prompt_tokens": prompt,
                    "completion_tokens": len(text.split()),
                    "total_tokens": prompt + len(text.split()),
                    "prompt_tokens_details": {"cached_tokens": server.cached_tokens},
                    "completion_tokens_details": {"reasoning_tokens": server.reasoning_tokens},
                }
                if not body.get("stream"):
                    self._send_json(200, {
                        "id": "c1", "object": "chat.completion", "model": body["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                     "finish_reason": "stop"}],
                        "usage": usage,
                    })
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                words = text.split(" ")
                for i, word in enumerate(words):
                    delta = word if i == 0 else " " + word
                    chunk = {"model": body["model"], "choices": [
                        {"index": 0, "delta": {"content": delta},
                         "finish_reason": "stop" if i == len(words) - 1 else None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                if (body.get("stream_options") or {}).get("include_usage"):
                    final = {"model": body["model"], "choices": [], "usage": usage}
                    self.wfile.write(f"data: {json.dumps(final)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.hang is not None:
            self.hang.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def fake_servers() -> Iterator[list[FakeOpenAIServer]]:
    """Two independent fake servers, ``a`` and ``b``."""
    servers = [FakeOpenAIServer("a").start(), FakeOpenAIServer("b").start()]
    yield servers
    for s in servers:
        s.stop()


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
