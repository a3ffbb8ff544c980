"""`make demo`, the README's first command, as a user runs it: one report, and the model loaded
before the run, outside every call's latency (slow: the real local model)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from tests import extras

ROOT = Path(__file__).resolve().parents[2]


def _latency_metric_s(metrics_dir: Path) -> float:
    """The sum of quotaflow_llm_latency_seconds the run's process recorded."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    value = registry.get_sample_value("quotaflow_llm_latency_seconds_sum", {"backend": "local"})
    assert value is not None
    return value


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_make_demo_prints_its_report_once_and_times_generation_only(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason=extras.LOCAL)
    if shutil.which("make") is None or not (ROOT / ".venv/bin/quotaflow").exists():
        pytest.skip("needs make and the .venv that `make setup` creates")
    data = tmp_path / "data"
    (data / "hotpotqa").mkdir(parents=True)
    (data / "hotpotqa" / "validate.jsonl").write_text(json.dumps({"question": "q", "context": [
        ["Arthur's Magazine", ["Arthur's Magazine (1844-1846) was an American literary periodical."]],
        ["First for Women", ["First for Women is a woman's magazine started in 1989."]],
    ]}) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUOTAFLOW_", "MAKE"))}
    env["QUOTAFLOW_HOME"] = str(tmp_path / "home")
    env["QUOTAFLOW_METRICS_DIR"] = str(tmp_path / "metrics")
    # -o setup: the venv this test runs in is the one `setup` would make.
    done = subprocess.run(["make", "-s", "-o", "setup", "demo", f"DATA={data}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=580)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(re.findall(r"^run [0-9a-f]{16} react ", done.stdout, re.M)) == 1, done.stdout
    assert done.stdout.count("trajectory") == 1 and done.stdout.count("unified cost:") == 1, done.stdout
    assert "2 documents in" in done.stdout + done.stderr  # the corpus was built from DATA
    with sqlite3.connect(tmp_path / "home" / "quotaflow.db") as db:
        generation_s = sum(latency for (latency,) in db.execute("SELECT latency_s FROM llm_calls"))
    # The local backend reports generation time only (tests/orchestrator/llm/test_local_loading.py);
    # the metric, timed around each call, would hold the model's load (seconds) had a call loaded it.
    assert _latency_metric_s(tmp_path / "metrics") - generation_s < 0.5
