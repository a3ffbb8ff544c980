"""``quotaflow run WORKFLOW --dataset FILE --executor ray``: the dataset's programs on the workers
of a local Ray cluster, on the real PostgreSQL server; ``runs list`` shows which worker ran each
run; the executor options' bad input is one line and exit 2."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests import extras, pg
from tests.ray_cluster import ray_cluster

__all__ = ["ray_cluster"]  # the fixture, imported for the tests below

runner = CliRunner()


def _dataset(home: Path, *questions: str) -> Path:
    path = home / "rows.jsonl"
    path.write_text("".join(json.dumps({"question": q}) + "\n" for q in questions))
    return path


@pytest.mark.postgres
def test_a_dataset_runs_on_ray_workers_and_runs_list_shows_them(ray_cluster: Any, pg_server: pg.PgServer,
                                                                env: dict[str, Path]) -> None:
    db = pg_server.create_db(f"qf_cli_ray_{os.getpid()}")
    script = env["home"] / "mixed.json"
    script.write_text(json.dumps({"France": "answer: Paris", ".*": "search: capital"}))
    data = _dataset(env["home"], *(f"France {i}?" for i in range(4)))
    res = runner.invoke(app, ["run", "react", "--dataset", str(data), "--backend", "scripted", "--script", str(script),
                              "--executor", "ray", "--workers", "2", "--concurrency", "1", "--db", db, "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["items"] == {"count": 4, "by_status": {"succeeded": 4}}
    assert {item["answer"] for item in report["item_runs"]} == {"Paris"}
    listed = json.loads(runner.invoke(app, ["runs", "list", "--json", "--db", db]).output)
    items = [r for r in listed if r["parent_id"] == report["run_id"]]
    workers = {r["worker"] for r in items}
    assert len(items) == 4 and len(workers) == 2 and all(w.startswith(("w0@", "w1@")) for w in workers)
    table = runner.invoke(app, ["runs", "list", "--db", db], terminal_width=200).output
    assert "worker" in table and "w0@" in table and "w1@" in table


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--executor", "spark"], "--executor spark: expected one of local, ray"),
        (["--ray-address", "127.0.0.1:6379"], "--ray-address: expected --executor ray with it"),
        (["--executor", "ray", "--workers", "0"], "--workers 0: expected a number >= 1"),
    ],
)
def test_bad_executor_options_are_one_line_and_exit_2(env: dict[str, Path], options: list[str], said: str) -> None:
    data = _dataset(env["home"], "France?")
    res = runner.invoke(app, ["run", "react", "--dataset", str(data), "--backend", "scripted",
                              "--script", str(env["script"]), *options])
    assert res.exit_code == 2, res.output
    assert res.output.startswith(f"error: {said}")


def test_the_ray_executor_runs_datasets_only(env: dict[str, Path]) -> None:
    res = runner.invoke(app, ["run", "react", "--task", "France?", "--backend", "scripted",
                              "--script", str(env["script"]), "--executor", "ray"])
    assert res.exit_code == 2 and "--dataset FILE" in res.output


def test_without_ray_installed_the_executor_says_which_extra(env: dict[str, Path],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    data = _dataset(env["home"], "France?")
    res = runner.invoke(app, ["run", "react", "--dataset", str(data), "--backend", "scripted",
                              "--script", str(env["script"]), "--executor", "ray"])
    assert res.exit_code == 2
    assert res.output.strip() == "error: the ray executor needs Ray: pip install 'quotaflow[ray]'"
    assert runner.invoke(app, ["runs", "list", "--json"]).output.strip() == "[]"  # nothing stored


def test_a_ray_address_where_nothing_listens_fails_at_once(env: dict[str, Path]) -> None:
    pytest.importorskip("ray", reason=extras.RAY)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    data = _dataset(env["home"], "France?")
    res = runner.invoke(app, ["run", "react", "--dataset", str(data), "--backend", "scripted",
                              "--script", str(env["script"]), "--executor", "ray", "--ray-address", address])
    assert res.exit_code == 2
    assert res.output.startswith(f"error: cannot join the Ray cluster at {address}: Connection refused; start one")
    assert runner.invoke(app, ["runs", "list", "--json"]).output.strip() == "[]"  # nothing stored
