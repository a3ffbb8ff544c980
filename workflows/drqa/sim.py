"""A deterministic simulated solver, for control-flow tests and the benchmark's --dry-run.

Questions look like ``"What is A plus B? [steps=S]"``. The simulated model needs ``S * 30``
tokens of working to reach the answer; it honours ``max_tokens`` (finish_reason ``length``
with no answer when cut; a forced answer after a cut is right when at least half the working
was written), writes shorter working for easy questions in batch mode, states
high confidence on easy ones, and answers quick prompts right only when ``S <= 2``.
One output token = one word. Not a quality figure: it exercises the allocation path.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from orchestrator.types import LLMRequest, LLMResponse, Usage

_Q_RE = re.compile(r"What is (\d+) plus (\d+)\? \[steps=(\d+)\]")


def make_rows(steps: list[int]) -> list[dict[str, str]]:
    return [
        {"id": f"q{i}", "question": f"What is {i} plus {10 * i}? [steps={s}]", "answer": str(11 * i)}
        for i, s in enumerate(steps)
    ]


class SimSolver:
    model = "sim"

    def __init__(self) -> None:
        self.requests: list[LLMRequest] = []
        self.output_tokens = 0

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def aclose(self) -> None:
        return None

    def stream(self, request: LLMRequest) -> AsyncIterator[str | LLMResponse]:
        raise NotImplementedError

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        user = [m for m in request.messages if m.role == "user"]
        # The question's own message (a 'brief' solve shows worked examples before it).
        prompt = next((m.content for m in user if _Q_RE.search(m.content) or "[Q1]" in m.content), user[0].content)
        cap = request.sampling.max_tokens
        if "[Q1]" in prompt:
            return self._probe(prompt, cap)
        a, b, steps = (int(x) for x in _Q_RE.search(prompt).groups())  # type: ignore[union-attr]
        if "final answer only" in prompt:
            answer = a + b if steps <= 2 else a + b + 1
            return self._reply(f"Answer: {answer}", cap)
        need = steps * 30
        if len(user) > 1 and "budget for this question is used up" in user[-1].content:
            # Forced answer: right when at least half the working was done, else a guess.
            done = len(request.messages[-2].content.split())
            return self._reply(f"#### {a + b if 2 * done >= need else a + b + 1}", cap)
        if len(user) > 1 and "cut off" in user[-1].content:
            done = len(request.messages[-2].content.split())
            need = max(need - done, 1)
        return self._reply(" ".join(["step"] * need) + f"\n#### {a + b}", cap)

    def _probe(self, prompt: str, cap: int) -> LLMResponse:
        blocks = []
        for n, (a, b, steps) in enumerate(_Q_RE.findall(prompt), start=1):
            s = int(steps)
            work = " ".join(["w"] * (3 * s))
            conf = 95 if s <= 2 else 40
            blocks.append(f"[Q{n}]\nReasoning: {work}\nAnswer: {int(a) + int(b)}\nConfidence: {conf}")
        return self._reply("\n".join(blocks), cap)

    def _reply(self, text: str, cap: int) -> LLMResponse:
        if len(text.split()) > cap:
            self.output_tokens += cap
            cut = " ".join(text.split(" ")[:cap])
            return LLMResponse(cut, Usage(input_tokens=50, output_tokens=cap), self.model, "length")
        self.output_tokens += len(text.split())
        return LLMResponse(text, Usage(input_tokens=50, output_tokens=len(text.split())), self.model, "stop")
