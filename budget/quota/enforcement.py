"""How a quota is enforced on one call: a hard ``max_tokens`` and a stated reasoning budget.

``max_tokens`` is the guarantee (the server stops there); the statement in the prompt is what
lets the model plan its working so that it reaches a final answer before the cut.
"""

from __future__ import annotations

from orchestrator.types import SamplingOptions

__all__ = ["WORDS_PER_TOKEN", "quota_sampling", "reasoning_budget_statement"]

WORDS_PER_TOKEN = 0.75
"""English text runs at roughly three words per four tokens."""


def reasoning_budget_statement(quota_tokens: int, answer_reserve_tokens: int) -> str:
    """The sentence that tells the model its reasoning budget for this question.

    In words only, and meant to go before the question: Qwen2.5-Coder-0.5B, shown "your budget
    is 111 tokens ... a reply cut off before its final answer line scores zero" right before
    "End with '#### <number>'", wrote "#### 111" at once (the budget as its answer; 0-3% on
    GSM8K in the H200 run). Stated as words up front, it reasons as usual.
    """
    reasoning = max(quota_tokens - answer_reserve_tokens, 0)
    words = int(reasoning * WORDS_PER_TOKEN)
    if reasoning <= 0:
        return "Give the final answer immediately, with no working."
    return f"Keep your working to about {words} words; anything longer is cut off."


def quota_sampling(quota_tokens: int, base: SamplingOptions | None = None) -> SamplingOptions:
    """Sampling options whose ``max_tokens`` is the quota (at least one token)."""
    b = base or SamplingOptions()
    return SamplingOptions(
        max_tokens=max(int(quota_tokens), 1),
        temperature=b.temperature,
        top_p=b.top_p,
        seed=b.seed,
        stop=b.stop,
    )
