"""Two loopback OpenAI-compatible servers (the kit's) whose replies a test scripts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from orchestrator.testing import ChatRequest, LoopbackServer, Reply


@dataclass
class Behaviour:
    """What a server answers: the HTTP statuses in ``failures`` first, one per chat request, then
    ``reply`` (default ``hello from <name>``), after an hour when ``hang`` is set."""

    name: str
    failures: list[int] = field(default_factory=list)
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    reply: str = ""
    hang: bool = False

    def __call__(self, request: ChatRequest) -> Reply:
        if self.failures:
            return Reply(status=self.failures.pop(0))
        return Reply(self.reply or f"hello from {self.name}", cached_tokens=self.cached_tokens,
                     reasoning_tokens=self.reasoning_tokens, delay_s=3600.0 if self.hang else 0.0)


def behaviour(server: LoopbackServer) -> Behaviour:
    """The script of a server from :func:`servers`."""
    assert isinstance(server.responder, Behaviour)
    return server.responder


@pytest.fixture
def servers() -> Iterator[list[LoopbackServer]]:
    """Two independent servers, ``a`` and ``b`` (models ``model-a`` and ``model-b``)."""
    started = [LoopbackServer(Behaviour(name), model=f"model-{name}").start() for name in ("a", "b")]
    yield started
    for server in started:
        server.stop()
