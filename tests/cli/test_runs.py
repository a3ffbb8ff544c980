"""Issue 21: `runs list` shows whole ids, one-line answers and zoned times; run id prefixes work."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def _paused_and_succeeded(env: dict[str, Path]) -> tuple[str, str]:
    script = env["home"] / "long.json"
    # The reading call answers a long sentence; the extraction's empty reply keeps it.
    script.write_text(json.dumps(["search: capital of France", "answer: Paris",
                                  "Paris, which is " + "very " * 30 + "big", ""]))
    for budget in ("tokens=200", "tokens=5000"):
        runner.invoke(app, ["run", "react", "--task", "Capital of France?", "--backend", "scripted",
                            "--script", str(script), "--budget", budget])
    rows = json.loads(runner.invoke(app, ["runs", "list", "--json"]).output)
    by_status = {r["status"]: r["run_id"] for r in rows}
    return by_status["paused"], by_status["succeeded"]


def test_runs_list_at_80_columns(env: dict[str, Path]) -> None:
    paused, succeeded = _paused_and_succeeded(env)
    res = runner.invoke(app, ["runs", "list"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert any(paused in ln for ln in lines) and any(succeeded in ln for ln in lines), res.output
    answer_lines = [ln for ln in lines if succeeded in ln]
    assert len(answer_lines) == 1 and "Paris" in answer_lines[0]
    assert "big" not in res.output  # the answer's end is clipped, not wrapped onto more lines
    rows = json.loads(runner.invoke(app, ["runs", "list", "--json"]).output)
    assert all(datetime.fromisoformat(r["created_at"]).tzinfo is not None for r in rows)


def test_a_unique_prefix_names_a_run(env: dict[str, Path]) -> None:
    paused, succeeded = _paused_and_succeeded(env)
    shown = runner.invoke(app, ["runs", "show", succeeded[:6], "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output[shown.output.index("{"):])["run_id"] == succeeded
    resumed = runner.invoke(app, ["resume", paused[:6], "--budget", "tokens=+5000", "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.output[resumed.output.index("{"):])["run_id"] == paused


def test_an_ambiguous_or_unknown_prefix_is_one_line(env: dict[str, Path]) -> None:
    _paused_and_succeeded(env)
    res = runner.invoke(app, ["runs", "show", ""])
    assert res.exit_code == 2 and res.stderr.startswith("error: run id '': expected a prefix of one run's id")
    res = runner.invoke(app, ["runs", "show", "zz"])
    assert res.exit_code == 2 and "no run 'zz'" in res.stderr
