"""Task datasets: how a row becomes a question, how an agent's output becomes a solution, and
how a solution is scored. Built in: gsm8k and math (answer checking), humaneval and mbpp (tests
run in the python sandbox). Users bring any jsonl with :func:`register_dataset`.

Code scoring needs a runner (``code -> ExecResult``) so this module stays free of I/O; the
workflow passes one backed by ``ctx.call_tool`` and the sandbox tool.
"""

from __future__ import annotations

import ast
import doctest
import json
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from orchestrator.errors import BadInputError
from workflows.answers import extract_boxed
from workflows.priordynaflow.config import lookup


@dataclass(frozen=True)
class ExecResult:
    """What running a program returned: ``ok`` when it exited cleanly."""

    ok: bool
    output: str

    @property
    def passed(self) -> bool:
        """Whether the program exited cleanly and printed :data:`PASS_SENTINEL` (its checks passed)."""
        return self.ok and PASS_SENTINEL in self.output


Runner = Callable[[str], Awaitable[ExecResult]]
Scorer = Callable[[dict[str, Any], "str | None", Runner], Awaitable[bool]]


@dataclass(frozen=True)
class Dataset:
    """How the workflow reads and scores rows of one dataset.

    name: dataset name (``ctx.config["priordynaflow"]["dataset"]``).
    roster: the agent roster (and default Q-table family) its tasks use.
    question: the task text shown to the agents.
    answer_format: the instruction on how to state the answer, appended to every agent's prompt.
    extract: the solution found in one agent turn's text (None when it has none).
    score: whether a solution is correct for a row (async: code runs in the sandbox).
    shown_examples: the program that runs a solution against the examples the question shows
        (they are part of the task, not of its hidden tests) and prints :data:`PASS_SENTINEL`
        when they pass; None when the row shows none or the dataset has no such check.
    fields: the types its rows' fields must have where present (:func:`field_problem`).
    """

    name: str
    roster: str
    question: Callable[[dict[str, Any]], str]
    answer_format: str
    extract: Callable[[str, dict[str, Any]], str | None]
    score: Scorer
    shown_examples: Callable[[dict[str, Any], str], str | None] | None = None
    fields: tuple[str, ...] = ()

    def has_gold(self, row: dict[str, Any]) -> bool:
        return any(k in row for k in ("answer", "solution", "test", "test_list"))


FIELD_KINDS: dict[str, str] = {
    "question": "text", "problem": "text", "prompt": "text", "solution": "text", "test": "text",
    "entry_point": "name", "answer": "answer", "test_list": "texts", "test_imports": "texts",
}
"""What each field of the built-in datasets' rows holds (the question, the gold answer, the tests
and the function name are put into prompts and programs)."""

_KIND_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "text": (lambda v: isinstance(v, str), "a string"),
    "name": (lambda v: isinstance(v, str) and v.isidentifier(), "a Python function name"),
    "answer": (lambda v: isinstance(v, str | int | float) and not isinstance(v, bool), "a string or a number"),
    "texts": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings"),
}


def field_problem(row: dict[str, Any], fields: tuple[str, ...]) -> str | None:
    """The first of ``fields`` that ``row`` has with a value of the wrong kind (:data:`FIELD_KINDS`),
    described; None when each is absent or right."""
    for name in fields:
        if name in row:
            ok, what = _KIND_CHECKS[FIELD_KINDS[name]]
            if not ok(row[name]):
                return f"{name!r} must be {what}, got {json.dumps(row[name], default=str)[:80]}"
    return None


# ---------------------------------------------------------------- answers

_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
_HASHES_RE = re.compile(r"####\s*([^\n]+)")





def extract_hashes(text: str) -> str | None:
    """What follows the last ``####`` marker on its line, or None."""
    found = _HASHES_RE.findall(text)
    return found[-1].strip() if found else None


