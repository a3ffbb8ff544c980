"""Where a result came from: the source commit and the machine (for benchmark JSON files)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from orchestrator.settings import commit_override

_ROOT = Path(__file__).resolve().parents[1]


def source_commit(repo_dir: str | Path | None = None) -> str:
    """HEAD of the checkout (``-dirty`` when tracked files changed), ``QUOTAFLOW_COMMIT`` where
    the tree has no git metadata, else ``unknown``."""
    if override := commit_override():
        return override
    cwd = str(repo_dir or _ROOT)
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def machine_description() -> str:
    """CPU count, architecture and, where one is visible, the GPU's name and memory."""
    gpu = ""
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    base = f"{os.cpu_count()} CPU cores, {platform.machine()}, {platform.system()}"
    return f"{gpu}; {base}" if gpu else base
