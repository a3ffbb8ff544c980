"""The test PostgreSQL helper removes the clusters of killed test runs, and only those."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests import pg


def _cluster(root: Path, name: str, pid: int | None, age_s: float = 0.0) -> Path:
    top = root / name
    (top / "data").mkdir(parents=True)
    if pid is not None:
        (top / "data" / "postmaster.pid").write_text(f"{pid}\n/tmp/x\n")
    stamp = time.time() - age_s
    os.utime(top, (stamp, stamp))
    return top


def test_stale_clusters_are_removed_live_ones_kept(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid names no process now
    dead = _cluster(tmp_path, "qf-pg-dead", gone.pid)
    live = _cluster(tmp_path, "qf-pg-live", os.getpid(), age_s=7200)
    stopped = _cluster(tmp_path, "qf-pg-stopped", None, age_s=7200)
    starting = _cluster(tmp_path, "qf-pg-starting", None)
    other = _cluster(tmp_path, "not-ours", gone.pid)
    removed = pg.remove_stale(str(tmp_path))
    assert sorted(removed) == sorted([str(dead), str(stopped)])
    assert live.exists() and starting.exists() and other.exists()
    assert not dead.exists() and not stopped.exists()
