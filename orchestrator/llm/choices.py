"""Reading a reply that should be one of a fixed set of strings (pure; no I/O).

A request with :attr:`~orchestrator.types.SamplingOptions.choices` is decoded constrained where
the backend can (vLLM's structured outputs), but a server without structured outputs, a resumed
run or a scripted test may still answer free text. :func:`match_choice` finds the choice a free
reply names, or None; :func:`closest_choice` always returns one (what a backend that cannot
constrain hands out, deterministically).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

__all__ = ["closest_choice", "match_choice", "normalize_choice"]

_EDGES = re.compile(r"^[\s\"'`*_#>.:;,!?()\[\]{}<-]+|[\s\"'`*_#>.:;,!?()\[\]{}<-]+$")


def normalize_choice(text: str) -> str:
    """``text`` case-folded, inner whitespace collapsed, quotes, markdown and punctuation around
    it dropped (``" **Solver**."`` -> ``"solver"``)."""
    return _EDGES.sub("", " ".join(text.split())).casefold()


def match_choice(text: str, choices: Sequence[str]) -> str | None:
    """The choice ``text`` names, or None.

    The whole reply equal to a choice (up to :func:`normalize_choice`) wins; otherwise the choice
    found earliest in the reply as a whole word (case-insensitive; of choices found at the same
    place, the longest: ``"Solver2"`` over ``"Solver"``); None when no choice occurs.
    """
    if not choices:
        return None
    whole = normalize_choice(text)
    for choice in choices:
        if normalize_choice(choice) == whole:
            return choice
    best: tuple[int, int, str] | None = None
    folded = text.casefold()
    for choice in choices:
        needle = normalize_choice(choice)
        if not needle:
            continue
        found = re.search(rf"(?<![\w]){re.escape(needle)}(?![\w])", folded)
        if found is not None:
            rank = (found.start(), -len(needle), choice)
            if best is None or rank[:2] < best[:2]:
                best = rank
    return best[2] if best is not None else None


def closest_choice(text: str, choices: Sequence[str]) -> str:
    """The choice ``text`` names (:func:`match_choice`), else the most similar one by characters
    (ties: the first listed). ``choices`` must not be empty."""
    if not choices:
        raise ValueError("closest_choice: no choices")
    named = match_choice(text, choices)
    if named is not None:
        return named
    whole = normalize_choice(text)
    scores = [difflib.SequenceMatcher(None, whole, normalize_choice(c)).ratio() for c in choices]
    return choices[max(range(len(choices)), key=lambda i: (scores[i], -i))]
