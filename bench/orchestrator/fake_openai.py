"""A minimal OpenAI-compatible server for the overhead benchmark: instant canned replies.

HTTP/1.1 with keep-alive over plain asyncio streams (no framework, so the server costs as little
CPU as possible and the same for every client). ``POST .../chat/completions`` answers with one
fixed assistant message and a fixed ``usage``; ``GET .../models`` lists one model; anything else
is a 404. Run it in its own process so it does not share the benchmark's event loop:

    python bench/orchestrator/fake_openai.py --port 0     # prints "PORT <n>" once listening
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

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
_NOT_FOUND = b'{"error": "not found"}'


def _response(status: str, body: bytes) -> bytes:
    head = (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: keep-alive\r\n\r\n")
    return head.encode() + body


_RESPONSES = {
    "chat": _response("200 OK", _COMPLETION),
    "models": _response("200 OK", _MODELS),
    "missing": _response("404 Not Found", _NOT_FOUND),
}


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.split(b"\r\n")
            method, path, _ = lines[0].split(b" ", 2)
            length = 0
            for line in lines[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:].strip())
            if length:
                await reader.readexactly(length)
            if method == b"POST" and path.endswith(b"/chat/completions"):
                writer.write(_RESPONSES["chat"])
            elif method == b"GET" and path.endswith(b"/models"):
                writer.write(_RESPONSES["models"])
            else:
                writer.write(_RESPONSES["missing"])
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def serve(host: str, port: int) -> None:
    server = await asyncio.start_server(_handle, host, port, backlog=4096)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
