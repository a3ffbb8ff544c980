"""The GPU benchmark driver: machine layouts and plans are data (``plans.toml``), this runs them.

    python -m bench.gpu.driver plan --layout 2gpu --plan serving --commit abc1234   # print it (CPU)
    python -m bench.gpu.driver prepare                                              # CPU: stage data, wheels
    python -m bench.gpu.driver run --layout 2gpu --plan serving --commit abc1234    # GPU call 1
    python -m bench.gpu.driver collect                                              # GPU call 2

``run`` installs the carried vLLM bundle (``.gpu/bin/install.sh``) and the extra wheels (``.whl/``),
copies the tree to ``/tmp/qf`` (a later call re-sends the working tree; the runs keep their copy),
starts a detached worker that runs the plan's steps, waits up to ``--wait-s`` and packs what has
finished into ``$OUT`` (``results.tgz``, ``logs.tgz``). ``collect`` waits for the rest, scrapes the
servers' ``/metrics`` and packs again. The worker starts a step once the steps it needs are done:
serving rounds one after another; model conversions at once (CPU); a model's server on its GPU
once its conversion is done and the rounds holding that GPU have finished; a quality job once its
server answers ``/v1/models``. Servers stay up while the machine is held, so a repeat is one
``run --no-setup`` away. bench/gpu/README.md has the session, step by step.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["PLANS_FILE", "Step", "build_plan", "format_plan", "load_plans", "main"]

PLANS_FILE = Path(__file__).with_name("plans.toml")
TREE = Path("/tmp/qf")
"""The copy of the tree the detached steps run in."""
WORK = Path("/tmp/qf-run")
"""Results (``results/``), logs (``logs/``) and the worker's ``state.json``."""
SITE = Path("/tmp/qf-site")
"""Where the carried wheels (``.whl/``) are installed."""
GPU_ENV = Path("/root/gpu-env.sh")
"""Written by ``.gpu/bin/install.sh``: PYTHONPATH of the vLLM bundle, offline flags, GGUF paths."""
MAX_PACKED_BYTES = 64 << 20
SERVER_START_S = 300.0
FINISHED = ("done", "failed", "timeout")


@dataclass(frozen=True)
class Need:
    """A step waits until ``step`` is ``finished`` (any exit), ``succeeded`` or ``healthy`` (a server)."""

    step: str
    state: str


@dataclass(frozen=True)
class Step:
    """One process the worker starts: a serving round, a model conversion, a server or a job."""

    name: str
    kind: str
    """``round``, ``convert``, ``server`` or ``job``."""
    argv: tuple[str, ...]
    needs: tuple[Need, ...] = ()
    gpu: str | None = None
    """CUDA_VISIBLE_DEVICES for the process (a replay round names its GPUs with ``--gpus``)."""
    memory: float | None = None
    port: int | None = None
    out: str | None = None
    """The results folder the step writes (under the run's results folder)."""
    timeout_s: float | None = None

    @property
    def log(self) -> Path:
        return WORK / "logs" / f"{self.name}.log"


@dataclass(frozen=True)
class Plan:
    """A plan laid out on a machine: its steps and the folder their results go to."""

    layout: str
    plan: str
    commit: str
    steps: tuple[Step, ...]
    results: Path = WORK / "results"


def load_plans(path: Path = PLANS_FILE) -> dict[str, Any]:
    """``plans.toml`` as a dict (layouts, plans, jobs, models)."""
    return tomllib.loads(path.read_text())


