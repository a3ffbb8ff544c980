"""The PriorDynaFlow benchmark reads held-out splits as well as the validation ones: a dataset
from ``--data-dir``/``--split`` or its own file, rows the workflow cannot read left out and
reported (not a crash halfway through a GPU run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.priordynaflow.run import load_rows, parse_args
from orchestrator.errors import BadInputError

GOOD = {"prompt": "Add two numbers.", "entry_point": "add", "test_list": ["assert add(1, 2) == 3"],
        "test": "def check(f):\n    assert f(2, 2) == 4\n"}


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_named_file_or_a_split_of_the_data_dir_is_read(tmp_path: Path) -> None:
    held_out = _write(tmp_path / "held" / "mbpp.jsonl", [json.dumps(GOOD)] * 3)
    _write(tmp_path / "data" / "gsm8k" / "test.jsonl", [json.dumps({"question": "1 + 1?", "answer": "#### 2"})])
    args = parse_args(["--datasets", f"mbpp={held_out},gsm8k", "--data-dir", str(tmp_path / "data"),
                       "--split", "test"])
    assert args.datasets == ["mbpp", "gsm8k"] and args.dataset_files == {"mbpp": str(held_out)}
    rows = load_rows(args.datasets, None, 0, files=args.dataset_files, data_dir=Path(args.data_dir), split=args.split)
    assert len(rows["mbpp"]) == 3 and rows["gsm8k"][0]["question"] == "1 + 1?"


def test_unreadable_rows_are_skipped_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "mbpp.jsonl", [json.dumps(GOOD), "not json", json.dumps([1, 2]),
                                            json.dumps({**GOOD, "entry_point": "add(); import os"}), "",
                                            json.dumps({**GOOD, "prompt": None}), json.dumps(GOOD)])
    skipped: dict[str, list[str]] = {}
    rows = load_rows(["mbpp"], None, 0, files={"mbpp": str(path)}, skipped=skipped)
    assert len(rows["mbpp"]) == 2
    assert [line.split(": ", 1)[0] for line in skipped["mbpp"]] == [f"{path}:{n}" for n in (2, 3, 4, 6)]
    assert "'entry_point' must be a Python function name" in skipped["mbpp"][2]
    assert f"skipped {path}:2: not JSON" in capsys.readouterr().err


def test_a_dataset_with_no_readable_row_or_no_file_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "gsm8k.jsonl", [json.dumps({"question": 7})])
    with pytest.raises(BadInputError, match="at least one gsm8k row"):
        load_rows(["gsm8k"], None, 0, files={"gsm8k": str(path)})
    with pytest.raises(BadInputError, match="an existing jsonl file"):
        load_rows(["gsm8k"], None, 0, files={"gsm8k": str(tmp_path / "missing.jsonl")})
    with pytest.raises(SystemExit):
        parse_args(["--datasets", "gsm9k"])
