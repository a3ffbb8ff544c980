"""A deterministic stand-in model that answers BatchPrompt calls (control-flow tests, dry runs).

It reads the numbered items out of the last user message, looks up each item's gold label and
answers in the wire format, with faults chosen by a hash of (item, position, batch length) so
they move when a permutation moves the item: wrong answers, not-confident marks, and answers lost
past a given position (what small models do at large batch sizes). Never a source of quality
figures: it knows the gold labels.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import AsyncIterator, Sequence

from orchestrator.types import LLMRequest, LLMResponse, Usage
from workflows.batchprompt.prompt import CONFIDENT, NOT_CONFIDENT, render_inputs
from workflows.batchprompt.tasks import Item, TaskSpec

__all__ = ["ScriptedLabeler"]

_BLOCK = re.compile(r"^\[(\d+)\] (.*)$", re.DOTALL)


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class ScriptedLabeler:
    """An :class:`~orchestrator.llm.base.LLMClient` that labels from the gold answers.

    error_rate: share of answers flipped to another label (hash of item, position, batch length).
    unsure_rate: share of answers marked not confident (wrong answers are always not confident).
    max_answers: answer only positions up to this number (``None``: all).
    chatter: wrap the answers in a sentence before and after, as chatty models do.
    logprobs: return :class:`~workflows.batchprompt.engine.LogprobResponse` with one token per
    word; a label token has probability 0.99 when its answer is confident, else 0.6.
    """

    def __init__(
        self,
        task: TaskSpec,
        items: Sequence[Item],
        *,
        error_rate: float = 0.0,
        unsure_rate: float = 0.0,
        max_answers: int | None = None,
        chatter: bool = False,
        model: str = "scripted-labeler",
        logprobs: bool = False,
    ) -> None:
        self.logprobs = logprobs
        self.model = model
        self.task = task
        self._gold = {render_inputs(task, item.inputs): item.gold or task.fallback_label for item in items}
        self.error_rate = error_rate
        self.unsure_rate = unsure_rate
        self.max_answers = max_answers
        self.chatter = chatter
        self.requests: list[LLMRequest] = []
        """Every request received, in arrival order."""

    def count_tokens(self, text: str) -> int:
        """About four characters a token, like English text under common tokenizers."""
        return max(1, len(text) // 4)

    def _answer(self, text: str, position: int, num_items: int) -> str:
        label = self._gold.get(text, self.task.fallback_label)
        wrong = _unit("err", text, position, num_items) < self.error_rate
        if wrong:
            others = [lab.value for lab in self.task.labels if lab.value != label]
            label = others[int(_unit("pick", text) * len(others))]
        confident = not wrong and _unit("conf", text, position, num_items) >= self.unsure_rate
        return f"[{position}] {self.task.display_of(label)} ({CONFIDENT if confident else NOT_CONFIDENT})"

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        prompt = request.messages[-1].content
        blocks = [m for m in (_BLOCK.match(chunk) for chunk in prompt.split("\n\n")) if m]
        lines = [
            self._answer(m.group(2), int(m.group(1)), len(blocks))
            for m in blocks
            if self.max_answers is None or int(m.group(1)) <= self.max_answers
        ]
        if self.chatter:
            lines = ["Sure! Here are the answers:", *lines, "Let me know if you need more."]
        text = "\n".join(lines)
        usage = Usage(
            input_tokens=sum(self.count_tokens(m.content) for m in request.messages),
            output_tokens=self.count_tokens(text),
        )
        if not self.logprobs:
            return LLMResponse(text=text, usage=usage, model=self.model)
        from workflows.batchprompt.engine import LogprobResponse

        tokens: list[tuple[str, float]] = []
        for n, line in enumerate(text.split("\n")):
            sure = line.endswith(f"({CONFIDENT})")
            for w, word in enumerate(line.split(" ")):
                p = (0.99 if sure else 0.6) if w == 1 and line.startswith("[") else 0.999
                tokens.append(((" " if w else "\n" if n else "") + word, math.log(p)))
        return LogprobResponse(text=text, usage=usage, model=self.model, token_logprobs=tuple(tokens))

    async def stream(self, request: LLMRequest) -> AsyncIterator[str | LLMResponse]:
        response = await self.complete(request)
        yield response.text
        yield response

    async def aclose(self) -> None:
        return None
