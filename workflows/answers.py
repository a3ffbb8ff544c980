"""Final-answer extraction and normalisation (pure string functions).

Shared by the methods that score GSM8K numbers and MATH ``\\boxed{}`` expressions (DRQA's
batch-mode parser and scorers, PriorDynaFlow's math tasks), so both score alike, and by the QA
agents (BATS, ReAct) for yes/no questions (:func:`is_yes_no_question`, :func:`yes_no_answer`).
Normalisation is deliberately modest: it makes ``"$1,200.00"`` equal ``"1200"`` and
``"\\dfrac{1}{2}"`` equal ``"0.5"``, it does not prove two algebraic expressions equal.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = [
    "answers_match",
    "extract_boxed",
    "extract_final_answer",
    "is_yes_no_question",
    "last_number",
    "normalize_answer",
    "yes_no_answer",
]

_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_HASH_RE = re.compile(r"####\s*([^\n]+)")
_MAX_HASH_ANSWER_WORDS = 6
_ANSWER_IS_RE = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*([^\n]+)", re.IGNORECASE
)


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        ch = text[j]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
    return None


def last_number(text: str) -> str | None:
    """The last number written in ``text`` (commas allowed), or None."""
    found = _NUMBER_RE.findall(text)
    return found[-1] if found else None


def extract_final_answer(text: str, *, allow_last_number: bool = True) -> str | None:
    """The answer a solution commits to, by the first marker that matches.

    Order: ``#### X`` (GSM8K style), ``\\boxed{X}``, ``answer is X`` / ``Answer: X``, and,
    when ``allow_last_number``, the last number in the text. A truncated solution should be
    read with ``allow_last_number=False``: its last number is an intermediate value.
    """
    # "#### 1. Calculate the total..." is a markdown heading, not an answer line.
    hashes = [h for h in _HASH_RE.findall(text) if len(h.split()) <= _MAX_HASH_ANSWER_WORDS]
    if hashes:
        return _strip_decoration(hashes[-1])
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    stated = _ANSWER_IS_RE.findall(text)
    if stated:
        candidate = _strip_decoration(stated[-1])
        if candidate:
            return candidate
    if allow_last_number:
        return last_number(text)
    return None


def _strip_decoration(s: str) -> str:
    s = s.strip().strip("*").strip()
    boxed = extract_boxed(s)
    if boxed is not None:
        return boxed
    return s.rstrip(".").strip()


_LATEX_DROP = (
    "\\left",
    "\\right",
    "\\!",
    "\\,",
    "\\;",
    "\\ ",
    "$",
    "\\displaystyle",
)
_TEXT_RE = re.compile(r"\\(?:text|mbox|mathrm)\{([^{}]*)\}")
_FRAC_RE = re.compile(r"\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}")
_FRAC_SHORT_RE = re.compile(r"\\[dt]?frac(\d)(\d)")
_UNIT_WORDS = re.compile(
    r"\b(?:dollars?|cents?|units?|degrees?|inches|inch|feet|foot|meters?|cm|km|hours?|minutes?|"
    r"seconds?|days?|weeks?|years?|miles?|pounds?|kg|grams?|percent|mph|sq|square)\b\.?",
    re.IGNORECASE,
)


def normalize_answer(answer: str | None) -> str | None:
    """A canonical form of ``answer`` for comparison, or None when it is empty.

    Numbers become their shortest exact form (``"1,200.0"`` -> ``"1200"``, ``"\\frac{3}{4}"``
    -> ``"3/4"``); other text loses LaTeX spacing, ``\\text{}`` wrappers, units, surrounding
    ``$`` and spaces.
    """
    if answer is None:
        return None
    s = answer.strip()
    boxed = extract_boxed(s)
    if boxed is not None:
        s = boxed
    for tok in _LATEX_DROP:
        s = s.replace(tok, "")
    s = s.replace("^\\circ", "").replace("^{\\circ}", "").replace("\\circ", "")
    s = s.replace("\\%", "").replace("%", "")
    s = _TEXT_RE.sub(r"\1", s)
    s = _UNIT_WORDS.sub("", s)
    s = s.replace("dfrac", "frac").replace("tfrac", "frac")
    s = _FRAC_SHORT_RE.sub(r"\\frac{\1}{\2}", s)
    s = s.strip().rstrip(".").strip()
    if s.startswith(("x=", "x =")):
        s = s.split("=", 1)[1]
    s = s.replace(" ", "")
    if not s:
        return None
    number = _as_number(s)
    if number is not None:
        return _format_number(number)
    return s


def _as_number(s: str) -> Fraction | None:
    frac = _FRAC_RE.fullmatch(s)
    if frac:
        num, den = _as_number(frac.group(1)), _as_number(frac.group(2))
        if num is None or den is None or den == 0:
            return None
        return num / den
    neg_frac = re.fullmatch(r"-\\frac\{([^{}]+)\}\{([^{}]+)\}", s)
    if neg_frac:
        inner = _as_number(f"\\frac{{{neg_frac.group(1)}}}{{{neg_frac.group(2)}}}")
        return None if inner is None else -inner
    plain = s.replace(",", "") if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s) else s
    if re.fullmatch(r"-?(?:\d+(?:\.\d*)?|\.\d+)", plain):
        return Fraction(plain)
    slash = re.fullmatch(r"(-?\d+)/(\d+)", plain)
    if slash and int(slash.group(2)) != 0:
        return Fraction(int(slash.group(1)), int(slash.group(2)))
    return None


def _format_number(x: Fraction) -> str:
    if x.denominator == 1:
        return str(x.numerator)
    as_float = float(x)
    # A terminating decimal prints as one (0.5); anything else stays an exact fraction (1/3).
    den = x.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den == 1:
        return repr(as_float)
    return f"{x.numerator}/{x.denominator}"


def answers_match(a: str | None, b: str | None) -> bool:
    """True when both answers are present and normalise to the same form."""
    na, nb = normalize_answer(a), normalize_answer(b)
    return na is not None and na == nb


_AUXILIARIES = frozenset({
    "is", "are", "was", "were", "am", "do", "does", "did", "can", "could", "will", "would", "shall", "should",
    "may", "might", "must", "has", "have", "had",
})
_YES_NO_RE = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


def is_yes_no_question(question: str) -> bool:
    """Whether ``question`` is answered by yes or no: it opens with an auxiliary verb ("Are both
    ...", "Did X ...") and offers no alternatives ("Is X or Y older?" asks for X or Y)."""
    words = re.findall(r"[a-z']+", question.lower())
    return bool(words) and words[0] in _AUXILIARIES and "or" not in words


def yes_no_answer(answer: str) -> str | None:
    """``"yes"`` or ``"no"`` when ``answer`` opens with that word ("Yes, both were American."),
    else None. HotpotQA's scorer gives a yes/no gold answer credit only for the bare word."""
    match = _YES_NO_RE.match(answer)
    return match.group(1).lower() if match else None
