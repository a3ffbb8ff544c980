"""Hugging Face helpers shared by training and evaluation: load, format prompts, generate."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch

from orchestrator.types import Message

__all__ = ["format_chat", "generate_texts", "load_model"]


def load_model(path: str, *, device: str, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """Model and tokenizer from a Hugging Face folder (pad token set, left padding)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    # transformers wraps PreTrainedModel.to in a decorator whose stub loses the bound self; the call
    # still goes to PreTrainedModel.to.
    return cast(torch.nn.Module, model).to(device), tok


def format_chat(tokenizer: Any, messages: Sequence[Message]) -> str:
    """The prompt string for ``messages`` (the tokenizer's chat template when it has one)."""
    wire = [m.to_wire() for m in messages]
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(wire, tokenize=False, add_generation_prompt=True))
    return "".join(f"{m['role']}: {m['content']}\n" for m in wire) + "assistant:"


@torch.no_grad()
def generate_texts(
    model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int, batch_size: int = 64,
    device: str = "cpu", on_batch: Callable[[int], None] | None = None,
) -> list[tuple[str, int, bool]]:
    """Greedy completions: (text, completion tokens up to and including eos, hit the cap);
    ``on_batch(n)`` after each batch of ``n`` prompts."""
    model.eval()
    tokenizer.padding_side = "left"
    out: list[tuple[str, int, bool]] = []
    eos = tokenizer.eos_token_id
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer(list(prompts[i : i + batch_size]), return_tensors="pt", padding=True,
                        add_special_tokens=False).to(device)
        gen = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=eos, repetition_penalty=1.0, temperature=None, top_p=None, top_k=None)
        completion = gen[:, enc["input_ids"].shape[1] :]
        for row in completion:
            ids = row.tolist()
            if eos is not None and eos in ids:
                stop, truncated = ids.index(eos) + 1, False
            else:
                stop, truncated = len(ids), True
            out.append((tokenizer.decode(ids[:stop], skip_special_tokens=True), stop, truncated))
        if on_batch:
            on_batch(len(completion))
    return out