def to_number(text: str) -> Fraction | None:
    """The number ``text`` denotes once units, $, commas and LaTeX wrappers are dropped."""
    cleaned = normalize_math(text)
    frac = re.fullmatch(r"(-?)\\frac\{(-?\d+)\}\{(\d+)\}", cleaned)
    if frac:
        sign = -1 if frac.group(1) else 1
        return sign * Fraction(int(frac.group(2)), int(frac.group(3)))
    match = _NUMBER_RE.search(cleaned)
    if match is None or match.group(0) != cleaned:
        return None
    try:
        return Fraction(match.group(0).replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def normalize_math(text: str) -> str:
    """A canonical string form of a math answer (spacing, $, \\left/\\right, dfrac, units)."""
    s = text.strip().strip(".").strip()
    s = re.sub(r"\\text\{\s*([^}]*)\}", r"\1", s)
    for old, new in (("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\left", ""), ("\\right", ""),
                     ("\\!", ""), ("\\,", ""), ("\\$", ""), ("$", ""), ("^\\circ", ""), ("^{\\circ}", ""),
                     ("\\%", ""), ("%", ""), ("degrees", ""), ("dollars", "")):
        s = s.replace(old, new)
    s = re.sub(r"\s+", "", s)
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    if re.fullmatch(r"-?\d+\.0+", s):
        s = s.split(".")[0]
    return s


def math_equal(predicted: str, gold: str) -> bool:
    """Numeric equality when both sides are numbers, else equality of normalized strings."""
    a, b = to_number(predicted), to_number(gold)
    if a is not None and b is not None:
        return a == b
    return normalize_math(predicted) == normalize_math(gold)


def _last_number(text: str) -> str | None:
    found = _NUMBER_RE.findall(text)
    return found[-1] if found else None


def _gsm8k_gold(row: dict[str, Any]) -> str:
    answer = str(row["answer"])
    return extract_hashes(answer) or answer


def _gsm8k_extract(text: str, _row: dict[str, Any]) -> str | None:
    return extract_hashes(text) or extract_boxed(text)


async def _gsm8k_score(row: dict[str, Any], solution: str | None, _run: Runner) -> bool:
    return solution is not None and math_equal(solution, _gsm8k_gold(row))


def _math_extract(text: str, _row: dict[str, Any]) -> str | None:
    return extract_boxed(text) or extract_hashes(text)


async def _math_score(row: dict[str, Any], solution: str | None, _run: Runner) -> bool:
    gold = extract_boxed(str(row["solution"]))
    return solution is not None and gold is not None and math_equal(solution, gold)


# ---------------------------------------------------------------- code

_CODE_BLOCK_RE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)
PASS_SENTINEL = "__QUOTAFLOW_TESTS_PASSED__"


def without_code(text: str) -> str:
    """``text`` without its fenced code blocks (an unclosed last one, cut by the token limit,
    included)."""
    return re.sub(r"```.*", " ", _CODE_BLOCK_RE.sub(" ", text), flags=re.DOTALL)


def extract_code(text: str, entry_point: str | None = None) -> str | None:
    """The last fenced code block (the last one defining ``entry_point`` when given)."""
    blocks = [b.strip() for b in _CODE_BLOCK_RE.findall(text)]
    if entry_point:
        blocks = [b for b in blocks if re.search(rf"def\s+{re.escape(entry_point)}\s*\(", b)]
    return blocks[-1] if blocks else None


def test_program(row: dict[str, Any], code: str) -> str:
    """The program that runs ``row``'s tests against ``code`` and prints the pass sentinel."""
    entry_point = row["entry_point"]
    test = row["test"]
    imports = "\n".join(row.get("test_imports") or [])
    call = f"check({entry_point})" if re.search(r"def\s+check\s*\(\s*\w", test) else "check()"
    return f"{imports}\n{code}\n\n{test}\n\n{call}\nprint({PASS_SENTINEL!r})\n"


async def _code_score(row: dict[str, Any], solution: str | None, run: Runner) -> bool:
    if not solution:
        return False
    result = await run(test_program(row, solution))
    return result.passed


def _code_extract(text: str, row: dict[str, Any]) -> str | None:
    return extract_code(text, row.get("entry_point"))


def mbpp_shown_examples(row: dict[str, Any], code: str) -> str | None:
    """``code`` then the one test the MBPP question shows (``test_list[0]``), then the sentinel."""
    example = (row.get("test_list") or [""])[0]
    if not example:
        return None
    imports = "\n".join(row.get("test_imports") or [])
    return f"{imports}\n{code}\n\n{example}\nprint({PASS_SENTINEL!r})\n"


def humaneval_shown_examples(row: dict[str, Any], code: str) -> str | None:
    """``code`` then the ``>>>`` examples of the entry point's docstring in the prompt, run by
    :mod:`doctest` (whitespace-normalised); the sentinel when every one gives the shown output.
    None when the docstring has no ``>>>`` example (many state theirs in prose)."""
    docstring = _docstring(str(row.get("prompt", "")), str(row.get("entry_point", "")))
    try:
        if not docstring or not doctest.DocTestParser().get_examples(docstring):
            return None
    except ValueError:  # examples doctest cannot read (inconsistent indentation)
        return None
    return (
        f"{code}\n\nimport doctest as _qf_doctest\n"
        f"_qf_test = _qf_doctest.DocTestParser().get_doctest({docstring!r}, dict(globals()), 'shown', None, 0)\n"
        "_qf_runner = _qf_doctest.DocTestRunner(optionflags=_qf_doctest.NORMALIZE_WHITESPACE)\n"
        "_qf_runner.run(_qf_test)\n"
        f"if _qf_runner.failures == 0:\n    print({PASS_SENTINEL!r})\n"
    )


