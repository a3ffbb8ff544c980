"""The operator's CLI through Typer's CliRunner: runs, reports, resume, and errors with exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def _json(output: str) -> dict:  # type: ignore[type-arg]
    return json.loads(output[output.index("{"):])


def test_run_show_list_and_json(env: dict[str, Path]) -> None:
    res = runner.invoke(app, ["run", "react", "--task", "Capital of France?", "--backend", "scripted",
                              "--script", str(env["script"]), "--budget", "search=3,tokens=5000", "--json"])
    assert res.exit_code == 0, res.output
    report = _json(res.output)
    assert report["status"] == "succeeded" and report["result"]["answer"] == "Paris"
    assert report["tools"][0]["tool"] == "search" and report["tools"][0]["units"] == 1
    run_id = report["run_id"]
    shown = runner.invoke(app, ["runs", "show", run_id, "--json"])
    assert shown.exit_code == 0 and _json(shown.output)["trajectory"][0]["node"] == "agent"
    listed = runner.invoke(app, ["runs", "list", "--json"])
    assert [r["run_id"] for r in json.loads(listed.output)] == [run_id]
    human = runner.invoke(app, ["runs", "show", run_id])
    assert "answer:" in human.output and "ledger" in human.output and "unified cost" in human.output


def test_dataset_run_with_a_malformed_line(env: dict[str, Path]) -> None:
    data = env["home"] / "tasks.jsonl"
    data.write_text('{"question": "Capital of France?"}\nnot json\n{"question": "Again?"}\n')
    script = env["home"] / "loop.json"
    script.write_text(json.dumps({".*": "answer: Paris"}))
    res = runner.invoke(app, ["run", "react", "--dataset", str(data), "--backend", "scripted", "--script",
                              str(script), "--concurrency", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert "tasks.jsonl:2: not JSON" in res.output
    report = _json(res.output[res.output.index("\n{") :])
    assert report["items"] == {"count": 2, "by_status": {"succeeded": 2}}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["run", "nosuchflow", "--task", "q"], 2, "No such command"),
        (["run", "react", "--task", "q", "--budget", "search=lots"], 2, "budget item 'search=lots'"),
        (["run", "react", "--dataset", "/nonexistent.jsonl"], 2, "dataset /nonexistent.jsonl"),
        (["run", "react", "--task", "q", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
          "--model", "m"], 4, "LLM server unavailable"),
        (["runs", "show", "nope"], 2, "no run 'nope'"),
        (["run", "react", "--task", "q", "--backend", "warp"], 2, "warp"),
    ],
)
def test_bad_input_gives_clear_errors(env: dict[str, Path], args: list[str], code: int, message: str) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == code, res.output
    assert message in res.output


def test_budget_pause_then_resume_from_the_cli(env: dict[str, Path]) -> None:
    res = runner.invoke(app, ["run", "react", "--task", "Capital of France?", "--backend", "scripted", "--script",
                              str(env["script"]), "--budget", "tokens=200", "--json"])
    assert res.exit_code == 3, res.output
    run_id = _json(res.stdout)["run_id"]
    assert _json(res.stdout)["status"] == "paused"
    more = runner.invoke(app, ["resume", run_id, "--budget", "tokens=+5000", "--json"])
    assert more.exit_code == 0, more.output
    assert _json(more.output)["result"]["answer"] == "Paris"


def test_db_upgrade(env: dict[str, Path]) -> None:
    res = runner.invoke(app, ["db", "upgrade"])
    assert res.exit_code == 0 and "revision 0005" in res.output


def test_run_exposes_metrics_on_the_requested_port(env: dict[str, Path]) -> None:
    import socket

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    res = runner.invoke(app, ["run", "react", "--task", "Capital of France?", "--backend", "scripted",
                              "--script", str(env["script"]), "--metrics-port", str(port), "--json"])
    assert res.exit_code == 0, res.output
    scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert 'quotaflow_tool_calls_total{outcome="ok",tool="search"}' in scraped


def test_a_paused_run_names_its_own_id_in_the_resume_hint(env: dict[str, Path]) -> None:
    res = runner.invoke(app, ["run", "react", "--task", "Capital of France?", "--backend", "scripted", "--script",
                              str(env["script"]), "--budget", "tokens=200"])
    assert res.exit_code == 3, res.output
    run_id = json.loads(runner.invoke(app, ["runs", "list", "--json"]).output)[0]["run_id"]
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: budget exhausted")
    assert f"quotaflow resume {run_id} --budget tokens=+N" in res.stderr
    assert "RUN_ID" not in res.output
