"""Issue 21: `quotaflow metrics serve` says what it serves, and its help says what the README does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _first_stderr_line(tmp_path: Path, metrics_dir: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "QUOTAFLOW_METRICS_DIR"}
    env["QUOTAFLOW_HOME"] = str(tmp_path)
    if metrics_dir is not None:
        env["QUOTAFLOW_METRICS_DIR"] = metrics_dir
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "metrics", "serve", "--port", str(_free_port())],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        return proc.stderr.readline()
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.timeout(60)
def test_without_a_metrics_dir_it_says_it_serves_itself_only(tmp_path: Path) -> None:
    line = _first_stderr_line(tmp_path, None)
    assert "this process's metrics only (QUOTAFLOW_METRICS_DIR is not set" in line


@pytest.mark.timeout(60)
def test_with_a_metrics_dir_it_names_it(tmp_path: Path) -> None:
    shared = tmp_path / "prom"
    shared.mkdir()
    assert f"every QuotaFlow process writing to {shared}" in _first_stderr_line(tmp_path, str(shared))


def test_help_matches_the_readme() -> None:
    res = CliRunner().invoke(app, ["metrics", "serve", "--help"], env={"COLUMNS": "200"})
    assert "every QuotaFlow process that shares QUOTAFLOW_METRICS_DIR" in " ".join(res.output.split())
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert ("`QUOTAFLOW_METRICS_DIR=/some/dir` set for every QuotaFlow process, `quotaflow metrics serve` "
            "exports all of them together") in readme