def _fill(template: str, values: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(shlex.split(template.format(**values)))


def build_plan(
    config: Mapping[str, Any], layout: str, plan: str, *, commit: str, serving_args: str | None = None,
    job_args: Mapping[str, str] | None = None, jobs: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
    python: str = "python3", results: Path = WORK / "results",
) -> Plan:
    """The steps of ``plan`` on ``layout``: what runs where, after what, writing where."""
    if layout not in config["layouts"]:
        raise SystemExit(f"unknown layout {layout!r}; known: {', '.join(config['layouts'])}")
    if plan not in config["plans"]:
        raise SystemExit(f"unknown plan {plan!r}; known: {', '.join(config['plans'])}")
    lay, pl = config["layouts"][layout], {"name": plan, **config["plans"][plan]}
    job_args = dict(job_args or {})
    job_names = list(jobs) if jobs is not None else list(pl.get("jobs", []))
    for name in [*job_names, *job_args]:
        if name not in config["jobs"]:
            raise SystemExit(f"unknown job {name!r}; known: {', '.join(config['jobs'])}")
    replay_args = shlex.split(serving_args if serving_args is not None else pl.get("serving_args", ""))
    steps: list[Step] = []

    rounds: list[tuple[str, str, str, list[str]]] = []  # name, configs, gpus, extra args
    if pl.get("serving") == "rounds" and "configs" in pl:
        # The plan names its configurations: one per GPU side by side, in as many rounds as it takes
        # (one round, one after another, on a single GPU).
        configs_list = pl["configs"].split(",")
        width = lay["num_gpus"] if lay["num_gpus"] > 1 else len(configs_list)
        for i in range(0, len(configs_list), width):
            part = configs_list[i: i + width]
            gpus = ",".join(str(g) for g in range(len(part))) if lay["num_gpus"] > 1 else ""
            rounds.append((f"serving-{pl['name']}{i // width + 1}" if len(configs_list) > width else "serving",
                           ",".join(part), gpus, []))
    elif pl.get("serving") == "rounds":
        rounds = [(r["name"], r["configs"], r["gpus"], []) for r in lay["serving_rounds"]]
    elif pl.get("serving") == "seeds":
        configs = pl["configs"]
        gpus = lay["serving_rounds"][0]["gpus"]
        gpus = ",".join(gpus.split(",")[: len(configs.split(","))]) if gpus else ""
        rounds = [(f"serving-seed{s}", configs, gpus, ["--seed", str(s)]) for s in (seeds or pl["seeds"])]
    previous: str | None = None
    for name, configs, gpus, extra in rounds:
        out = str(results / name)
        argv = [python, "-m", "bench.serving.replay", "--commit", commit, "--configs", configs,
                *(["--gpus", gpus] if gpus else []), *replay_args, *extra, "--out-dir", out]
        steps.append(Step(name, "round", tuple(argv), needs=(Need(previous, "finished"),) if previous else (),
                          out=out))
        previous = name

    models = list(dict.fromkeys(config["jobs"][j]["model"] for j in job_names))
    for model in models:
        m, server = config["models"][model], lay["servers"][model]
        steps.append(Step(f"convert-{model}", "convert",
                          (python, ".qfdata/gguf_to_hf.py", f"${m['gguf_env']}", m["path"])))
        held = [Need(r[0], "finished") for r in rounds[: server["after_rounds"]]]
        argv = (python, "-m", "cli.main", "serve", m["path"], "--served-model-name", m["served_name"],
                "--port", str(server["port"]), "--gpu-memory-utilization", f"{server['memory']:.2f}",
                "--max-model-len", str(m["max_model_len"]))
        steps.append(Step(f"server-{model}", "server", argv, needs=(Need(f"convert-{model}", "succeeded"), *held),
                          gpu=str(server["gpu"]), memory=server["memory"], port=server["port"]))
    for name in job_names:
        job = config["jobs"][name]
        m, server = config["models"][job["model"]], lay["servers"][job["model"]]
        out = str(results / name)
        values = {**m, "python": python, "commit": commit, "out": out, "work": str(WORK),
                  "url": f"http://127.0.0.1:{server['port']}/v1"}
        argv = (python, *_fill(job["command"], values), *shlex.split(job_args.get(name, job.get("args", ""))))
        steps.append(Step(name, "job", argv, needs=(Need(f"server-{job['model']}", "healthy"),), out=out,
                          timeout_s=float(job["timeout_s"])))
    return Plan(layout, plan, commit, tuple(steps), results)


def format_plan(p: Plan, config: Mapping[str, Any]) -> str:
    """The plan as a reader checks it before spending device time."""
    lines = [f"# layout {p.layout}: {config['layouts'][p.layout]['about']}",
             f"# plan {p.plan}: {config['plans'][p.plan]['about']}",
             (f"setup: bash .gpu/bin/install.sh; pip install .whl/*.whl --target {SITE}; copy the tree to {TREE};"
              f" ../shared/data -> .qfdata; nvidia-smi > {p.results}/gpu.txt")]
    for s in p.steps:
        where = f" gpu {s.gpu}" + (f" ({s.memory:.2f} of its memory)" if s.memory else "") if s.gpu else ""
        port = f" port {s.port}" if s.port else ""
        after = ", ".join(f"{n.step} {n.state}" for n in s.needs) or "start"
        limit = f" timeout {s.timeout_s:.0f}s" if s.timeout_s else ""
        lines.append(f"[{s.kind}] {s.name}{where}{port} after: {after}{limit}")
        lines.append(f"    {shlex.join(s.argv)} > {s.log}")
    lines.append(f"pack: {p.results} -> $OUT/results.tgz; {WORK / 'logs'} -> $OUT/logs.tgz")
    return "\n".join(lines)


# -- on the GPU machine ---------------------------------------------------------------------------
def _gpu_env(commit: str) -> dict[str, str]:
    env = dict(os.environ)
    if GPU_ENV.exists():
        out = subprocess.run(["bash", "-c", f"source {GPU_ENV} >/dev/null && env -0"], capture_output=True,
                             check=True).stdout.decode()
        env.update(kv.split("=", 1) for kv in out.split("\0") if "=" in kv)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TREE), str(SITE), env.get("PYTHONPATH", "")) if p)
    env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", QUOTAFLOW_COMMIT=commit)
    return env


