"""Datasets DRQA runs on: GSM8K (gold number) and MATH (gold in ``\\boxed{}``).

A :class:`DatasetSpec` turns a raw row into an :class:`Item` (id, question, gold) and scores a
prediction. Rows follow ../shared/data: GSM8K ``{"question", "answer", "id"}`` where ``answer``
is the number (or text ending ``#### N``); MATH ``{"problem", "solution", ...}`` with the
answer in the solution's last ``\\boxed{}``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import BadInputError
from workflows.answers import answers_match, extract_boxed, last_number, normalize_answer

__all__ = ["SPECS", "DatasetSpec", "Item", "detect_dataset", "get_spec", "load_items", "split_items"]


@dataclass(frozen=True)
class Item:
    """One question with its gold answer."""

    id: str
    """Stable id (the row's own, or a hash of the question)."""
    question: str
    """The question text shown to the model."""
    gold: str
    """The gold final answer (already extracted from any worked solution)."""

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "question": self.question, "gold": self.gold}


def _gsm8k_gold(row: dict[str, Any]) -> str:
    raw = "" if row.get("answer") is None else str(row["answer"])
    return raw.split("####")[-1].strip() if "####" in raw else raw.strip()


def _math_gold(row: dict[str, Any]) -> str:
    if "answer" in row and row["answer"] not in (None, ""):
        return str(row["answer"]).strip()
    boxed = extract_boxed(str(row.get("solution", "")))
    if boxed is None:
        raise BadInputError("MATH row", "a solution with a \\boxed{} answer", str(row)[:80])
    return boxed


def _scalar(value: Any) -> bool:
    """Null, a string or a number (not a bool)."""
    return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))


def _stable_id(prefix: str, text: str) -> str:
    return f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class DatasetSpec:
    """How one dataset is read, prompted and scored."""

    name: str
    """Short name (``gsm8k``, ``math``)."""
    question_key: str
    """Row field holding the question."""
    gold: Callable[[dict[str, Any]], str]
    """Extracts the gold final answer from a row."""
    answer_instruction: str
    """How a solution must state its final answer."""
    answer_hint: str
    """What an answer looks like, for the probe prompt."""

    def item(self, row: dict[str, Any]) -> Item:
        """The row as an item; a row without a question (missing, not a string, or blank), or
        whose id or gold answer is a list, an object or a bool, is refused (the run's budget is
        split over its rows: none is dropped silently). A null answer is no answer."""
        if not isinstance(row, dict) or self.question_key not in row:
            raise BadInputError(f"{self.name} row", f'an object with a "{self.question_key}" field', str(row)[:80])
        question = row[self.question_key]
        if not isinstance(question, str) or not question.strip():
            raise BadInputError(f"{self.name} row", f'"{self.question_key}": a non-empty string', str(row)[:80])
        for key in ("id", "unique_id", "answer", "solution"):
            if not _scalar(row.get(key)):
                raise BadInputError(f"{self.name} row", f'"{key}": a string, a number or null', str(row)[:80])
        rid = str(row.get("id") or row.get("unique_id") or _stable_id(self.name, question))
        return Item(rid, question, self.gold(row))

    def is_correct(self, prediction: str | None, gold: str) -> bool:
        """Whether ``prediction`` (an extracted final answer) equals ``gold`` after normalisation."""
        if prediction is None:
            return False
        if answers_match(prediction, gold):
            return True
        # Leftover words around a numeric answer ("18 apples"): compare its last number.
        ng = normalize_answer(gold)
        if ng is not None and _NUMERIC_RE.fullmatch(ng):
            num = last_number(prediction)
            return num is not None and normalize_answer(num) == ng
        return False


_NUMERIC_RE = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")


SPECS: dict[str, DatasetSpec] = {
    "gsm8k": DatasetSpec(
        name="gsm8k",
        question_key="question",
        gold=_gsm8k_gold,
        answer_instruction="End with a final line of the form '#### <number>'.",
        answer_hint="a number",
    ),
    "math": DatasetSpec(
        name="math",
        question_key="problem",
        gold=_math_gold,
        answer_instruction="Write the final answer in \\boxed{} on the last line.",
        answer_hint="a number or a short LaTeX expression",
    ),
}


def get_spec(name: str) -> DatasetSpec:
    try:
        return SPECS[name.lower()]
    except KeyError:
        raise BadInputError("dataset", f"one of {sorted(SPECS)}", name) from None


def detect_dataset(rows: Iterable[dict[str, Any]], path: str | Path | None = None) -> str:
    """The dataset of ``rows``: the first row with a question field decides (``problem``: MATH,
    ``question``: GSM8K); without one, a dataset name in the file's ``path``; else GSM8K. The
    rows come first: a held-out file's path need not name its dataset (``/data/test.jsonl``), and
    may name another (``/home/mathieu/gsm8k-test.jsonl``)."""
    for row in rows:
        if isinstance(row, dict) and ("problem" in row or "question" in row):
            return "math" if "problem" in row else "gsm8k"
    if path is not None:
        lowered = Path(path).name.lower() if Path(path).suffix else str(path).lower()
        for name in SPECS:
            if name in lowered:
                return name
    return "gsm8k"


def dataset_file(path: str | Path) -> Path:
    """The jsonl file of a dataset path: the file itself, or in a folder its ``validate.jsonl``
    (else its first ``*.jsonl``)."""
    p = Path(path)
    if p.is_dir():
        preferred = p / "validate.jsonl"
        candidates = [preferred] if preferred.exists() else sorted(p.glob("*.jsonl"))
        if not candidates:
            raise BadInputError("dataset path", "a .jsonl file or a folder with one", str(p))
        p = candidates[0]
    if not p.is_file():
        raise BadInputError("dataset path", "a .jsonl file or a folder with one", f"no such file: {p}")
    return p


def _numbered_rows(path: str | Path) -> tuple[Path, list[tuple[int, Any]]]:
    p = dataset_file(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(str(p), "UTF-8 text, one JSON object per line", str(exc)) from None
    rows = []
    for num, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append((num, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise BadInputError(f"{p}:{num}", "one JSON object per line", exc.msg) from None
    return p, rows


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a dataset path (:func:`dataset_file`); a line that is not JSON is an error
    naming it (the budget is split over the rows: none is dropped)."""
    return [row for _, row in _numbered_rows(path)[1]]


def load_dataset(path: str | Path, dataset: str | None = None, *, limit: int | None = None) -> tuple[str, list[Item]]:
    """The dataset name and items of a JSONL file or folder; ``dataset`` is detected from the
    rows when not given. A row that is not an item is an error naming its file and line."""
    file, numbered = _numbered_rows(path)
    spec = get_spec(dataset or detect_dataset((row for _, row in numbered), file))
    items = []
    for num, row in numbered:
        try:
            items.append(spec.item(row))
        except BadInputError as exc:
            raise BadInputError(f"{file}:{num}: {exc.what}", exc.expected, exc.detail) from None
    return spec.name, items[:limit] if limit is not None else items


def load_items(path: str | Path, dataset: str | None = None, *, limit: int | None = None) -> list[Item]:
    """Items of a JSONL file; ``dataset`` is detected from the rows when not given."""
    return load_dataset(path, dataset, limit=limit)[1]


def split_items(items: list[Item], eval_fraction: float, *, salt: str = "drqa") -> tuple[list[Item], list[Item]]:
    """Deterministic train/eval split by a hash of each id (stable across file orderings)."""
    train: list[Item] = []
    held_out: list[Item] = []
    for it in items:
        h = int(hashlib.sha256(f"{salt}:{it.id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (held_out if h < eval_fraction else train).append(it)
    return train, held_out
