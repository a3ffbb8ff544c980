"""The DRQA training-resume benchmark's dry run: four processes on the tiny model, one of them
SIGKILLed; the summary says what the resumed run took again and that it saved the same weights."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests import extras

pytest.importorskip("torch", reason=extras.LOCAL)
pytest.importorskip("transformers", reason=extras.LOCAL)


def test_dry_run_kills_resumes_and_compares(tmp_path: Path) -> None:
    from bench.drqa.train_resume import main

    assert main(["--dry-run", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"commit", "machine", "date", "model"} <= set(summary)
    assert summary["exit_codes"] == {"plain": 0, "checkpointed": 0, "killed": -signal.SIGKILL, "resumed": 0}
    phases = summary["phases"]
    assert phases["killed"]["steps_taken"] == [0, 1, 2]  # killed after step 2; the checkpoint holds 0-1
    assert phases["resumed"]["steps_taken"] == [2, 3, 4] and len(phases["resumed"]["load_s"]) == 1
    assert phases["plain"]["save_s"] == [] and len(phases["checkpointed"]["save_s"]) == 2
    assert all(b > 0 for b in phases["checkpointed"]["checkpoint_bytes"])
    assert summary["resumed_vs_uninterrupted"]["identical"] is True