def setup(source: Path) -> None:
    """Install vLLM and the wheels, copy the tree to TREE, empty WORK, link the data, list the GPUs."""
    subprocess.run(["bash", ".gpu/bin/install.sh"], cwd=source, check=True)
    wheels = sorted(str(w) for w in (source / ".whl").glob("*.whl"))
    if wheels:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--target", str(SITE), *wheels], check=True)
    shutil.rmtree(TREE, ignore_errors=True)
    shutil.copytree(source, TREE, symlinks=True)
    write_entry_points(TREE / "pyproject.toml", SITE)
    # A reused machine once still had an earlier session's results there.
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "results").mkdir(parents=True)
    (WORK / "logs").mkdir()
    data = TREE.parent / "shared" / "data"  # the benches read ../shared/data like a developer checkout
    data.parent.mkdir(exist_ok=True)
    data.unlink(missing_ok=True)
    data.symlink_to(TREE / ".qfdata")
    gpus = subprocess.run(["nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader"],
                          capture_output=True, text=True, check=False).stdout
    (WORK / "results" / "gpu.txt").write_text(gpus)
    print(gpus, end="")


def write_entry_points(pyproject: Path, site: Path) -> Path:
    """Make the tree's entry points (the built-in workflows) visible to ``importlib.metadata``.

    The tree runs from a copy on PYTHONPATH, not installed, so without this the workflow registry
    finds no ``quotaflow.workflows`` entry point. A minimal ``.dist-info`` in ``site`` is what an
    install would have written for them.
    """
    project = tomllib.loads(pyproject.read_text())["project"]
    info = site / f"{project['name']}-{project.get('version', '0')}.dist-info"
    shutil.rmtree(info, ignore_errors=True)
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project.get('version', '0')}\n")
    groups = project.get("entry-points", {})
    scripts = project.get("scripts", {})
    lines = [f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for g, eps in groups.items()]
    if scripts:
        lines.append("[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items()))
    (info / "entry_points.txt").write_text("\n".join(lines))
    return info


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _state_path() -> Path:
    return WORK / "state.json"


def read_state() -> dict[str, Any]:
    path = _state_path()
    return json.loads(path.read_text()) if path.exists() else {}


def _reused(p: Plan) -> dict[str, str]:
    """On a warm machine (``run --no-setup``): each server whose port already answers is kept
    ("healthy", not started again) and a conversion that only such servers need is "done" (the
    repeats at ``80a6835`` spent about 100 s on both, and the new server could not bind)."""
    kept = {s.name: "healthy" for s in p.steps if s.kind == "server" and _healthy(s.port or 0)}
    for s in p.steps:
        users = [o.name for o in p.steps if any(n.step == s.name for n in o.needs)]
        if s.kind == "convert" and users and all(u in kept for u in users):
            kept[s.name] = "done"
    return kept


def work(p: Plan) -> None:
    """Run the plan's steps, each when what it needs is there; servers stay up afterwards."""
    env = _gpu_env(p.commit)
    status = {s.name: "pending" for s in p.steps}
    procs: dict[str, tuple[subprocess.Popen[bytes], float]] = {}
    pids: dict[str, int] = {}
    by_name = {s.name: s for s in p.steps}

    status.update(_reused(p))

    def met(need: Need) -> bool | None:
        """True when met, None while it may still be, False when it cannot be any more."""
        st = status[need.step]
        if need.state == "finished":
            return True if st in FINISHED or st == "skipped" else None
        if need.state == "succeeded":
            return True if st == "done" else (False if st in (*FINISHED, "skipped") else None)
        return True if st == "healthy" else (False if st in ("failed", "skipped") else None)

    def save(finished: bool = False) -> None:
        state = {"layout": p.layout, "plan": p.plan, "commit": p.commit, "finished": finished,
                 "steps": [{**asdict(s), "status": status[s.name], "pid": pids.get(s.name)} for s in p.steps]}
        # Atomic: `collect` reads it while the worker writes (a torn read once ended a collect call).
        tmp = _state_path().with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, _state_path())

    while True:
        for s in p.steps:
            if status[s.name] != "pending":
                continue
            results = [met(n) for n in s.needs]
            if False in results:
                status[s.name] = "skipped"
                print(f"{time.strftime('%T')} {s.name}: skipped (needs {s.needs})", flush=True)
            elif all(results):
                step_env = dict(env, **({"CUDA_VISIBLE_DEVICES": s.gpu} if s.gpu is not None else {}))
                argv = [os.path.expandvars(a) for a in s.argv]
                with s.log.open("w") as log:
                    proc = subprocess.Popen(argv, cwd=TREE, env=step_env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
                procs[s.name] = (proc, time.monotonic())
                pids[s.name] = proc.pid
                status[s.name] = "running"
                print(f"{time.strftime('%T')} {s.name}: started", flush=True)
        for name, (proc, started) in list(procs.items()):
            s, rc = by_name[name], proc.poll()
            if s.kind == "server":
                if rc is not None or time.monotonic() - started > SERVER_START_S:
                    status[name] = "failed"
                elif _healthy(s.port or 0):
                    status[name] = "healthy"
                else:
                    continue
            elif rc is not None:
                status[name] = "done" if rc == 0 else "failed"
            elif s.timeout_s and time.monotonic() - started > s.timeout_s:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                status[name] = "timeout"
            else:
                continue
            del procs[name]
            print(f"{time.strftime('%T')} {name}: {status[name]}", flush=True)
        save()
        if all(st not in ("pending", "running") for st in status.values()):
            break
        time.sleep(2)
    save(finished=True)


def wait_finished(wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if read_state().get("finished"):
            return True
        time.sleep(5)
    return bool(read_state().get("finished"))


def scrape_metrics() -> None:
    """Each healthy server's /metrics into the logs (plugin pins, hits, prefix cache)."""
    for step in read_state().get("steps", []):
        if step["kind"] == "server" and step["status"] == "healthy":
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{step['port']}/metrics", timeout=10) as r:
                    text = r.read().decode()
            except OSError as exc:
                print(f"{step['name']}: no metrics ({exc})")
                continue
            (WORK / "logs" / f"metrics-{step['name']}.txt").write_text(text)
            print(*[line for line in text.splitlines() if line.startswith("quotaflow_continuum")][:20], sep="\n")


def pack(out: Path) -> None:
    """Results (no databases, no file over 64 MB) and logs into ``out`` as two tarballs."""
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out / "results.tgz", "w:gz") as tar:
        for f in sorted((WORK / "results").rglob("*")):
            if f.is_file() and ".db" not in f.name and f.stat().st_size < MAX_PACKED_BYTES:
                tar.add(f, arcname=str(f.relative_to(WORK)))
        if _state_path().exists():
            tar.add(_state_path(), arcname="results/state.json")
    with tarfile.open(out / "logs.tgz", "w:gz") as tar:
        if (WORK / "logs").is_dir():
            tar.add(WORK / "logs", arcname="logs")
    for log in sorted((WORK / "logs").glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-5:]
        print(f"== {log.name}", *lines, sep="\n")
    print(*(f"{f.name} {f.stat().st_size} B" for f in sorted(out.iterdir())), sep="\n")


# -- on the CPU side ------------------------------------------------------------------------------
DATASETS = ("batchprompt_reference", "boolq", "gsm8k", "hotpotqa", "humaneval", "math", "mbpp", "qqp", "rte")
EXTRA_WHEELS = (
    "langgraph==1.2.24",
    "langgraph-checkpoint-sqlite",
    "sqlalchemy[asyncio]==2.1.9",
    "aiosqlite",
    "alembic",
)
"""What the runtime needs beyond the GPU image and the vLLM bundle."""
KEEP_WHEELS = ("aiosqlite", "alembic", "distro", "greenlet", "jsonpatch", "jsonpointer", "langchain_core",
               "langchain_protocol", "langsmith", "mako", "orjson", "ormsgpack", "requests_toolbelt",
               "sqlalchemy", "sqlite_vec", "tenacity", "uuid_utils", "zstandard")
"""Only these (and langgraph*) of the downloaded wheels travel: two versions of one package break the install."""


def prepare(root: Path) -> None:
    """Stage the datasets (``.qfdata/``) and the extra wheels (``.whl/``), both git-ignored, for ``carry``."""
    exclude = root / ".git" / "info" / "exclude"
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    exclude.write_text("\n".join([*lines, *(d for d in ("/.qfdata/", "/.whl/") if d not in lines)]) + "\n")
    shared = root.parent / "shared"
    shutil.rmtree(root / ".qfdata", ignore_errors=True)
    for name in DATASETS:
        shutil.copytree(shared / "data" / name, root / ".qfdata" / name)
    shutil.copy(shared / "gpu" / "gguf_to_hf.py", root / ".qfdata")
    download = Path("/tmp/qf-whl")
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", "3.12",
                    "--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "--platform",
                    "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "--platform", "any",
                    "-d", str(download), *EXTRA_WHEELS], check=True)
    (root / ".whl").mkdir(exist_ok=True)
    for wheel in download.glob("*.whl"):
        name = wheel.name.split("-")[0].lower()
        if name in KEEP_WHEELS or name.startswith("langgraph"):
            shutil.copy(wheel, root / ".whl")
    sizes = subprocess.run(["du", "-sh", ".qfdata", ".whl"], cwd=root, capture_output=True, text=True, check=False)
    print(sizes.stdout, end="")


