"""bench/gpu/driver.py on the CPU: every layout's dry-run plan, and the worker running a plan of stubs."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import sys
import tarfile
from collections import defaultdict
from pathlib import Path

import pytest

from bench.gpu import driver

CONFIG = driver.load_plans()
LAYOUTS = ("1gpu", "2gpu", "4gpu")


def _flag(argv: tuple[str, ...], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("plan", sorted(CONFIG["plans"]))
def test_every_plan_fits_its_layout(layout: str, plan: str) -> None:
    p = driver.build_plan(CONFIG, layout, plan, commit="abc1234")
    num_gpus = CONFIG["layouts"][layout]["num_gpus"]
    by_name = {s.name: s for s in p.steps}
    servers = [s for s in p.steps if s.kind == "server"]
    rounds = [s for s in p.steps if s.kind == "round"]

    # Ports distinct; every server on a GPU the machine has, memory shares of one GPU below 1.
    assert len({s.port for s in servers}) == len(servers)
    shares: dict[str, float] = defaultdict(float)
    for s in servers:
        assert 0 <= int(s.gpu or "-1") < num_gpus
        shares[s.gpu or ""] += s.memory or 0
    assert all(total < 0.9 for total in shares.values())

    # One replay engine per GPU: a side-by-side round names a distinct GPU per configuration, and
    # a server never starts on a GPU while a round that uses it may still run.
    for r in rounds:
        configs = _flag(r.argv, "--configs").split(",")
        if "--gpus" in r.argv:
            gpus = _flag(r.argv, "--gpus").split(",")
            assert len(set(gpus)) == len(gpus) == len(configs)
            assert all(0 <= int(g) < num_gpus for g in gpus)
        else:
            assert num_gpus == 1
        assert _flag(r.argv, "--commit") == "abc1234"
    for s in servers:
        awaited = {n.step for n in s.needs}
        for r in rounds:
            gpus = _flag(r.argv, "--gpus").split(",") if "--gpus" in r.argv else ["0"]
            assert s.gpu not in gpus or r.name in awaited, f"{s.name} may start while {r.name} holds GPU {s.gpu}"

    # Every job waits for its own model's server and talks to that server's port.
    for s in p.steps:
        if s.kind == "job":
            (need,) = s.needs
            server = by_name[need.step]
            assert need.state == "healthy" and server.kind == "server"
            assert f"127.0.0.1:{server.port}/v1" in _flag(s.argv, "--base-url")

    # Every result lands in its own folder under the run's results, which `pack` puts into $OUT.
    outs = [s.out for s in p.steps if s.out]
    assert len(outs) == len(set(outs)) == len(rounds) + sum(s.kind == "job" for s in p.steps)
    assert all(Path(o).parent == p.results for o in outs)
    assert all(o in s.argv for s in p.steps if s.out for o in [s.out])
    text = driver.format_plan(p, CONFIG)
    assert f"{p.results} -> $OUT/results.tgz" in text


@pytest.mark.parametrize("job", sorted(n for n, j in CONFIG["jobs"].items() if "bench/bats/run.py" in j["command"]))
def test_every_bats_job_sets_only_options_its_methods_declare(job: str) -> None:
    """A GPU job whose options a method refuses would fail every run of that method on the machine."""
    from bench.bats.run import ALL_METHODS, BenchConfig, check_methods, parse_option_items

    args = shlex.split(CONFIG["jobs"][job].get("args", ""))
    methods = tuple(_flag(tuple(args), "--methods").split(",")) if "--methods" in args else tuple(ALL_METHODS)
    items = [args[i + 1] for i, a in enumerate(args) if a in ("-o", "--option")]
    check_methods(BenchConfig(dataset=Path("unused.jsonl"), budgets=(2,), methods=methods,
                              options=parse_option_items(items)))


@pytest.mark.parametrize("job", sorted(n for n, j in CONFIG["jobs"].items() if "bench/drqa/run.py" in j["command"]))
def test_every_drqa_job_sets_only_options_the_workflow_accepts(job: str) -> None:
    from bench.drqa.run import build_parser, check_allocation_options

    args = build_parser().parse_args(shlex.split(CONFIG["jobs"][job].get("args", "")))
    check_allocation_options(args)  # SystemExit on an option the drqa workflow refuses


def test_the_two_gpu_serving_plan_is_the_x2_flow() -> None:
    """Round 1 stock and fixed TTL on GPUs 0 and 1; round 2 utility TTL on GPU 0 after it."""
    p = driver.build_plan(CONFIG, "2gpu", "serving", commit="c", serving_args="--loads 60,120 --kv-blocks 4000")
    a, b = p.steps
    assert a.argv == ("python3", "-m", "bench.serving.replay", "--commit", "c", "--configs", "stock,fixed_ttl",
                      "--gpus", "0,1", "--loads", "60,120", "--kv-blocks", "4000", "--out-dir",
                      str(p.results / "serving-a"))
    assert _flag(b.argv, "--configs") == "utility_ttl" and _flag(b.argv, "--gpus") == "0"
    assert [(n.step, n.state) for n in b.needs] == [("serving-a", "finished")]


def test_seeds_repeat_the_first_round_and_job_args_replace_defaults() -> None:
    p = driver.build_plan(CONFIG, "2gpu", "seeds", commit="c", seeds=[1, 2])
    assert [(_flag(s.argv, "--seed"), _flag(s.argv, "--gpus")) for s in p.steps] == [("1", "0,1"), ("2", "0,1")]
    q = driver.build_plan(CONFIG, "1gpu", "drqa", commit="c", job_args={"drqa-allocation": "--limit 5"})
    job = next(s for s in q.steps if s.kind == "job")
    assert job.argv[-2:] == ("--limit", "5") and "--via" not in job.argv
    with pytest.raises(SystemExit, match="unknown layout"):
        driver.build_plan(CONFIG, "3gpu", "drqa", commit="c")


def test_plan_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert driver.main(["plan", "--layout", "4gpu", "--plan", "quality", "--commit", "c", "--json"]) == 0
    steps = json.loads(capsys.readouterr().out)
    assert {s["name"] for s in steps if s["kind"] == "server"} == {"server-qwen", "server-smol"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_worker_runs_steps_in_order_and_keeps_the_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stub commands: a round, a conversion, a server answering /v1/models, a job, a job that times out."""
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    monkeypatch.setattr(driver, "WORK", work)
    monkeypatch.setattr(driver, "TREE", tmp_path)
    monkeypatch.setattr(driver, "GPU_ENV", tmp_path / "absent.sh")
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "models").write_text("{}")
    port = _free_port()
    py = sys.executable
    steps = (
        driver.Step("round", "round", (py, "-c", "print('replayed')")),
        driver.Step("convert-m", "convert", (py, "-c", "import os; print(os.environ['QUOTAFLOW_COMMIT'])")),
        driver.Step("server-m", "server", (py, "-m", "http.server", str(port), "--bind", "127.0.0.1"),
                    needs=(driver.Need("convert-m", "succeeded"), driver.Need("round", "finished")), port=port),
        driver.Step("job", "job", (py, "-c", "print('measured')"), needs=(driver.Need("server-m", "healthy"),),
                    timeout_s=60),
        driver.Step("slow", "job", (py, "-c", "import time; time.sleep(60)"),
                    needs=(driver.Need("server-m", "healthy"),), timeout_s=1),
        driver.Step("never", "job", (py, "-c", "pass"), needs=(driver.Need("missing-m", "healthy"),)),
        driver.Step("missing-m", "server", (py, "-c", "raise SystemExit(1)"), port=_free_port()),
    )
    plan = driver.Plan("1gpu", "stub", "abc", steps, work / "results")
    driver.work(plan)
    state = driver.read_state()
    server_pid = next(s["pid"] for s in state["steps"] if s["name"] == "server-m")
    try:
        status = {s["name"]: s["status"] for s in state["steps"]}
        assert state["finished"] and status == {"round": "done", "convert-m": "done", "server-m": "healthy",
                                                "job": "done", "slow": "timeout", "never": "skipped",
                                                "missing-m": "failed"}
        assert (work / "logs" / "convert-m.log").read_text().strip() == "abc"
        assert driver._healthy(port)  # the server outlives the worker, for collect and repeats
        # A repeat on the warm machine keeps the server and skips the conversion it needed.
        (work / "logs" / "convert-m.log").unlink()
        driver.work(driver.Plan("1gpu", "stub", "abc", steps[1:4], work / "results"))
        again = {s["name"]: (s["status"], s["pid"]) for s in driver.read_state()["steps"]}
        assert again == {"convert-m": ("done", None), "server-m": ("healthy", None), "job": ("done", again["job"][1])}
        assert again["job"][1] and not (work / "logs" / "convert-m.log").exists()
    finally:
        os.kill(server_pid, signal.SIGTERM)

    (work / "results" / "job").mkdir(parents=True)
    (work / "results" / "job" / "summary.json").write_text("{}")
    (work / "results" / "runs.db").write_text("")
    driver.pack(tmp_path / "out")
    with tarfile.open(tmp_path / "out" / "results.tgz") as tar:
        names = tar.getnames()
    assert "results/job/summary.json" in names and "results/state.json" in names
    assert not any(n.endswith(".db") for n in names)
    with tarfile.open(tmp_path / "out" / "logs.tgz") as tar:
        assert "logs/job.log" in tar.getnames()


