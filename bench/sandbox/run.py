"""Start-up cost of one python-tool call: the bubblewrap sandbox against the unsandboxed child.

One call is ``run_python("print(1)")`` with the default limits, timed from the call to its return
(process start, the sandbox's set-up and tear-down, the interpreter's start-up, output capture).
Modes, interleaved call by call so that drift of the machine hits them alike:
- ``before``: the previous implementation (a plain child process, network namespace through
  ctypes), loaded from git at ``--before-commit``;
- ``unsandboxed``: today's opt-out, ``unsafe_unsandboxed_for_trusted_code=True``;
- ``bubblewrap``: the sandbox (namespaces, seccomp, per-call cgroup where writable);
- ``bubblewrap_site``: the sandbox with ``import_site=True`` (the installed packages mounted).

Writes ``--out/summary.json`` (default ``bench/results/sandbox``): provenance, then per mode the
median and p95 in ms and the raw per-call times.

    .venv/bin/python -m bench.sandbox.run            # 60 calls per mode
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import provenance, write_json
from orchestrator.tools.sandbox import SandboxLimits, SandboxResult, run_python

REPO = Path(__file__).resolve().parents[2]
BEFORE_COMMIT = "d4ef6c8"
"""The last commit with the unsandboxed python tool."""


def _load_before(commit: str) -> Callable[[str], Any]:
    source = subprocess.run(
        ["git", "show", f"{commit}:orchestrator/tools/sandbox.py"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        path = Path(tmp) / "sandbox_before.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("sandbox_before", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
    return lambda code: module.run_python(code)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=60, help="timed calls per mode")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per mode first")
    parser.add_argument("--before-commit", default=BEFORE_COMMIT)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/sandbox")
    args = parser.parse_args(argv)

    modes: dict[str, Callable[[str], Any]] = {
        "before": _load_before(args.before_commit),
        "unsandboxed": lambda code: run_python(code, unsafe_unsandboxed_for_trusted_code=True),
        "bubblewrap": lambda code: run_python(code),
        "bubblewrap_site": lambda code: run_python(code, SandboxLimits(import_site=True)),
    }
    raw: dict[str, list[float]] = {name: [] for name in modes}
    sandboxed: SandboxResult | None = None
    for i in range(args.warmup + args.calls):
        for name, call in modes.items():
            started = time.perf_counter()
            result = call("print(1)")
            elapsed_ms = (time.perf_counter() - started) * 1000
            if result.stdout != "1\n" or result.exit_code != 0:
                raise SystemExit(f"{name}: the call failed: {result.stderr[-500:]}")
            if name == "bubblewrap":
                sandboxed = result
            if i >= args.warmup:
                raw[name].append(round(elapsed_ms, 3))
    assert sandboxed is not None
    summary = {
        **provenance(),
        "python": sys.version.split()[0],
        "calls_per_mode": args.calls,
        "before_commit": args.before_commit,
        "sandbox": {
            "tree_limits": sandboxed.tree_limits,
            "seccomp": sandboxed.metadata.get("seccomp"),
            "bwrap": subprocess.run(["bwrap", "--version"], capture_output=True, text=True, check=True).stdout.strip(),
        },
        "modes": {
            name: {
                "median_ms": round(statistics.median(times), 2),
                "p95_ms": round(_percentile(times, 0.95), 2),
                "raw_ms": times,
            }
            for name, times in raw.items()
        },
    }
    path = write_json(args.out / "summary.json", summary)
    for name, stats in summary["modes"].items():
        print(f"{name:16s} median {stats['median_ms']:7.2f} ms   p95 {stats['p95_ms']:7.2f} ms")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