# -- command line ---------------------------------------------------------------------------------
def _plan_from(args: argparse.Namespace) -> Plan:
    job_args = dict(kv.split("=", 1) for kv in args.job_args)
    jobs = [j for j in args.jobs.split(",") if j] if args.jobs is not None else None
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    return build_plan(load_plans(), args.layout, args.plan, commit=args.commit, serving_args=args.serving_args,
                      job_args=job_args, jobs=jobs, seeds=seeds)


def _planned_argv(args: argparse.Namespace) -> list[str]:
    """The plan's options again, for the detached worker."""
    argv = [f"--layout={args.layout}", f"--plan={args.plan}", f"--commit={args.commit}"]
    argv += [f"--{name.replace('_', '-')}={getattr(args, name)}" for name in ("serving_args", "jobs", "seeds")
             if getattr(args, name) is not None]
    return argv + [f"--job-args={kv}" for kv in args.job_args]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    planned = argparse.ArgumentParser(add_help=False)
    planned.add_argument("--layout", required=True, help="1gpu, 2gpu or 4gpu (plans.toml)")
    planned.add_argument("--plan", required=True, help="serving, seeds, quality, drqa, priordynaflow or all")
    planned.add_argument("--commit", default="unknown", help="the commit to record (the GPU copy has no .git)")
    planned.add_argument("--serving-args", help="replay flags instead of the plan's")
    planned.add_argument("--jobs", help="comma-separated quality jobs instead of the plan's")
    planned.add_argument("--job-args", action="append", default=[], metavar="JOB=ARGS",
                         help="flags for one job instead of its defaults (repeat)")
    planned.add_argument("--seeds", help="comma-separated seeds (plan seeds)")
    p_plan = sub.add_parser("plan", parents=[planned], help="print the steps (dry run, CPU)")
    p_plan.add_argument("--json", action="store_true", help="as JSON")
    p_run = sub.add_parser("run", parents=[planned], help="set up, start the plan detached, pack after --wait-s")
    p_run.add_argument("--wait-s", type=float, default=555.0, help="stay this long, then pack what is done")
    p_run.add_argument("--no-setup", action="store_true", help="reuse the installed machine and its /tmp/qf")
    sub.add_parser("work", parents=[planned], help=argparse.SUPPRESS)
    p_collect = sub.add_parser("collect", help="wait for the detached plan, scrape /metrics, pack")
    p_collect.add_argument("--wait-s", type=float, default=500.0)
    sub.add_parser("prepare", help="CPU: stage .qfdata/ and .whl/ for carry")
    args = parser.parse_args(argv)
    out = Path(os.environ.get("OUT", "out"))

    if args.command == "prepare":
        prepare(Path.cwd())
    elif args.command == "plan":
        p = _plan_from(args)
        if args.json:
            print(json.dumps([asdict(s) for s in p.steps], indent=1))
        else:
            print(format_plan(p, load_plans()))
    elif args.command == "work":
        work(_plan_from(args))
    elif args.command == "run":
        p = _plan_from(args)
        if not args.no_setup:
            setup(Path.cwd())
        _state_path().unlink(missing_ok=True)
        worker = [sys.executable, "-m", "bench.gpu.driver", "work", *_planned_argv(args)]
        with (WORK / "logs" / "driver.log").open("a") as log:
            subprocess.Popen(worker, cwd=TREE, env=_gpu_env(p.commit), stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        print(format_plan(p, load_plans()), flush=True)
        wait_finished(args.wait_s)
        pack(out)
    elif args.command == "collect":
        if not _state_path().exists():
            # A fresh machine (the one that ran the plan was released, or ``run`` failed before
            # starting its worker): waiting would only spend device time.
            print(f"collect: no plan was started on this machine ({_state_path()} is missing); nothing to wait for",
                  file=sys.stderr)
            return 3
        wait_finished(args.wait_s)
        scrape_metrics()
        pack(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
