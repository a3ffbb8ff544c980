"""A tiny randomly initialised Llama with a character tokenizer, for CPU tests and dry runs.

Not a model of anything: it lets the GRPO loop, saving and evaluation run end to end in seconds.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

__all__ = ["save_tiny_model", "tiny_model_and_tokenizer"]


def tiny_model_and_tokenizer(seed: int = 0) -> tuple[Any, Any]:
    """A 2-layer LlamaForCausalLM (hidden 32) and a character-level fast tokenizer."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = sorted(set(string.ascii_letters + string.digits + " ?:>.,+-*/=()#$\n"))
    vocab = {"[PAD]": 0, "[EOS]": 1, "[UNK]": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", eos_token="[EOS]", unk_token="[UNK]")
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      pad_token_id=0, eos_token_id=1, bos_token_id=None, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg), hf_tok


def save_tiny_model(path: str | Path, seed: int = 0) -> Path:
    """Save the tiny model and tokenizer as a Hugging Face folder."""
    model, tok = tiny_model_and_tokenizer(seed)
    out = Path(path)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
