"""A deterministic simulated solver, for control-flow tests and the benchmark's --dry-run: a script
for the kit's scripted LLM (:mod:`orchestrator.llm.scripted`), which cuts, counts and streams
its replies like every other scripted reply (a word of working is one token).

Questions look like ``"What is A plus B? [steps=S]"``. The simulated model needs ``S * 30``
words of working to reach the answer; cut at ``max_tokens`` (finish_reason ``length``) it has no
answer, and a forced answer after a cut is right when at least half the working was written. In
batch mode it writes ``2 * S`` words of working, states high confidence on easy questions, and it
answers quick prompts right only when ``S <= 2``. Not a quality figure: it exercises the
allocation path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from orchestrator.llm.scripted import ScriptedClient, ScriptedConfig
from orchestrator.types import Message

__all__ = ["make_rows", "sim_client", "sim_reply"]

_Q_RE = re.compile(r"What is (\d+) plus (\d+)\? \[steps=(\d+)\]")


def make_rows(steps: list[int]) -> list[dict[str, str]]:
    return [
        {"id": f"q{i}", "question": f"What is {i} plus {10 * i}? [steps={s}]", "answer": str(11 * i)}
        for i, s in enumerate(steps)
    ]


def sim_client() -> ScriptedClient:
    """The scripted LLM playing :func:`sim_reply` (model ``sim``)."""
    return ScriptedClient(ScriptedConfig(sim_reply, model="sim"))


def sim_reply(messages: Sequence[Message]) -> str:
    """The simulated model's whole reply to ``messages`` (the client cuts it at ``max_tokens``)."""
    user = [m for m in messages if m.role == "user"]
    # The question's own message (a 'brief' solve shows worked examples before it).
    prompt = next((m.content for m in user if _Q_RE.search(m.content) or "[Q1]" in m.content), user[0].content)
    if "[Q1]" in prompt:
        return _probe(prompt)
    a, b, steps = (int(x) for x in _Q_RE.search(prompt).groups())  # type: ignore[union-attr]
    if "final answer only" in prompt:
        return f"Answer: {a + b if steps <= 2 else a + b + 1}"
    need = steps * 30
    if len(user) > 1 and "budget for this question is used up" in user[-1].content:
        # Forced answer: right when at least half the working was done, else a guess.
        done = len(messages[-2].content.split())
        return f"#### {a + b if 2 * done >= need else a + b + 1}"
    if len(user) > 1 and "cut off" in user[-1].content:
        done = len(messages[-2].content.split())
        need = max(need - done, 1)
    return " ".join(["step"] * need) + f"\n#### {a + b}"


def _probe(prompt: str) -> str:
    blocks = []
    for n, (a, b, steps) in enumerate(_Q_RE.findall(prompt), start=1):
        s = int(steps)
        work = " ".join(["w"] * (2 * s))
        conf = 95 if s <= 2 else 40
        blocks.append(f"[Q{n}]\nReasoning: {work}\nAnswer: {int(a) + int(b)}\nConfidence: {conf}")
    return "\n".join(blocks)
