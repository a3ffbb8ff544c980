"""Difficulty signals the model itself gives, and how to tell which one predicts correctness (pure).

Each signal maps to [0, 1], 1 meaning hard (likely wrong):

- :func:`agreement_difficulty`: how much a few short answers to the same question disagree (the
  probe's answer and k quick samples); a model that knows the answer repeats it.
- :func:`logprob_difficulty`: one minus the geometric-mean probability of an answer's tokens:
  the batch-mode probe's own answer (its tokens picked out of the probe reply by
  :func:`span_logprobs`), or the quick answer's where the probe block states none.
- :func:`length_difficulty`: the length of the greedy draft (the probe's working), scaled.

Which one to trust is an empirical question per model and dataset: :func:`roc_auc` measures how
well a signal ranks wrong answers above right ones, and :func:`select_signal` picks the best on
one part of a validation set and reports it on the other, over several random splits, so the
figure reported is not the one the choice was made on.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from workflows.answers import normalize_answer

__all__ = [
    "SIGNALS",
    "SignalSelection",
    "agreement_difficulty",
    "length_difficulty",
    "logprob_difficulty",
    "roc_auc",
    "select_signal",
    "signal_aucs",
    "span_logprobs",
    "split_indices",
]

SIGNALS: tuple[str, ...] = ("mixed", "length", "agreement", "logprob", "size")
"""Values of :attr:`~workflows.drqa.quota.difficulty.DifficultyConfig.difficulty_signal`: ``mixed`` is the
weighted mix of probe length, probe-vs-quick disagreement and stated doubt (and question size);
the others use one signal alone (``size``: the question's size rank, no model call)."""


def agreement_difficulty(answers: Sequence[str | None]) -> float:
    """One minus the share of ``answers`` that agree with the most common one (compared after
    :func:`~workflows.answers.normalize_answer`); a missing answer agrees with nothing. No
    answers at all: 1."""
    if not answers:
        return 1.0
    forms = [normalize_answer(a) for a in answers]
    counts = Counter(f for f in forms if f is not None)
    top = counts.most_common(1)[0][1] if counts else 0
    return 1.0 - top / len(answers)


def logprob_difficulty(logprobs: Sequence[float]) -> float | None:
    """One minus the geometric-mean token probability, ``1 - exp(mean(logprobs))``; None when
    there are no tokens."""
    if not logprobs:
        return None
    return 1.0 - math.exp(sum(logprobs) / len(logprobs))


def span_logprobs(tokens: Sequence[tuple[str, float]], span: tuple[int, int]) -> list[float]:
    """The log-probabilities of the generated tokens that overlap characters ``span`` of the
    reply, the reply being the tokens' text laid end to end (``tokens``: (text, logprob) pairs in
    order, e.g. :class:`~orchestrator.types.TokenLogprob` as ``(t.token, t.logprob)``). Empty
    when none does (an empty span, or a span past the tokens' text)."""
    start, end = span
    out: list[float] = []
    if end <= start:
        return out
    at = 0
    for text, logprob in tokens:
        nxt = at + len(text)
        if nxt > start and at < end:
            out.append(logprob)
        if nxt >= end:
            break
        at = nxt
    return out


def length_difficulty(num_tokens: int, scale_tokens: int) -> float:
    """``num_tokens / scale_tokens``, at most 1."""
    return min(max(num_tokens, 0) / max(scale_tokens, 1), 1.0)


def roc_auc(difficulty: Sequence[float], correct: Sequence[bool]) -> float | None:
    """How well ``difficulty`` ranks the wrong answers above the right ones: the probability that
    a random wrong one scores higher than a random right one (ties count half; 0.5 is chance).
    None when either class is empty."""
    if len(difficulty) != len(correct):
        raise ValueError(f"{len(difficulty)} scores for {len(correct)} outcomes")
    wrong = [d for d, ok in zip(difficulty, correct, strict=True) if not ok]
    right = [d for d, ok in zip(difficulty, correct, strict=True) if ok]
    if not wrong or not right:
        return None
    # Mann-Whitney U by ranks (ties get their mean rank): O(n log n).
    pooled = sorted((d, i < len(wrong)) for i, d in enumerate([*wrong, *right]))
    rank_sum, i = 0.0, 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        mean_rank = (i + j) / 2 + 1
        rank_sum += mean_rank * sum(1 for k in range(i, j + 1) if pooled[k][1])
        i = j + 1
    u = rank_sum - len(wrong) * (len(wrong) + 1) / 2
    return u / (len(wrong) * len(right))


def signal_aucs(probe: Sequence[Mapping[str, Any]], correct: Sequence[bool]) -> dict[str, float | None]:
    """Per signal, :func:`roc_auc` of the probe records' ``signals`` against the final answers'
    correctness (empty when the probe did not run or the lengths differ)."""
    rows = [p.get("signals") for p in probe]
    if not rows or len(rows) != len(correct) or any(not isinstance(r, Mapping) for r in rows):
        return {}
    tables = cast(list[Mapping[str, float]], rows)
    return {name: roc_auc([float(r[name]) for r in tables], correct) for name in tables[0]}


def split_indices(n: int, select_fraction: float, rng: random.Random) -> tuple[list[int], list[int]]:
    """A random split of ``range(n)`` into a selection part (``select_fraction`` of it) and a
    report part."""
    if not 0.0 < select_fraction < 1.0:
        raise ValueError(f"select_fraction must be in (0, 1), got {select_fraction}")
    order = list(range(n))
    rng.shuffle(order)
    cut = round(n * select_fraction)
    return sorted(order[:cut]), sorted(order[cut:])


@dataclass(frozen=True)
class SignalSelection:
    """The outcome of :func:`select_signal`.

    chosen: per repeat, the signal with the best AUC on that repeat's selection part.
    report_auc: per repeat, the chosen signal's AUC on the report part (None: one class empty).
    auc_by_signal: per signal, its mean AUC over the repeats' report parts (whether chosen or not).
    """

    chosen: tuple[str, ...]
    report_auc: tuple[float | None, ...]
    auc_by_signal: Mapping[str, float | None]

    @property
    def winner(self) -> str:
        """The signal chosen most often (ties: the first in the signals' order)."""
        counts = Counter(self.chosen)
        return max(self.auc_by_signal, key=lambda s: counts.get(s, 0))

    @property
    def mean_report_auc(self) -> float | None:
        values = [a for a in self.report_auc if a is not None]
        return statistics.fmean(values) if values else None

    @property
    def std_report_auc(self) -> float | None:
        values = [a for a in self.report_auc if a is not None]
        return statistics.stdev(values) if len(values) > 1 else None


def select_signal(signals: Mapping[str, Sequence[float]], correct: Sequence[bool], *, repeats: int = 5,
                  select_fraction: float = 0.5, seed: int = 0) -> SignalSelection:
    """Choose among ``signals`` (name -> difficulty per question) by AUC on a random half of the
    questions and report the chosen one's AUC on the other half, ``repeats`` times."""
    if not signals or repeats < 1:
        raise ValueError("select_signal needs at least one signal and one repeat")
    rng = random.Random(seed)
    chosen: list[str] = []
    reported: list[float | None] = []
    per_signal: dict[str, list[float]] = {name: [] for name in signals}
    for _ in range(repeats):
        select, report = split_indices(len(correct), select_fraction, rng)
        picked = max(signals, key=lambda name: _auc_on(signals[name], correct, select) or 0.0)
        chosen.append(picked)
        reported.append(_auc_on(signals[picked], correct, report))
        for name, values in signals.items():
            auc = _auc_on(values, correct, report)
            if auc is not None:
                per_signal[name].append(auc)
    means = {name: (statistics.fmean(v) if v else None) for name, v in per_signal.items()}
    return SignalSelection(tuple(chosen), tuple(reported), means)


def _auc_on(values: Sequence[float], correct: Sequence[bool], indices: Sequence[int]) -> float | None:
    return roc_auc([values[i] for i in indices], [correct[i] for i in indices])
