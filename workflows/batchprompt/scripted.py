"""Deterministic BatchPrompt answers: a script for the scripted LLM (control-flow tests, dry runs)
and a responder for the loopback server (the benchmark's HTTP plumbing check).

:class:`Labeler` reads the numbered items out of the last user message, looks up each item's gold
label and answers in the wire format, with faults chosen by a hash of (item, position, batch
length) so they move when a permutation moves the item: wrong answers, not-confident marks, and
answers lost past a given position (what small models do at large batch sizes). Never a source
of quality figures: it knows the gold labels.

    client = scripted_labeler(task, items, error_rate=0.1)       # an LLMClient (ScriptedClient)
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

from orchestrator.llm.scripted import ScriptedClient, ScriptedConfig
from orchestrator.types import Message
from workflows.batchprompt.prompt import CONFIDENT, NOT_CONFIDENT, render_inputs
from workflows.batchprompt.tasks import Item, TaskSpec

__all__ = ["Labeler", "label_logprobs", "scripted_labeler"]

_BLOCK = re.compile(r"^\[(\d+)\] (.*)$", re.DOTALL)


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class Labeler:
    """``messages -> reply``: the answers a model that knows the gold labels would give.

    error_rate: share of answers flipped to another label (hash of item, position, batch length).
    unsure_rate: share of answers marked not confident (wrong answers are always not confident).
    max_answers: answer only positions up to this number (``None``: all).
    chatter: wrap the answers in a sentence before and after, as chatty models do.
    """

    def __init__(self, task: TaskSpec, items: Sequence[Item], *, error_rate: float = 0.0,
                 unsure_rate: float = 0.0, max_answers: int | None = None, chatter: bool = False) -> None:
        self.task = task
        self._gold = {render_inputs(task, item.inputs): item.gold or task.fallback_label for item in items}
        self.error_rate = error_rate
        self.unsure_rate = unsure_rate
        self.max_answers = max_answers
        self.chatter = chatter

    def _answer(self, text: str, position: int, num_items: int) -> str:
        label = self._gold.get(text, self.task.fallback_label)
        wrong = _unit("err", text, position, num_items) < self.error_rate
        if wrong:
            others = [lab.value for lab in self.task.labels if lab.value != label]
            label = others[int(_unit("pick", text) * len(others))]
        confident = not wrong and _unit("conf", text, position, num_items) >= self.unsure_rate
        return f"[{position}] {self.task.display_of(label)} ({CONFIDENT if confident else NOT_CONFIDENT})"

    def __call__(self, messages: Sequence[Message]) -> str:
        prompt = messages[-1].content
        blocks = [m for m in (_BLOCK.match(chunk) for chunk in prompt.split("\n\n")) if m]
        lines = [
            self._answer(m.group(2), int(m.group(1)), len(blocks))
            for m in blocks
            if self.max_answers is None or int(m.group(1)) <= self.max_answers
        ]
        if self.chatter:
            lines = ["Sure! Here are the answers:", *lines, "Let me know if you need more."]
        return "\n".join(lines)


def label_logprobs(text: str) -> tuple[tuple[str, float], ...]:
    """Token logprobs of a :class:`Labeler` reply, one token per word: a label token has
    probability 0.99 when its answer is marked confident, else 0.6; every other token 0.999."""
    tokens: list[tuple[str, float]] = []
    for n, line in enumerate(text.split("\n")):
        sure = line.endswith(f"({CONFIDENT})")
        for w, word in enumerate(line.split(" ")):
            p = (0.99 if sure else 0.6) if w == 1 and line.startswith("[") else 0.999
            tokens.append(((" " if w else "\n" if n else "") + word, math.log(p)))
    return tuple(tokens)


def scripted_labeler(task: TaskSpec, items: Sequence[Item], *, model: str = "scripted-labeler",
                     error_rate: float = 0.0, unsure_rate: float = 0.0, max_answers: int | None = None,
                     chatter: bool = False) -> ScriptedClient:
    """The scripted LLM answering with a :class:`Labeler`."""
    labeler = Labeler(task, items, error_rate=error_rate, unsure_rate=unsure_rate, max_answers=max_answers,
                      chatter=chatter)
    return ScriptedClient(ScriptedConfig(responses=labeler, model=model))