def test_an_uninstalled_tree_copy_sees_the_built_in_workflows(tmp_path: Path) -> None:
    """The GPU host runs a copy of the tree on PYTHONPATH, not an install: without the entry points
    the driver writes, the workflow registry is empty (every drqa and bats job failed at ab244a5)."""
    import shutil
    import subprocess
    import sysconfig

    root = Path(__file__).resolve().parents[2]
    tree = tmp_path / "tree"
    for part in ("orchestrator", "budget", "workflows", "serving_patch", "pyproject.toml"):
        src = root / part
        if src.is_dir():
            shutil.copytree(src, tree / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, tree / part)
    # The dependencies without this project's own install (its dist-info has the entry points).
    deps = tmp_path / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(("quotaflow", "__editable__")) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    probe = ("import sys; sys.path[:0] = sys.argv[1:]; from orchestrator import workflow; "
             "print(','.join(workflow.names()) or '-')")

    def names(*front: Path) -> set[str]:
        seen = subprocess.run([sys.executable, "-S", "-c", probe, *map(str, (*front, tree, deps))], cwd=tmp_path,
                              capture_output=True, text=True, check=False)
        assert seen.returncode == 0, seen.stderr
        return set(seen.stdout.split()[-1].split(","))

    assert "drqa" not in names()
    site = tmp_path / "site"
    driver.write_entry_points(tree / "pyproject.toml", site)
    assert {"bats", "drqa", "priordynaflow", "batchprompt", "react", "react_harness"} <= names(site)


def test_collect_on_a_machine_without_a_plan_answers_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    # A collect sent to a fresh machine (the run's machine was released, or the run failed before
    # its worker started) must not wait out --wait-s: there is nothing that could ever finish.
    monkeypatch.setattr(driver, "WORK", tmp_path / "qf-run")
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    monkeypatch.setattr(driver, "wait_finished", lambda wait_s: pytest.fail("collect waited"))
    assert driver.main(["collect", "--wait-s", "560"]) == 3
    assert "no plan was started" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_pack_without_logs_still_packs_the_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "qf-run"
    monkeypatch.setattr(driver, "WORK", work)
    (work / "results" / "serving").mkdir(parents=True)
    (work / "results" / "serving" / "summary.json").write_text("{}")
    driver.pack(tmp_path / "out")
    with tarfile.open(tmp_path / "out" / "results.tgz") as tar:
        assert "results/serving/summary.json" in tar.getnames()
    with tarfile.open(tmp_path / "out" / "logs.tgz") as tar:
        assert tar.getnames() == []
