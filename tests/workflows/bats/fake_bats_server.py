"""An OpenAI-compatible fake of a served model for the BATS benchmark (loopback HTTP, stdlib).

It plays every role by the system prompt: planner, verifier (valid JSON only when the request
carries ``response_format`` json_schema, otherwise prose, so the structured-output path is
observable), judge, answer extraction, and an agent that searches once, browses the first hit
and then answers with a long sentence (so the extraction step has work). Questions containing
``hang_marker`` never get an agent reply until the server stops (to exercise the time limit).

Run by hand: ``python tests/workflows/bats/fake_bats_server.py PORT`` serves until killed.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from workflows.bats import prompts

_URL = re.compile(r"<(wiki://[^>]+)>")


def _agent_reply(messages: list[dict[str, Any]]) -> str:
    demo_q = prompts.DEMO_QUESTION
    heads = [i for i, m in enumerate(messages) if m["role"] == "user" and m["content"].startswith("Question:")
             and not m["content"].startswith(demo_q)]
    start = heads[-1] if heads else 1
    question = messages[start]["content"].splitlines()[0].removeprefix("Question: ")
    observations = [m["content"] for m in messages[start:] if m["role"] == "user"
                    and m["content"].startswith("Observation from")]
    if not observations:
        return f"search: {question}"
    if len(observations) == 1 and (m := _URL.search(observations[0])):
        return f"browse: {m.group(1)}"
    titles = re.findall(r"^# (.+)$", observations[-1], re.MULTILINE)
    title = titles[0] if titles else "unknown"
    return f"answer: {title} is the answer according to the page that I read just now"


@dataclass
class FakeBatsServer:
    model: str = "qwen2.5-coder-0.5b"
    hang_marker: str | None = None
    bodies: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def reply(self, body: dict[str, Any]) -> str:
        messages = body["messages"]
        system = messages[0]["content"]
        if system == prompts.PLANNER_SYSTEM:
            return "explore: the entity in the question\nverify: the answer fits"
        if system == prompts.VERIFIER_SYSTEM:
            if body.get("response_format", {}).get("type") == "json_schema":
                return json.dumps({"verdicts": ["satisfied", "satisfied"], "decision": "SUCCESS",
                                   "justification": "fake", "summary": "fake"})
            return "The answer looks right to me."
        if system == prompts.JUDGE_SYSTEM:
            return "1"
        if system == prompts.EXTRACT_SYSTEM:
            long = messages[-1]["content"].split("Long answer: ", 1)[-1]
            return long.split(" is the answer")[0]
        if self.hang_marker and any(self.hang_marker in m["content"] for m in messages[1:]):
            self.release.wait()
        return _agent_reply(messages)

    def start(self, port: int = 0) -> FakeBatsServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send({"object": "list", "data": [{"id": server.model}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bodies.append(body)
                text = server.reply(body)
                for stop in body.get("stop", []):
                    if stop in text:
                        text = text[: text.index(stop)]
                prompt = sum(len(m["content"]) // 4 for m in body["messages"])
                usage = {"prompt_tokens": prompt, "completion_tokens": max(len(text) // 4, 1),
                         "total_tokens": prompt + max(len(text) // 4, 1),
                         "prompt_tokens_details": {"cached_tokens": prompt // 2}}
                self._send({"id": "x", "object": "chat.completion", "model": server.model, "usage": usage,
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": text}}]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


if __name__ == "__main__":
    srv = FakeBatsServer(model=sys.argv[2] if len(sys.argv) > 2 else "qwen2.5-coder-0.5b").start(int(sys.argv[1]))
    print(srv.base_url, flush=True)
    threading.Event().wait()