def _docstring(prompt: str, entry_point: str) -> str | None:
    """The docstring of function ``entry_point`` in ``prompt`` (a header and docstring, no body)."""
    try:
        tree = ast.parse(prompt + "\n    pass\n")
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry_point:
            return ast.get_docstring(node)
    return None


def _humaneval_question(row: dict[str, Any]) -> str:
    return f"Complete this Python function (keep its name and signature):\n\n{row['prompt']}"


def _mbpp_question(row: dict[str, Any]) -> str:
    example = (row.get("test_list") or [""])[0]
    text = f"{row['prompt']}\n\nThe function is named {row['entry_point']}."
    return f"{text} It must pass, for example:\n{example}" if example else text


_MATH_FORMAT_HASHES = "State the final answer on its own line as '#### <number>' (digits only, no units)."
_MATH_FORMAT_BOXED = "State the final answer as \\boxed{<answer>} in simplest exact form."
_CODE_FORMAT = "Any code you propose goes in one ```python block with the complete function."

_DATASETS: dict[str, Dataset] = {}


def register_dataset(dataset: Dataset) -> Dataset:
    """Make ``dataset`` available to the workflow and the benchmark under its name."""
    _DATASETS[dataset.name] = dataset
    return dataset


def get_dataset(name: str) -> Dataset:
    return lookup(_DATASETS, name, "dataset")


def infer_dataset(row: dict[str, Any]) -> str:
    """The built-in dataset a row's keys look like (for tasks given without a dataset name)."""
    if "test_list" in row:
        return "mbpp"
    if "entry_point" in row:
        return "humaneval"
    if "problem" in row:
        return "math"
    return "gsm8k"


register_dataset(Dataset("gsm8k", "math", lambda r: str(r["question"]), _MATH_FORMAT_HASHES,
                         _gsm8k_extract, _gsm8k_score, fields=("question", "answer")))
register_dataset(Dataset("math", "math", lambda r: str(r["problem"]), _MATH_FORMAT_BOXED,
                         _math_extract, _math_score, fields=("problem", "solution")))
register_dataset(Dataset("humaneval", "code-check", _humaneval_question, _CODE_FORMAT, _code_extract, _code_score,
                         humaneval_shown_examples, fields=("prompt", "entry_point", "test")))
register_dataset(Dataset("mbpp", "code-check", _mbpp_question, _CODE_FORMAT, _code_extract, _code_score,
                         mbpp_shown_examples, fields=("prompt", "entry_point", "test", "test_list", "test_imports")))


def jsonl_dataset(
    name: str,
    *,
    roster: str = "math",
    question_key: str = "question",
    answer_key: str = "answer",
    answer_format: str = _MATH_FORMAT_HASHES,
    scorer: Callable[[dict[str, Any], str | None], bool] | None = None,
    extract: Callable[[str, dict[str, Any]], str | None] | None = None,
) -> Dataset:
    """A dataset over any jsonl: the question under ``question_key``; the solution found by
    ``extract(text, row)`` (default: after ``####``, in ``\\boxed{}``, else the last number);
    scored by ``scorer(row, solution)`` or, without one, by :func:`math_equal` against
    ``row[answer_key]``."""

    async def score(row: dict[str, Any], solution: str | None, _run: Runner) -> bool:
        if scorer is not None:
            return scorer(row, solution)
        return solution is not None and math_equal(solution, str(row[answer_key]))

    def default_extract(text: str, _row: dict[str, Any]) -> str | None:
        return extract_hashes(text) or extract_boxed(text) or _last_number(text)

    return Dataset(name, roster, lambda r: str(r[question_key]), answer_format, extract or default_extract, score)


def load_jsonl(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    for num, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise BadInputError(f"{path}:{num}", "one JSON object per line", str(exc)) from None
    return rows


def cv_folds(num_items: int, num_folds: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """K-fold cross-validation over ``range(num_items)``: (train, eval) index lists per fold;
    every index is evaluated exactly once, folds differ in size by at most one."""
    if num_folds < 2 or num_folds > num_items:
        raise BadInputError("num_folds", f"an integer in [2, {num_items}]", f"got {num_folds}")
    order = list(range(num_items))
    random.Random(seed).shuffle(order)
    folds = [sorted(order[k::num_folds]) for k in range(num_folds)]
    return [
        (sorted(i for j, f in enumerate(folds) if j != k for i in f), folds[k]) for k in range(num_folds)
    ]
