"""Labels scored by their log-probabilities, calibrated against the label prior (pure: no I/O).

Instead of the answer word the model wrote, ``label_scoring="logprob"`` reads the probability the
model gave each label at the answer's label token (the token's ``top_logprobs``, which vLLM
returns with ``logprobs=true, top_logprobs=k``) and takes the label whose probability is highest
*relative to the model's prior for that label*. Small models lean towards one answer word ("yes")
whatever the input; dividing by that lean is contextual calibration (Zhao et al. 2021, "Calibrate
before use"): ``q(l) = p(l) / prior(l)``, renormalised.

Two estimates of the prior (``calibration``):

- ``mean`` (no extra call): the mean label distribution over the round's answers. It assumes the
  labels are roughly balanced in the data; on a skewed set it pulls predictions towards the
  minority label.
- ``content_free`` (one extra call per run): the distribution the model gives a content-free item
  (every field ``N/A``) in the same prompt, as the paper does. It makes no assumption on the data's
  balance, but one item is a noisy estimate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from orchestrator.types import TokenLogprob
from workflows.batchprompt.prompt import item_number
from workflows.batchprompt.tasks import TaskSpec, normalize_text

__all__ = [
    "CALIBRATIONS",
    "LABEL_SCORINGS",
    "PROBABILITY_FLOOR",
    "calibrate",
    "content_free_inputs",
    "label_distributions",
    "mean_prior",
]

LABEL_SCORINGS: tuple[str, ...] = ("text", "logprob")
CALIBRATIONS: tuple[str, ...] = ("none", "mean", "content_free")

PROBABILITY_FLOOR = 1e-4
"""The probability a label gets when it is not among the token's top alternatives (the true
value is below the smallest listed one; a floor keeps the division defined)."""


def _label_of_token(task: TaskSpec, token: str) -> str | None:
    """The label a token starts (``" Yes"`` -> the yes label; ``"ent"`` -> entailment), or None
    when it starts none or several."""
    word = normalize_text(token)
    if not word:
        return None
    found = {value for name, value in task.alias_table().items() if name.startswith(word)}
    return found.pop() if len(found) == 1 else None


def label_distributions(task: TaskSpec, tokens: Sequence[TokenLogprob], num_items: int) -> dict[int, dict[str, float]]:
    """Per item number, the probability of each label at the first label token of its answer line.

    The line's number is read as the answer parser reads it; the label token is the first token
    after it that starts a label word. Its alternatives (``top_logprobs``, the token itself
    included) are mapped to labels by the word they start, spellings of one label summed
    (``yes``, ``Yes``, `` yes``). Each distribution is normalised over the labels (a label not
    among the alternatives gets :data:`PROBABILITY_FLOOR`). Lines without a number or a label
    token are skipped; a number seen twice keeps its first distribution.
    """
    labels = [label.value for label in task.labels]
    out: dict[int, dict[str, float]] = {}
    line = ""
    done = False
    for token in tokens:
        for index, piece in enumerate(token.token.split("\n")):
            if index:  # a token holding a newline starts a new line after it
                line, done = "", False
            before, line = line, line + piece
            if done:
                continue
            number = item_number(before)
            if number is None or _label_of_token(task, piece) is None:
                continue
            done = True
            if not 1 <= number <= num_items or number in out:
                continue
            mass = dict.fromkeys(labels, 0.0)
            for alternative, logprob in {token.token: token.logprob, **dict(token.top_logprobs)}.items():
                label = _label_of_token(task, alternative)
                if label is not None:
                    mass[label] += math.exp(logprob)
            out[number] = _normalise(mass)
    return out


def _normalise(mass: Mapping[str, float]) -> dict[str, float]:
    floored = {label: max(p, PROBABILITY_FLOOR) for label, p in mass.items()}
    total = sum(floored.values())
    return {label: p / total for label, p in floored.items()}


def mean_prior(distributions: Iterable[Mapping[str, float]], labels: Sequence[str]) -> dict[str, float] | None:
    """The mean of ``distributions`` over ``labels`` (None when there are none)."""
    rows = list(distributions)
    if not rows:
        return None
    return _normalise({label: sum(row.get(label, 0.0) for row in rows) / len(rows) for label in labels})


def calibrate(distribution: Mapping[str, float], prior: Mapping[str, float] | None) -> dict[str, float]:
    """``distribution`` divided by ``prior`` label by label, renormalised (unchanged without a prior)."""
    if not prior:
        return dict(distribution)
    return _normalise({label: p / max(prior.get(label, 1.0), PROBABILITY_FLOOR) for label, p in distribution.items()})


def content_free_inputs(task: TaskSpec) -> dict[str, str]:
    """An item with every input field ``N/A``: what the model answers without content is its prior."""
    return {f.key: "N/A" for f in task.input_fields}
