"""Storage faults through the command line (issue 16): each case runs ``quotaflow`` in a
subprocess under a hard timeout and asserts the exit code (4), a one-line message on stderr
that says what to do, and, for faults mid-run, what ``runs list`` shows and that the run resumes.

The faults: an unopenable (corrupt) SQLite file, a read-only file system (new and existing
database), a full disk at start and mid-run (a size-limited tmpfs, mounted as root under the
test's own tmp_path and unmounted in a finally), and the database file deleted mid-run. The
mid-run faults happen inside the kit's loopback OpenAI server while it answers the run's first
request, so the fault lands at a known point without sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.testing import ChatRequest, LoopbackServer

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 60
"""Hard limit of one CLI call: a hang fails the test instead of the suite."""


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QUOTAFLOW_HOME": str(home), "COLUMNS": "200"}
    env.pop("QUOTAFLOW_DB_URL", None)
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S, check=False)


def _run_react(db_url: str, home: Path, server: LoopbackServer | None = None) -> subprocess.CompletedProcess[str]:
    if server is None:
        script = home / "script.json"
        script.write_text('["answer: Paris"]')
        backend = ["--backend", "scripted", "--script", str(script)]
    else:
        backend = ["--backend", "openai", "--base-url", server.base_url, "--model", server.model]
    return _cli("run", "react", "--task", "Capital of France?", "--tools", "calculator", "--json", *backend,
                "--db", db_url, home=home)


def _assert_storage_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 4, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr  # one line, no traceback
    assert lines[0].startswith("error: database "), lines[0]
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def _assert_interrupted(proc: subprocess.CompletedProcess[str], *words: str) -> dict:  # type: ignore[type-arg]
    """A fault mid-run: exit 4, no traceback, and the run's report (stdout) says interrupted and why."""
    assert proc.returncode == 4, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    assert report["status"] == "interrupted", report
    assert report["error"].startswith("database ") and "resume" in report["error"], report["error"]
    for word in words:
        assert word in report["error"], report["error"]
    return report  # type: ignore[no-any-return]


def _runs(db_url: str, home: Path) -> list[dict]:  # type: ignore[type-arg]
    proc = _cli("runs", "list", "--json", "--db", db_url, home=home)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@contextlib.contextmanager
def _tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    """A size-limited tmpfs at ``mountpoint`` (a fresh directory under tmp_path, never a project
    or system path); skips where mounting is not allowed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], timeout=30, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], timeout=30, check=False)


def _fill(directory: Path) -> Path:
    """Write zeros into ``directory`` until its file system is full."""
    path = directory / "filler"
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    with contextlib.suppress(OSError), open(path, "ab") as f:  # the last partial block
        while True:
            f.write(b"\0" * 512)
            f.flush()
    return path


def test_corrupt_database_file_exits_4(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    db.write_bytes(b"this is not a database " * 512)
    _assert_storage_error(_run_react(f"sqlite:///{db}", tmp_path), str(db), "resume")
    assert db.read_bytes() == b"this is not a database " * 512  # left as it was


def test_read_only_file_system_exits_4_for_new_and_existing_databases(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "ro", "4m") as mnt:
        existing = f"sqlite:///{mnt / 'old.db'}"
        assert _run_react(existing, tmp_path).returncode == 0
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True, timeout=30)
        _assert_storage_error(_run_react(existing, tmp_path), "read")
        _assert_storage_error(_run_react(f"sqlite:///{mnt / 'new.db'}", tmp_path))


def test_full_disk_at_start_exits_4(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "full", "2m") as mnt:
        _fill(mnt)
        _assert_storage_error(_run_react(f"sqlite:///{mnt / 'store.db'}", tmp_path), "full")


@contextlib.contextmanager
def _disk_full_mid_run(tmp_path: Path) -> Iterator[tuple[subprocess.CompletedProcess[str], str, list[Path]]]:
    """A react run whose loopback server fills the disk while it answers the run's first request:
    yields the run's process, the database URL and the file that filled the disk (still there,
    the disk mounted and the server up)."""
    with _tmpfs(tmp_path / "mid", "2m") as mnt:
        db_url = f"sqlite:///{mnt / 'store.db'}"
        assert _run_react(db_url, tmp_path).returncode == 0  # schema and checkpoint tables in place
        filled: list[Path] = []

        def respond(_request: ChatRequest) -> str:
            if not filled:
                filled.append(_fill(mnt))
            return "answer: Paris"

        with LoopbackServer(respond) as server:
            yield _run_react(db_url, tmp_path, server), db_url, filled


def test_disk_full_mid_run_then_runs_list_shows_interrupted_and_resume_succeeds(tmp_path: Path) -> None:
    with _disk_full_mid_run(tmp_path) as (proc, db_url, filled):
        assert proc.returncode == 4 and "Traceback" not in proc.stderr, (proc.returncode, proc.stderr)
        filled[0].unlink()
        runs = _runs(db_url, tmp_path)
        assert [r["status"] for r in runs] == ["interrupted", "succeeded"]
        resumed = _cli("resume", runs[0]["run_id"], "--json", "--db", db_url, home=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        report = json.loads(resumed.stdout)
        assert report["status"] == "succeeded" and "Paris" in json.dumps(report["result"]), report
        assert [r["status"] for r in _runs(db_url, tmp_path)] == ["succeeded", "succeeded"]


def test_disk_full_mid_run_says_why(tmp_path: Path) -> None:
    with _disk_full_mid_run(tmp_path) as (proc, _, _):
        assert proc.returncode == 4
        assert "full" in proc.stderr or "full" in str(json.loads(proc.stdout).get("error")), proc.stderr


def test_database_deleted_mid_run_exits_4_not_succeeded(tmp_path: Path) -> None:
    db = tmp_path / "store.db"

    def respond(_request: ChatRequest) -> str:
        db.unlink(missing_ok=True)
        return "answer: Paris"

    with LoopbackServer(respond) as server:
        proc = _run_react(f"sqlite:///{db}", tmp_path, server)
    _assert_interrupted(proc, "deleted or replaced")
    assert not db.exists()
    assert "succeeded" not in proc.stdout
