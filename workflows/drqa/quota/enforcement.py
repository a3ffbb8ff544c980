"""How a quota is enforced on one call: a hard ``max_tokens`` and a stated reasoning budget.

``max_tokens`` is the guarantee (the server stops there); the statement in the prompt is what
lets the model plan its working so that it reaches a final answer before the cut.
"""

from __future__ import annotations

from dataclasses import replace

from orchestrator.types import SamplingOptions

__all__ = ["WORDS_PER_TOKEN", "quota_sampling", "reasoning_budget_statement"]

WORDS_PER_TOKEN = 0.75
"""English text runs at roughly three words per four tokens."""


def reasoning_budget_statement(quota_tokens: int, answer_reserve_tokens: int) -> str:
    """The sentence that tells the model its reasoning budget for this question.

    Checked on Qwen2.5-Coder-0.5B (bench/results/drqa/cpu-prompt-check.json): the old sentence
    ("your reasoning budget is 111 tokens ... a reply cut off before its final answer line scores
    zero", before "End with '#### <number>'") made it write "#### 111" at once, the budget as its
    answer (0-3% on GSM8K in the H200 run); "keep your working to about N words" before the
    question still made it answer first with no working on 3 of 4 questions. Phrased as the order
    of work ("first reason ... then the final line"), it reasons on all 4.
    """
    reasoning = max(quota_tokens - answer_reserve_tokens, 0)
    words = int(reasoning * WORDS_PER_TOKEN)
    if reasoning <= 0:
        return "Give the final answer immediately, with no working."
    return f"First reason step by step, in about {words} words at most."


def quota_sampling(quota_tokens: int, base: SamplingOptions | None = None) -> SamplingOptions:
    """Sampling options whose ``max_tokens`` is the quota (at least one token)."""
    return replace(base or SamplingOptions(), max_tokens=max(int(quota_tokens), 1))
