"""A served model for the BATS benchmark's end-to-end test: a responder for the kit's loopback
OpenAI-compatible server (:class:`orchestrator.testing.LoopbackServer`).

It plays every role by the system prompt: planner (its reply comes back as cut, finish reason
"length"), verifier (valid JSON only when the request carries ``response_format`` json_schema,
otherwise prose, so the structured-output path is observable), judge, the reading call (a long
sentence naming the first search hit, so the extraction step has work), answer extraction, and
an agent that searches once, browses the first hit and then answers with a long sentence.
Questions containing ``hang_marker`` get their agent reply only after an hour (to exercise the
time limit).

Serve it by hand: ``python -m orchestrator.testing serve --port 8000 --responder
tests.workflows.bats.served_model:BatsModel()``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from orchestrator.testing import ChatRequest, Reply
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
class BatsModel:
    """The responder: one reply per chat request, by the role its system prompt names."""

    hang_marker: str | None = None

    def __call__(self, request: ChatRequest) -> Reply:
        messages = request.messages
        system = messages[0]["content"]
        if system == prompts.PLANNER_SYSTEM:
            # Sent as cut at max_tokens: the benchmark's cut-reply accounting has a known call to count.
            return Reply("explore: the entity in the question\nverify: the answer fits", finish_reason="length")
        if system == prompts.VERIFIER_SYSTEM:
            if request.body.get("response_format", {}).get("type") == "json_schema":
                return Reply(json.dumps({"verdicts": ["satisfied", "satisfied"], "decision": "SUCCESS",
                                         "justification": "fake", "summary": "fake"}))
            return Reply("The answer looks right to me.")
        if system == prompts.JUDGE_SYSTEM:
            return Reply("1")
        if system == prompts.READ_SYSTEM:
            # The reader names the first page title among the results (long, so extraction has work).
            titles = re.findall(r"^\s*1\. (.+?) <wiki://", messages[-1]["content"], re.MULTILINE)
            return Reply(f"{titles[0] if titles else 'unknown'} is the answer according to the results")
        if system == prompts.EXTRACT_SYSTEM:
            long = messages[-1]["content"].split("Long answer: ", 1)[-1]
            return Reply(long.split(" is the answer")[0])
        hang = bool(self.hang_marker) and any(self.hang_marker in m["content"] for m in messages[1:])
        return Reply(_agent_reply(messages), delay_s=3600.0 if hang else 0.0)
