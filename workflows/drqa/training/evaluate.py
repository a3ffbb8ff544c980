"""Step (e): solve accuracy and tokens per question of a model (plain single-question decoding)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from workflows.answers import extract_final_answer
from workflows.drqa.datasets import DatasetSpec, Item
from workflows.drqa.prompts import solve_messages
from workflows.drqa.training.hf import format_chat, generate_texts

__all__ = ["EvalResult", "evaluate_judge", "evaluate_solver"]


@dataclass(frozen=True)
class EvalResult:
    """How a model solves a set of questions."""

    dataset: str
    """Dataset name."""
    accuracy: float
    """Share of questions answered correctly."""
    tokens_per_question: float
    """Mean completion tokens per question."""
    num_items: int
    """Questions evaluated."""
    num_truncated: int
    """Completions that hit ``max_new_tokens``."""
    items: list[dict[str, Any]] = field(default_factory=list)
    """Per question: id, answer, gold, correct, tokens."""

    def summary(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "accuracy": self.accuracy, "tokens_per_question": self.tokens_per_question,
                "num_items": self.num_items, "num_truncated": self.num_truncated}


def evaluate_solver(
    model: Any, tokenizer: Any, items: Sequence[Item], spec: DatasetSpec, *, max_new_tokens: int = 512,
    batch_size: int = 64, device: str = "cpu", on_batch: Callable[[int], None] | None = None,
) -> EvalResult:
    """Greedy single-question solves with no stated budget (how the model allocates by itself)."""
    prompts = [
        format_chat(tokenizer, solve_messages(it.question, spec.answer_instruction, quota_tokens=None,
                                              answer_reserve_tokens=0))
        for it in items
    ]
    outs = generate_texts(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                          device=device, on_batch=on_batch)
    rows: list[dict[str, Any]] = []
    for it, (text, n, truncated) in zip(items, outs, strict=True):
        answer = extract_final_answer(text, allow_last_number=not truncated)
        rows.append({"id": it.id, "answer": answer, "gold": it.gold, "correct": spec.is_correct(answer, it.gold),
                     "tokens": n, "truncated": truncated})
    num = max(len(rows), 1)
    return EvalResult(spec.name, sum(r["correct"] for r in rows) / num, sum(r["tokens"] for r in rows) / num,
                      len(rows), sum(r["truncated"] for r in rows), rows)


def evaluate_judge(
    model: Any, tokenizer: Any, prompts: Sequence[str], gold_letters: Sequence[str], *, batch_size: int = 64,
    device: str = "cpu",
) -> float:
    """Accuracy of the labelling task (greedy, a few tokens)."""
    from workflows.drqa.training.judge import parse_letter

    outs = generate_texts(model, tokenizer, prompts, max_new_tokens=4, batch_size=batch_size, device=device)
    hits = sum(parse_letter(t) == g for (t, _, _), g in zip(outs, gold_letters, strict=True))
    return hits / max(len(prompts), 1)
