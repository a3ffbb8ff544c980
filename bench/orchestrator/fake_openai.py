"""A minimal OpenAI-compatible server for the overhead benchmark: instant canned replies.

HTTP/1.1 with keep-alive over plain asyncio streams (no framework, so the server costs as little
CPU as possible and the same for every client). ``POST .../chat/completions`` answers with one
fixed assistant message and a fixed ``usage``; ``GET .../models`` lists one model; anything else
is a 404. Run it in its own process so it does not share the benchmark's event loop:

    python bench/orchestrator/fake_openai.py --port 0     # prints "PORT <n>" once listening
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import fake_http
from bench.fake_http import NOT_FOUND, response

MODEL = "bench-model"
REPLY_TEXT = "search: capital of France"
PROMPT_TOKENS = 120
COMPLETION_TOKENS = 6

_COMPLETION = json.dumps({
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 0,
    "model": MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY_TEXT}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
              "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS, "prompt_tokens_details": {"cached_tokens": 0}},
}).encode()
_MODELS = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode()


_RESPONSES = {
    "chat": response("200 OK", _COMPLETION),
    "models": response("200 OK", _MODELS),
}


def handle(method: bytes, path: bytes, body: bytes) -> bytes:
    """Canned replies: the same bytes for every chat request."""
    if method == b"POST" and path.endswith(b"/chat/completions"):
        return _RESPONSES["chat"]
    if method == b"GET" and path.endswith(b"/models"):
        return _RESPONSES["models"]
    return NOT_FOUND


def main(argv: list[str] | None = None) -> None:
    fake_http.main(handle, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
