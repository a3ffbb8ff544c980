"""The overhead benchmark's model: an instant canned reply with a fixed ``usage``, served by the
kit's loopback server in a process of its own (so it does not share the benchmark's event loop)::

    python -m orchestrator.testing serve --port 0 --model bench-model --no-tokenize \\
        --responder bench.orchestrator.responder:canned     # prints "PORT <n>" once listening

The usage is fixed, so the server answers ``/tokenize`` with 404 (clients then reserve an upper
bound instead of a count that would disagree with the reported usage).
"""

from __future__ import annotations

from orchestrator.testing import ChatRequest, Reply

MODEL = "bench-model"
REPLY_TEXT = "search: capital of France"
PROMPT_TOKENS = 120
COMPLETION_TOKENS = 6

_REPLY = Reply(REPLY_TEXT, prompt_tokens=PROMPT_TOKENS, completion_tokens=COMPLETION_TOKENS)


def canned(_request: ChatRequest) -> Reply:
    """The same reply to every chat request."""
    return _REPLY
