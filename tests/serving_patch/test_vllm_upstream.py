"""vLLM 0.26.0's own scheduler tests pass with the plugin's classes wherever they pass on stock.

The tests (``tests/v1/core`` and the CPU offloading connector's scheduler tests,
``tests/v1/kv_connector/unit/offloading_connector/test_scheduler.py``, of vLLM's source release, fetched from PyPI by
``scripts/fetch_vllm_tests.py`` during ``scripts/bootstrap.sh --test``; see
``vllm_upstream/README.md``) run twice, each in its own pytest process: once with vLLM's
``Scheduler`` and ``AsyncScheduler``, once with ``ContinuumScheduler``/``ContinuumAsyncScheduler`` in their place.
None of these requests carries program hints, so the plugin must schedule every one of them
exactly as vLLM does, priorities and ties included, and leave ``Request.priority`` readable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("vllm", reason="vLLM 0.26 is not installed (extra quotaflow[serve])")

pytestmark = pytest.mark.vllm

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).parent / "vllm_upstream"
"""Our configuration of the upstream run (conftest.py, pytest.ini), copied beside vLLM's tests."""
UPSTREAM = Path(os.environ.get("QUOTAFLOW_VLLM_TESTS", REPO_ROOT / ".venv" / "vllm-upstream"))
SKIP_REASON_PREFIX = "multimodal model "
OWN_TEST = "test_quotaflow_pins.py"
"""Where ``vllm_upstream/quotaflow_pins.py`` (not a test module of ours: it imports vLLM's test
package) runs, next to vLLM's offloading-connector tests."""
SUITES = ("tests/v1/core/", "tests/v1/kv_connector/unit/offloading_connector/")
"""The only tests allowed to skip: those building a multimodal model (see the README)."""


def _start(scheduler: str, report: Path) -> subprocess.Popen[str]:
    if not (UPSTREAM / "tests" / "v1" / "core").is_dir():
        pytest.fail(f"vLLM's tests are not at {UPSTREAM}: run scripts/bootstrap.sh --test "
                    "(or python scripts/fetch_vllm_tests.py DIR with QUOTAFLOW_VLLM_TESTS=DIR)")
    for ours in ("conftest.py", "pytest.ini"):
        shutil.copy(RUNNER / ours, UPSTREAM / ours)
    # Ours, in vLLM's offloading-connector harness: the plugin's pins beside the connector.
    shutil.copy(RUNNER / "quotaflow_pins.py", UPSTREAM / SUITES[1] / OWN_TEST)
    env = dict(os.environ)
    env.update(
        QUOTAFLOW_UPSTREAM_SCHEDULER=scheduler,
        QUOTAFLOW_UPSTREAM_REPORT=str(report),
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "tests"],
        cwd=UPSTREAM,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen[str], report: Path) -> dict[str, Any]:
    # Failures are read from the report; the exit status says nothing more.
    try:
        output, _ = process.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"upstream run took over 540 s:\n{output[-8000:]}")
    assert report.exists(), f"upstream run wrote no report:\n{output[-8000:]}"
    result: dict[str, Any] = json.loads(report.read_text())
    result["log"] = output[-6000:]
    return result


def _with(result: dict[str, Any], outcome: str) -> set[str]:
    return {test for test, entry in result["tests"].items() if entry["outcome"] == outcome}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("vllm-upstream")
    reports = {mode: out / f"{mode}.json" for mode in ("stock", "plugin")}
    # Both runs at once: each is one CPU-bound process.
    processes = {mode: _start(mode, report) for mode, report in reports.items()}
    return {mode: _finish(processes[mode], reports[mode]) for mode in reports}


def test_stock_vllm_passes_every_test_that_can_run_offline(runs: dict[str, dict[str, Any]]) -> None:
    stock = runs["stock"]
    # vLLM 0.26.0: 127 scheduler tests run on CPU, 47 multimodal ones need torchvision; 91
    # tests of the offloading connector's scheduler side, and our 2 beside them.
    passed = _with(stock, "passed")
    assert len(passed) >= 127 + 91 + 2, stock["log"]
    assert sum(OWN_TEST in t for t in passed) == 2, stock["log"]
    assert all(any(t.startswith(suite) for t in passed) for suite in SUITES), stock["log"]
    assert not _with(stock, "failed"), stock["log"]
    reasons = {entry["reason"] for entry in stock["tests"].values() if entry["outcome"] == "skipped"}
    assert all(reason.startswith(SKIP_REASON_PREFIX) for reason in reasons), reasons


def test_plugin_passes_every_test_that_passes_on_stock(runs: dict[str, dict[str, Any]]) -> None:
    stock, plugin = runs["stock"], runs["plugin"]
    # The plugin's classes were built in every suite (most tests build one or more schedulers).
    for suite in SUITES:
        ran = [t for t in _with(stock, "passed") if t.startswith(suite)]
        built = [t for t in ran if plugin["tests"].get(t, {}).get("plugin_schedulers")]
        assert len(built) >= len(ran) // 2, f"plugin not substituted in {suite}: {len(built)} of {len(ran)}"
    missing = sorted(_with(stock, "passed") - _with(plugin, "passed"))
    assert not missing, f"pass on stock, not with the plugin: {missing}\n{plugin['log']}"
    assert _with(plugin, "skipped") == _with(stock, "skipped")
