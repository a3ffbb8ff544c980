"""Issue 21: every failure a user can cause at the command line is one stderr line and an exit code."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("QUOTAFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("QUOTAFLOW_DB_URL", raising=False)
    return tmp_path


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _one_line(res: object, code: int, message: str) -> None:
    assert res.exit_code == code, res.output  # type: ignore[attr-defined]
    lines = res.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.stderr  # type: ignore[attr-defined]


def test_a_file_that_is_not_a_database(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = home / "bad.db"
    bad.write_text("not a database\n" * 100)
    monkeypatch.setenv("QUOTAFLOW_DB_URL", f"sqlite:///{bad}")
    _one_line(runner.invoke(app, ["runs", "list"]), 4, "file is not a database")


@pytest.mark.parametrize("below", ["", "sub"])
def test_a_home_shadowed_by_a_file(home: Path, monkeypatch: pytest.MonkeyPatch, below: str) -> None:
    shadow = home / "shadow"
    shadow.write_text("")
    monkeypatch.setenv("QUOTAFLOW_HOME", str(shadow / below))
    _one_line(runner.invoke(app, ["runs", "list"]), 4, "set QUOTAFLOW_HOME (or --db) to a writable directory")


def test_an_unreachable_postgresql(home: Path) -> None:
    _one_line(runner.invoke(app, ["runs", "list", "--db", "postgresql://u@127.0.0.1:9/x"]), 4, "Connection refused")


def test_a_db_option_that_is_not_a_url(home: Path) -> None:
    _one_line(runner.invoke(app, ["runs", "list", "--db", "notaurl"]), 2, "database URL 'notaurl' is not valid")


def test_a_busy_metrics_port(home: Path, busy_port: int) -> None:
    _one_line(runner.invoke(app, ["metrics", "serve", "--port", str(busy_port)]), 2,
              f"--port {busy_port}: expected a free port")
    _one_line(runner.invoke(app, ["run", "react", "--task", "q", "--metrics-port", str(busy_port)]), 2,
              f"--metrics-port {busy_port}: expected a free port")


def test_a_dataset_that_is_not_utf8(home: Path) -> None:
    data = home / "latin1.jsonl"
    data.write_bytes(json.dumps({"question": "Café?"}, ensure_ascii=False).encode("latin-1"))
    _one_line(runner.invoke(app, ["run", "react", "--dataset", str(data)]), 2, "expected UTF-8 text")


def test_a_task_that_is_malformed_json(home: Path) -> None:
    _one_line(runner.invoke(app, ["run", "react", "--task", '{"question":']), 2,
              "--task: expected a question, or a JSON object (not JSON")


def test_batchprompt_on_a_missing_dataset_stores_no_run(home: Path) -> None:
    _one_line(runner.invoke(app, ["run", "batchprompt", "--dataset", str(home / "nope.jsonl")]), 2,
              "nope.jsonl: expected an existing jsonl file")
    assert runner.invoke(app, ["runs", "list", "--json"]).output.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "scripted"], "--backend scripted: expected --script FILE"),
        (["--backend", "openai", "--base-url", "not-a-url"], "--base-url not-a-url: expected an http(s) URL"),
        (["--backend", "openai", "--base-url", "ftp://host/v1"], "--base-url ftp://host/v1: expected an http(s) URL"),
    ],
)
def test_backend_options_are_checked_before_the_run(home: Path, args: list[str], message: str) -> None:
    _one_line(runner.invoke(app, ["run", "react", "--task", "q", *args]), 2, message)
    assert runner.invoke(app, ["runs", "list", "--json"]).output.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "react", "--task", "q", "--max-turns", "0"], "--max-turns 0: expected a number >= 1"),
        (["run", "react", "--task", "q", "--max-turns", "-3"], "--max-turns -3: expected a number >= 1"),
        (["run", "react", "--dataset", "x.jsonl", "--limit", "-1"], "--limit -1: expected a number >= 0"),
        (["run", "react", "--task", "q", "--concurrency", "0"], "--concurrency 0: expected a number >= 1"),
        (["runs", "list", "--status", "bogus"],
         "--status bogus: expected one of running, paused, succeeded, failed, interrupted, partial"),
    ],
)
def test_nonsense_option_values_are_rejected(home: Path, args: list[str], message: str) -> None:
    _one_line(runner.invoke(app, args), 2, message)


def test_resuming_a_succeeded_run_with_more_budget_says_so(env: dict[str, Path]) -> None:
    ran = runner.invoke(app, ["run", "react", "--task", "Capital of France?", "--backend", "scripted",
                              "--script", str(env["script"]), "--json"])
    assert ran.exit_code == 0, ran.output
    run_id = json.loads(runner.invoke(app, ["runs", "list", "--json"]).output)[0]["run_id"]
    _one_line(runner.invoke(app, ["resume", run_id, "--budget", "search=+5"]), 2, "the run already succeeded")


def test_an_unreachable_server_is_one_stderr_line(env: dict[str, Path]) -> None:
    res = runner.invoke(app, ["run", "react", "--task", "q", "--backend", "openai", "--base-url",
                              "http://127.0.0.1:9/v1", "--model", "m"])
    _one_line(res, 4, "LLM server unavailable")
    assert "LLM server unavailable" not in res.stdout


def test_openai_without_a_base_url_says_which_option(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("QUOTAFLOW_OPENAI_BASE_URLS", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    _one_line(runner.invoke(app, ["run", "react", "--task", "q", "--backend", "openai"]), 2,
              "--backend openai: expected --base-url URL (or QUOTAFLOW_OPENAI_BASE_URLS)")
