"""Answer extraction and scoring of the task datasets, code scoring in the real sandbox, and the
cross-validation split."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from orchestrator.tools.sandbox import run_python
from workflows.priordynaflow.tasks import (
    ExecResult,
    cv_folds,
    extract_boxed,
    extract_code,
    get_dataset,
    infer_dataset,
    jsonl_dataset,
    load_jsonl,
    math_equal,
)

DATA = Path("/work/shared/data")


async def sandbox(code: str) -> ExecResult:
    result = await asyncio.to_thread(run_python, code)
    return ExecResult(result.ok, result.stdout + result.stderr)


def score(dataset: str, row: dict, text: str) -> bool:
    ds = get_dataset(dataset)
    return asyncio.run(ds.score(row, ds.extract(text, row), sandbox))


def test_gsm8k_reads_the_answer_after_hashes_and_compares_numbers():
    row = {"question": "q", "answer": "65,960"}
    assert score("gsm8k", row, "so 65960 in total\n#### 65960")
    assert score("gsm8k", row, "#### $65,960.00")
    assert not score("gsm8k", row, "#### 65961")
    assert not score("gsm8k", row, "the answer is 65960")  # no marker: not extracted
    assert score("gsm8k", {"answer": "long cot\n#### 12"}, "#### 12")


def test_math_compares_boxed_answers():
    row = {"problem": "p", "solution": "so $2x=\\boxed{\\frac{135}{2}}$ degrees"}
    assert extract_boxed("a \\boxed{\\frac{1}{2}} b") == "\\frac{1}{2}"
    assert score("math", row, "... = \\boxed{\\dfrac{135}{2}}")
    assert score("math", row, "\\boxed{67.5}")
    assert not score("math", row, "\\boxed{135}")
    assert math_equal("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})")
    assert math_equal("90^\\circ", "90")


HUMANEVAL_ROW = {
    "task_id": "HumanEval/x",
    "prompt": "def add(a, b):\n",
    "entry_point": "add",
    "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n",
}


def test_code_scoring_runs_the_tests_in_the_sandbox():
    good = "Here:\n```python\ndef add(a, b):\n    return a + b\n```\nNEXT: END"
    bad = "```python\ndef add(a, b):\n    return a - b\n```"
    assert score("humaneval", HUMANEVAL_ROW, good)
    assert not score("humaneval", HUMANEVAL_ROW, bad)
    assert not score("humaneval", HUMANEVAL_ROW, "no code")


def test_mbpp_check_without_candidate_and_the_real_first_row():
    row = json.loads((DATA / "mbpp/validate.jsonl").read_text().splitlines()[0])
    assert score("mbpp", row, f"```python\n{row['code']}\n```")
    assert not score("mbpp", row, f"```python\ndef {row['entry_point']}(arr):\n    return -1\n```")
    assert "assert" in get_dataset("mbpp").question(row)  # one public test is shown


def test_code_extraction_prefers_blocks_defining_the_entry_point():
    text = "```python\ndef add(a, b):\n    return a+b\n```\n```python\nassert add(1, 2) == 3\n```"
    assert extract_code(text, "add").startswith("def add")
    assert extract_code(text).startswith("assert")


def test_dataset_inference_from_row_keys():
    assert infer_dataset({"question": "x"}) == "gsm8k"
    assert infer_dataset({"problem": "x"}) == "math"
    assert infer_dataset(HUMANEVAL_ROW) == "humaneval"
    assert infer_dataset({"entry_point": "f", "test_list": []}) == "mbpp"


def test_user_jsonl_with_a_scorer(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"q": "capital of France?", "gold": "Paris"}\n\n')
    rows = load_jsonl(path)
    ds = jsonl_dataset("capitals", question_key="q", scorer=lambda row, sol: sol == row["gold"],
                       extract=lambda text, row: text.strip().split()[-1])
    assert ds.question(rows[0]) == "capital of France?"
    assert asyncio.run(ds.score(rows[0], ds.extract("it is Paris", rows[0]), sandbox))
    numeric = jsonl_dataset("numbers", answer_key="gold")
    assert asyncio.run(numeric.score({"gold": "4"}, numeric.extract("2+2 = 4", {}), sandbox))


@pytest.mark.parametrize(("num_items", "num_folds"), [(10, 2), (11, 3), (33, 5)])
def test_cv_folds_partition_the_items(num_items, num_folds):
    folds = cv_folds(num_items, num_folds, seed=1)
    evaluated = sorted(i for _, ev in folds for i in ev)
    assert evaluated == list(range(num_items))
    sizes = [len(ev) for _, ev in folds]
    assert max(sizes) - min(sizes) <= 1
    for train, ev in folds:
        assert not set(train) & set(ev) and len(train) + len(ev) == num_items
    assert cv_folds(num_items, num_folds, seed=1) == folds


def test_the_examples_a_code_task_shows_run_against_a_solution_in_the_sandbox():
    from workflows.priordynaflow.tasks import PASS_SENTINEL, humaneval_shown_examples, mbpp_shown_examples

    def passes(program: str | None) -> bool:
        assert program is not None
        result = asyncio.run(sandbox(program))
        return result.ok and PASS_SENTINEL in result.output

    mbpp = {"prompt": "Add two numbers.", "entry_point": "add", "test_imports": ["import math"],
            "test_list": ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]}
    assert passes(mbpp_shown_examples(mbpp, "def add(a, b):\n    return a + b"))
    assert not passes(mbpp_shown_examples(mbpp, "def add(a, b):\n    return a - b"))
    assert mbpp_shown_examples({**mbpp, "test_list": []}, "x = 1") is None
    prompt = ('def double(xs):\n    """Each item twice.\n    >>> double([1, 2])\n    [2, 4]\n'
              '    >>> double([])\n    []\n    """\n')
    humaneval = {"prompt": prompt, "entry_point": "double"}
    assert passes(humaneval_shown_examples(humaneval, prompt + "    return [2 * x for x in xs]\n"))
    assert not passes(humaneval_shown_examples(humaneval, prompt + "    return xs\n"))
    # Examples in prose, or ones doctest cannot read, are no check.
    prose = 'def f(x):\n    """For example f(1) == 2."""\n'
    assert humaneval_shown_examples({"prompt": prose, "entry_point": "f"}, "def f(x): return 2") is None
    bad = 'def f(x):\n    """\n    >>> f("a\n  b")\n    1\n    """\n'
    assert humaneval_shown_examples({"prompt": bad, "entry_point": "f"}, "def f(x): return 1") is None
    assert get_dataset("gsm8k").shown_examples is None and get_dataset("humaneval").shown_examples is not None
