"""``quotaflow qtable show|export|freeze|reset`` through Typer's CliRunner on a real SQLite store."""

from __future__ import annotations

import json

from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from cli.qtable import app
from orchestrator.store.db import Store
from workflows.priordynaflow.config import END
from workflows.priordynaflow.persistence import QTableRepository
from workflows.priordynaflow.qtable import QTable

runner = CliRunner()


def seed(db_url: str) -> None:
    store = Store(db_url)
    store.upgrade()
    engine = create_engine(store.sync_url)
    with Session(engine) as session, session.begin():
        repo = QTableRepository(session)
        for value in (1.5, 2.5):
            table = QTable.empty(("solver", "inspector"))
            table.set_value("solver", END, value)
            repo.save("math", table)
    engine.dispose()


def test_show_export_freeze_reset(tmp_path):
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    seed(db)

    listed = runner.invoke(app, ["show", "--db", db])
    assert listed.exit_code == 0 and "math" in listed.output and "version 2" in listed.output

    shown = runner.invoke(app, ["show", "math", "--db", db])
    assert shown.exit_code == 0 and "2.50" in shown.output and "math v2" in shown.output
    old = runner.invoke(app, ["show", "math", "--version", "1", "--json", "--db", db])
    assert json.loads(old.output)["data"]["q"]["solver"][END] == 1.5

    out = tmp_path / "math.json"
    exported = runner.invoke(app, ["export", "math", "-o", str(out), "--db", db])
    assert exported.exit_code == 0 and json.loads(out.read_text())["version"] == 2

    frozen = runner.invoke(app, ["freeze", "math", "--db", db])
    assert frozen.exit_code == 0 and "v2 frozen" in frozen.output
    assert json.loads(runner.invoke(app, ["show", "math", "--json", "--db", db]).output)["frozen"] is True

    assert runner.invoke(app, ["reset", "math", "--db", db], input="n\n").exit_code != 0  # declined
    reset = runner.invoke(app, ["reset", "math", "--yes", "--db", db])
    assert reset.exit_code == 0 and "deleted 2" in reset.output
    missing = runner.invoke(app, ["show", "math", "--db", db])
    assert missing.exit_code != 0
