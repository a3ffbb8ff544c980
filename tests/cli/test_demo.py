"""`make demo`, the README's first command, as a user runs it: one report, and the model loaded
before the run (slow: the real local model)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import extras

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_make_demo_prints_its_report_once(tmp_path: Path) -> None:
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
    # -o setup: the venv this test runs in is the one `setup` would make.
    done = subprocess.run(["make", "-s", "-o", "setup", "demo", f"DATA={data}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=580)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(re.findall(r"^run [0-9a-f]{16} react ", done.stdout, re.M)) == 1, done.stdout
    assert done.stdout.count("trajectory") == 1 and done.stdout.count("unified cost:") == 1, done.stdout
    assert "2 documents in" in done.stdout + done.stderr  # the corpus was built from DATA
