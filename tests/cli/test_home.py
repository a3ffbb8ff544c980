"""Issue 21: the default home is the user's data directory, not the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from orchestrator.settings import Settings

runner = CliRunner()


@pytest.fixture
def no_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("QUOTAFLOW_HOME", "QUOTAFLOW_DB_URL", "QUOTAFLOW_CORPUS", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_default_home_is_under_the_users_data_directory(no_home: Path) -> None:
    assert Settings.from_env().home == no_home / "user" / ".local" / "share" / "quotaflow"
    res = runner.invoke(app, ["db", "upgrade"])
    assert res.exit_code == 0, res.output
    assert (no_home / "user" / ".local" / "share" / "quotaflow" / "quotaflow.db").is_file()
    assert not (no_home / ".quotaflow").exists()


def test_xdg_data_home_and_quotaflow_home(no_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(no_home / "xdg"))
    assert Settings.from_env().home == no_home / "xdg" / "quotaflow"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")  # the XDG spec: relative paths are invalid
    assert Settings.from_env().home == no_home / "user" / ".local" / "share" / "quotaflow"
    monkeypatch.setenv("QUOTAFLOW_HOME", str(no_home / "mine"))
    assert Settings.from_env().home == no_home / "mine"
