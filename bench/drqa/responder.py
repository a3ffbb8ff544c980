"""An OpenAI-compatible stand-in for the DRQA benchmark's CPU end-to-end check (no model): a
responder for the kit's loopback server (:class:`orchestrator.testing.LoopbackServer`).

A solve prompt gets working whose length depends on the question (one token per word, cut at
``max_tokens`` with ``finish_reason: length``) and a ``#### N`` line; a batch-mode probe gets
``[Qn]`` blocks; a forced-answer cue gets a ``#### N`` line; the answers are deterministic
guesses, not quality. Its usage is fixed (100 prompt tokens), so the server has no ``/tokenize``::

    python -m orchestrator.testing serve --port 0 --model fake-drqa --no-tokenize \\
        --responder bench.drqa.responder:respond     # prints "PORT <n>" once listening
"""

from __future__ import annotations

import hashlib
import re

from orchestrator.testing import ChatRequest, Reply

MODEL = "fake-drqa"


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def reply(messages: list[dict[str, str]], max_tokens: int) -> tuple[str, str]:
    """(text, finish_reason) for one chat request."""
    users = [m["content"] for m in messages if m["role"] == "user"]
    first, last = users[0], users[-1]
    if "used up" in last:
        return f"#### {_h(first) % 60}", "stop"
    if "[Q1]" in first:
        count = re.search(r"Answer all (\d+) questions", first)
        n = int(count.group(1)) if count else 1
        text = "\n".join(f"[Q{i}]\nReasoning: {' '.join(['w'] * (5 + _h(first + str(i)) % 40))}\n"
                         f"Answer: {_h(first + str(i)) % 60}\nConfidence: {50 + _h(str(i) + first) % 50}"
                         for i in range(1, n + 1))
    elif "final answer only" in last:
        text = f"Answer: {_h(first) % 60}"
    else:
        text = " ".join(["step"] * (40 + _h(last) % 400)) + f"\n#### {_h(first) % 60}"
    words = text.split(" ")
    if len(words) > max_tokens:
        return " ".join(words[:max_tokens]), "length"
    return text, "stop"


def respond(request: ChatRequest) -> Reply:
    """:func:`reply` with its usage: 100 prompt tokens, one completion token per word."""
    text, finish = reply(request.messages, request.max_tokens or 256)
    return Reply(text, finish_reason=finish, prompt_tokens=100, completion_tokens=len(text.split(" ")))
