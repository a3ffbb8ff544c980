"""The HTTP/1.1 keep-alive loop the benchmarks' fake OpenAI servers share (plain asyncio streams).

A fake supplies ``handle(method, path, body) -> bytes`` (a whole response, see :func:`response`);
this module reads requests off each connection, calls it, and writes the replies. No framework, so
a fake costs little CPU and the same for every client.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

Handler = Callable[[bytes, bytes, bytes], bytes]
"""(method, path, body) -> the full HTTP response."""


def response(status: str, body: bytes) -> bytes:
    """An HTTP/1.1 keep-alive response with a JSON body."""
    head = (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: keep-alive\r\n\r\n")
    return head.encode() + body


NOT_FOUND = response("404 Not Found", b'{"error": "not found"}')


def _connection_handler(handle: Handler) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], object]:
    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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
                body = await reader.readexactly(length) if length else b""
                writer.write(handle(method, path, body))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    return on_connection


async def serve(host: str, port: int, handle: Handler) -> None:
    """Serve until cancelled; prints ``PORT <n>`` once listening (``port`` 0 picks a free one)."""
    server = await asyncio.start_server(_connection_handler(handle), host, port, backlog=4096)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main(handle: Handler, description: str, argv: list[str] | None = None) -> None:
    """``--host``/``--port`` command line around :func:`serve`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.host, args.port, handle))
    except KeyboardInterrupt:
        sys.exit(0)
