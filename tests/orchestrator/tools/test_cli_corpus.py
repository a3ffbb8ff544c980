"""``quotaflow corpus build`` through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.corpus import app
from orchestrator.tools.corpus import Corpus

HOTPOTQA = Path("/work/shared/data/hotpotqa/validate.jsonl")


@pytest.mark.skipif(not HOTPOTQA.is_file(), reason=f"{HOTPOTQA} not present")
def test_build_from_hotpotqa_and_jsonl(tmp_path: Path) -> None:
    extra = tmp_path / "extra.jsonl"
    extra.write_text(
        json.dumps({"title": "Zebra Crossing", "text": "A striped crossing."})
        + "\n"
        + "broken line\n"
    )
    out = tmp_path / "corpus.db"
    result = CliRunner().invoke(
        app, ["build", "--hotpotqa", str(HOTPOTQA), "--jsonl", str(extra), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "2000 documents in" in result.stdout
    assert f"{extra}:2:" in result.output  # the malformed line, with its number
    assert Corpus(out).search("striped crossing")[0].title == "Zebra Crossing"


def test_json_report(tmp_path: Path) -> None:
    docs = tmp_path / "d.jsonl"
    docs.write_text(json.dumps({"title": "A", "text": "alpha"}) + "\n{}\n")
    result = CliRunner().invoke(
        app, ["build", "--jsonl", str(docs), "--out", str(tmp_path / "c.db"), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["num_docs"] == 1 and report["num_malformed"] == 1


def test_bad_input_exits_2(tmp_path: Path) -> None:
    none = CliRunner().invoke(app, ["build", "--out", str(tmp_path / "c.db")])
    assert none.exit_code == 2 and "at least one --hotpotqa PATH or --jsonl PATH" in none.output
    missing = CliRunner().invoke(
        app, ["build", "--jsonl", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "c.db")]
    )
    assert missing.exit_code == 2 and "an existing jsonl file" in missing.output
