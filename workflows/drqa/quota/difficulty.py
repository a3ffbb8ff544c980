"""Difficulty of a question from its batch-mode probe and its text (pure).

Three probe signals, each mapped to [0, 1] where 1 means hard, then mixed by weights:
- length: how much working the probe wrote for it (a model compresses easy ones in batch mode);
- disagreement: the probe's answer differs from a quick answer given with no working;
- doubt: one minus the stated confidence.
A question with no probe block, or no answer in it, counts as maximally hard on those.

A fourth signal needs no model call: the question's own size (words plus quantities), as a
percentile rank among the run's questions. Longer word problems with more numbers take more
steps; for Qwen2.5-Coder-0.5B on GSM8K the longest quarter held 2 of its 25 correct answers and
28% of its tokens, while the probe signals did not separate right from wrong
(bench/NOTEBOOK.md, DRQA). ``weight_prior`` sets its share of the final estimate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.options import check_ranges
from workflows.answers import answers_match
from workflows.drqa.quota.batch import ProbeItem
from workflows.drqa.quota.signals import SIGNALS, agreement_difficulty, length_difficulty, logprob_difficulty

__all__ = ["Difficulty", "DifficultyConfig", "difficulty_signals", "estimate_difficulty", "question_size",
           "size_ranks"]

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


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
    weight_prior: float = 0.5
    """Share of the question-size rank in the estimate (the probe signals get the rest); used
    only when a rank is given."""
    numbers_weight: float = 5.0
    """How many words one quantity in the question counts for in its size."""
    difficulty_signal: str = "size"
    """Which difficulty the allocation uses (:data:`~workflows.drqa.quota.signals.SIGNALS`):
    ``size`` (the default: the question's size rank; it needs no model call, so no probe runs and
    the whole budget goes to solving), ``mixed`` (the weighted mix above), or one probe signal
    alone: ``length`` (the probe's working
    length), ``agreement`` (disagreement among the probe's answer and the quick samples, see
    ``num_quick_samples``), ``logprob`` (one minus the geometric-mean token probability of the
    batch-mode probe's own answer to the question, or of the greedy quick answer where the probe
    states none; the probe and greedy quick calls ask for logprobs when it is chosen or
    ``record_logprobs`` is on, and the probe's are read even when the budget leaves no room for
    quick answers). With a probe every signal is recorded per question whichever is used, so a
    validation run can compare them (:func:`~workflows.drqa.quota.signals.select_signal`).
    Why ``size`` by default: on GSM8K validation with Qwen2.5-Coder-0.5B it predicted a wrong
    answer best (AUC 0.84-0.86 on held-out halves; the probe's length, agreement and logprob
    signals 0.49-0.57), and the same run's size-ordered quotas without a probe scored 18.2% at
    half the unlimited run's tokens vs 12.9-14.0% with the probe taking its 20% (issue 22 run
    b3aa686)."""
    record_logprobs: bool = True
    """Ask for token logprobs on the probe and the greedy quick answer whichever signal is chosen,
    so that every run records the ``logprob`` signal (and its AUC) beside the others; off, they
    are asked for only when ``difficulty_signal`` is ``logprob``. A server that refuses logprobs
    is asked again without them (the signal is then 0.5, no signal)."""

    def __post_init__(self) -> None:
        if self.difficulty_signal not in SIGNALS:
            raise ValueError(f"difficulty_signal must be one of {SIGNALS}, got {self.difficulty_signal!r}")
        check_ranges(self, weight_prior=(0.0, 1.0), length_scale_tokens=(1, None), weight_length=(0.0, None),
                     weight_disagreement=(0.0, None), weight_doubt=(0.0, None), default_confidence=(0.0, 1.0),
                     min_difficulty=(0.0, 1.0), resolve_confidence=(0.0, 1.0), numbers_weight=(0.0, None))


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


def question_size(text: str, numbers_weight: float = 5.0) -> float:
    """Words plus ``numbers_weight`` per quantity: a cheap proxy for the steps a problem takes."""
    return len(text.split()) + numbers_weight * len(_NUMBER.findall(text))


def size_ranks(questions: Sequence[str], numbers_weight: float = 5.0) -> list[float]:
    """Each question's size as a percentile rank in [0, 1] among ``questions`` (ties share the
    mean rank; a single question gets 0.5)."""
    sizes = [question_size(q, numbers_weight) for q in questions]
    n = len(sizes)
    if n <= 1:
        return [0.5] * n
    order = sorted(range(n), key=lambda i: sizes[i])
    ranks = [0.0] * n
    start = 0
    while start < n:
        end = start
        while end + 1 < n and sizes[order[end + 1]] == sizes[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 / (n - 1)
        start = end + 1
    return ranks


def estimate_difficulty(
    item: ProbeItem,
    quick_answer: str | None = None,
    config: DifficultyConfig | None = None,
    *,
    size_rank: float | None = None,
) -> Difficulty:
    """Mix the probe's length, answer agreement and stated confidence into one difficulty, and
    with ``size_rank`` (see :func:`size_ranks`) the question's size by ``weight_prior``."""
    cfg = config or DifficultyConfig()
    probe = _probe_difficulty(item, quick_answer, cfg)
    if size_rank is None or cfg.weight_prior == 0.0:
        return probe
    mixed = (1.0 - cfg.weight_prior) * probe.value + cfg.weight_prior * min(max(size_rank, 0.0), 1.0)
    return Difficulty(min(max(mixed, cfg.min_difficulty), 1.0), probe.length_signal, probe.agrees,
                      probe.confidence, probe.resolved)


def difficulty_signals(item: ProbeItem, samples: Sequence[str | None], answer_logprobs: Sequence[float] | None,
                       size_rank: float | None, config: DifficultyConfig, *, mixed: float) -> dict[str, float]:
    """Every difficulty signal of one question, each in [0, 1] (1: hard), by the names of
    :attr:`DifficultyConfig.difficulty_signal`: ``mixed`` (given), ``length`` (probe working, 1 when the
    probe has no answer for it), ``agreement`` (among the probe's answer and the quick
    ``samples``), ``logprob`` (from ``answer_logprobs``, the log-probabilities of the tokens of the
    question's answer: 0.5 when None, i.e. no logprobs were asked for or returned; 1 when empty,
    i.e. logprobs came back but there is no answer to read them over, hard like ``length``) and
    ``size`` (0.5 without a rank)."""

    no_answer = item.missing or item.answer is None
    lp = logprob_difficulty(answer_logprobs or ())
    return {
        "mixed": mixed,
        "length": 1.0 if no_answer else length_difficulty(item.reasoning_tokens, config.length_scale_tokens),
        "agreement": agreement_difficulty([item.answer, *samples]),
        "logprob": 0.5 if answer_logprobs is None else (1.0 if lp is None else lp),
        "size": 0.5 if size_rank is None else size_rank,
    }


def _probe_difficulty(item: ProbeItem, quick_answer: str | None, cfg: DifficultyConfig) -> Difficulty:
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
