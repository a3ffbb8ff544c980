"""An OpenAI-compatible stand-in for the DRQA benchmark's CPU end-to-end check (no model).

``POST /v1/chat/completions`` answers like a small model would in shape: a solve prompt gets
working whose length depends on the question (one token per word, cut at ``max_tokens`` with
``finish_reason: length``) and a ``#### N`` line; a batch-mode probe gets ``[Qn]`` blocks; a
forced-answer cue gets a ``#### N`` line; the answers are deterministic guesses, not quality.
``GET /v1/models`` lists one model. Plain asyncio streams, HTTP/1.1 keep-alive:

    python bench/drqa/fake_server.py --port 0     # prints "PORT <n>" once listening
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import fake_http
from bench.fake_http import NOT_FOUND, response

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


def handle(method: bytes, path: bytes, body: bytes) -> bytes:
    """Chat completions from :func:`reply`; the model list; 404 otherwise."""
    if method == b"POST" and path.endswith(b"/chat/completions"):
        req = json.loads(body)
        text, finish = reply(req["messages"], int(req.get("max_tokens") or 256))
        out = {"id": "x", "object": "chat.completion", "created": 0, "model": MODEL,
               "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                            "finish_reason": finish}],
               "usage": {"prompt_tokens": 100, "completion_tokens": len(text.split(" ")),
                         "total_tokens": 100 + len(text.split(" "))}}
        return response("200 OK", json.dumps(out).encode())
    if method == b"GET" and path.endswith(b"/models"):
        return response("200 OK", json.dumps({"object": "list", "data": [{"id": MODEL}]}).encode())
    return NOT_FOUND


def main(argv: list[str] | None = None) -> None:
    fake_http.main(handle, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
