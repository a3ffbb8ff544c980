"""Difficulty of a question from its batch-mode probe (pure).

Three signals, each mapped to [0, 1] where 1 means hard, then mixed by weights:
- length: how much working the probe wrote for it (a model compresses easy ones in batch mode);
- disagreement: the probe's answer differs from a quick answer given with no working;
- doubt: one minus the stated confidence.
A question with no probe block, or no answer in it, counts as maximally hard.
"""

from __future__ import annotations

from dataclasses import dataclass

from budget.quota.answers import answers_match
from budget.quota.batch import ProbeItem

__all__ = ["Difficulty", "DifficultyConfig", "estimate_difficulty"]


@dataclass(frozen=True)
class DifficultyConfig:
    """How probe signals become a difficulty in [min_difficulty, 1]."""

    length_scale_tokens: int = 120
    """Probe working of this many tokens (or more) counts as fully hard on the length signal."""
    weight_length: float = 0.45
    """Weight of the length signal."""
    weight_disagreement: float = 0.35
    """Weight of probe-vs-quick-answer disagreement (counted as 0.5 when there is no quick answer)."""
    weight_doubt: float = 0.20
    """Weight of one minus the stated confidence."""
    default_confidence: float = 0.5
    """Confidence assumed when the probe states none."""
    min_difficulty: float = 0.05
    """Floor on the estimate, so every unresolved question keeps a positive weight."""
    resolve_confidence: float = 0.8
    """A probe answer that agrees with the quick answer at this confidence or more is 'resolved'."""


@dataclass(frozen=True)
class Difficulty:
    """The estimate for one question and the signals behind it."""

    value: float
    """Difficulty in [min_difficulty, 1]."""
    length_signal: float
    """Probe working length, scaled to [0, 1]."""
    agrees: bool | None
    """Probe and quick answers agree (None when there was no quick answer)."""
    confidence: float
    """Stated (or default) confidence in [0, 1]."""
    resolved: bool
    """The probe answer can be accepted without a full solve."""


def estimate_difficulty(
    item: ProbeItem, quick_answer: str | None = None, config: DifficultyConfig | None = None
) -> Difficulty:
    """Mix the probe's length, answer agreement and stated confidence into one difficulty."""
    cfg = config or DifficultyConfig()
    confidence = item.confidence if item.confidence is not None else cfg.default_confidence
    if item.missing or item.answer is None:
        return Difficulty(1.0, 1.0, None if quick_answer is None else False, 0.0, False)
    length_signal = min(item.reasoning_tokens / max(cfg.length_scale_tokens, 1), 1.0)
    agrees: bool | None = None if quick_answer is None else answers_match(item.answer, quick_answer)
    disagreement = 0.5 if agrees is None else (0.0 if agrees else 1.0)
    total_weight = cfg.weight_length + cfg.weight_disagreement + cfg.weight_doubt
    raw = (
        cfg.weight_length * length_signal
        + cfg.weight_disagreement * disagreement
        + cfg.weight_doubt * (1.0 - confidence)
    ) / (total_weight if total_weight > 0 else 1.0)
    value = min(max(raw, cfg.min_difficulty), 1.0)
    resolved = bool(agrees) and confidence >= cfg.resolve_confidence
    return Difficulty(value, length_signal, agrees, confidence, resolved)
