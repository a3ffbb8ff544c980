"""``quotaflow run WORKFLOW --dataset FILE --executor ray``: the dataset's programs on the workers
of a local Ray cluster, on the real PostgreSQL server; ``runs list`` shows which worker ran each
run; the executor options' bad input is one line and exit 2."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests import extras, pg
from tests.ray_cluster import ray_cluster

__all__ = ["ray_cluster"]  # the fixture, imported for the tests below

ROOT = Path(__file__).resolve().parents[2]

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


@pytest.fixture
def head_node(tmp_path: Path) -> Iterator[str]:
    """A Ray cluster started as an operator would (``ray start --head``), stopped after the test."""
    pytest.importorskip("ray", reason=extras.RAY)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ray_cli = Path(sys.executable).with_name("ray")
    # No token (a loopback cluster of this test): the same with or without ~/.ray/auth_token.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--port", str(port), "--num-cpus", "2",
                             "--include-dashboard", "false", "--block"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert head.stdout is not None
        for line in head.stdout:  # until the head says it runs (or exits: the loop ends, the test fails)
            if "Ray runtime started" in line:
                break
        assert head.poll() is None, "ray start --head failed"
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()  # --block: the head stops its processes with it
        head.wait(timeout=60)
        # ...but leaves its address as this host's current cluster, where ray.init() would look.
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        with contextlib.suppress(OSError):
            if current.read_text().strip().endswith(f":{port}"):
                current.unlink()


@pytest.mark.postgres
def test_a_dataset_runs_on_a_cluster_joined_by_address(head_node: str, pg_server: pg.PgServer,
                                                       env: dict[str, Path]) -> None:
    db = pg_server.create_db(f"qf_cli_head_{os.getpid()}")
    script = env["home"] / "mixed.json"
    script.write_text(json.dumps({"France": "answer: Paris", ".*": "search: capital"}))
    data = _dataset(env["home"], "France 1?", "France 2?", "France 3?")
    out = subprocess.run([sys.executable, "-m", "cli.main", "run", "react", "--dataset", str(data),
                          "--backend", "scripted", "--script", str(script), "--executor", "ray",
                          "--ray-address", head_node, "--db", db, "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"})
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert report["items"] == {"count": 3, "by_status": {"succeeded": 3}}
    listed = json.loads(runner.invoke(app, ["runs", "list", "--json", "--db", db]).output)
    workers = {r["worker"] for r in listed if r["parent_id"] == report["run_id"]}
    assert workers and all(w.startswith(("w0@", "w1@")) for w in workers)  # the cluster's 2 CPUs: 2 workers
