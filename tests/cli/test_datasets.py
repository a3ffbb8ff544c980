"""Issue 21: dataset runs: exit codes from their items, rows that are skipped, per-item results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


@pytest.fixture
def mixed(env: dict[str, Path]) -> dict[str, Path]:
    """An agent that answers questions about France at once and searches forever otherwise."""
    script = env["home"] / "mixed.json"
    script.write_text(json.dumps({"France": "answer: Paris", ".*": "search: capital"}))
    return {**env, "script": script}


def _dataset(home: Path, *rows: object) -> Path:
    path = home / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run(env: dict[str, Path], data: Path, *extra: str) -> object:
    return runner.invoke(app, ["run", "react", "--dataset", str(data), "--backend", "scripted",
                               "--script", str(env["script"]), *extra])


@pytest.mark.parametrize(
    ("questions", "code"),
    [
        (["France?", "France again?"], 0),
        (["France?", "Other?"], 5),  # partial: one item paused on its budget
        (["Other?", "Else?"], 3),  # every item paused: the items' common code
    ],
)
def test_a_dataset_run_exits_with_its_items_outcome(mixed: dict[str, Path], questions: list[str],
                                                   code: int) -> None:
    data = _dataset(mixed["home"], *({"question": q} for q in questions))
    res = _run(mixed, data, "--budget", "tokens=150")
    assert res.exit_code == code, res.output  # type: ignore[attr-defined]


def test_every_item_failing_on_the_engine_exits_4(env: dict[str, Path]) -> None:
    data = _dataset(env["home"], {"question": "a?"}, {"question": "b?"})
    res = runner.invoke(app, ["run", "react", "--dataset", str(data), "--backend", "openai",
                              "--base-url", "http://127.0.0.1:9/v1", "--model", "m"])
    assert res.exit_code == 4, res.output


def test_rows_without_a_question_are_skipped_with_their_line(mixed: dict[str, Path]) -> None:
    data = _dataset(mixed["home"], {}, {"question": ""}, {"question": 42}, {"question": "France?"})
    res = _run(mixed, data)
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    stderr = res.stderr  # type: ignore[attr-defined]
    assert f"skipped {data}:1: missing \"question\"" in stderr
    assert f"skipped {data}:2: \"question\" is empty" in stderr
    assert f"skipped {data}:3: \"question\" is not a string (42)" in stderr
    assert "items: {'count': 1, 'by_status': {'succeeded': 1}}" in res.stdout  # type: ignore[attr-defined]


def test_text_output_lists_each_item_with_its_run_id(mixed: dict[str, Path]) -> None:
    data = _dataset(mixed["home"], {"question": "France?"}, {"question": "Other?"})
    res = _run(mixed, data, "--budget", "tokens=150")
    report = json.loads(runner.invoke(app, ["runs", "list", "--json"]).output)
    children = {r["run_id"]: r for r in report if r["parent_id"]}
    assert len(children) == 2
    out = res.stdout  # type: ignore[attr-defined]
    for run_id, row in children.items():
        line = next(ln for ln in out.splitlines() if run_id in ln)
        assert row["status"] in line
        if row["status"] == "succeeded":
            assert "Paris" in line
        else:
            assert "budget exhausted" in line
    assert "RUN_ID" not in out


def test_priordynaflow_reads_code_and_math_rows_by_their_keys(env: dict[str, Path]) -> None:
    # An MBPP row has no "question": the workflow reads it by its own keys (the code-check roster,
    # the shown example run in the real sandbox); a row it cannot read is skipped with the key.
    script = env["home"] / "pdf.json"
    script.write_text(json.dumps({"(?s).*Add two numbers.*": "```python\ndef add(a, b):\n    return a + b\n```",
                                  ".*": "2 + 2 = 4\n#### 4"}))
    mbpp = {"prompt": "Add two numbers.", "entry_point": "add", "test_list": ["assert add(1, 2) == 3"],
            "test": "def check():\n    assert add(2, 2) == 4\n"}
    data = _dataset(env["home"], mbpp, {"prompt": "Add two numbers.", "test_list": ["assert add(1, 2) == 3"]},
                    {"question": "What is 2 + 2?", "answer": "4"})
    res = runner.invoke(app, ["run", "priordynaflow", "--dataset", str(data), "--backend", "scripted",
                              "--script", str(script), "--json"])
    assert res.exit_code == 0, res.output
    assert f"skipped {data}:2: missing 'entry_point' (read as a mbpp row" in res.stderr
    report = json.loads(runner.invoke(app, ["runs", "list", "--json"]).output)
    results = [json.loads(runner.invoke(app, ["runs", "show", r["run_id"], "--json"]).output)["result"]
               for r in report if r["parent_id"]]
    assert sorted(r["path"] for r in results) == [["coder", "runner"], ["solver"]]
    assert all(r["success"] is True for r in results)  # scored: the MBPP code by its tests
