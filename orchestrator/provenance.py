"""Where a result came from: the source commit, the machine and the date (benchmark JSON files,
training manifests). The one implementation; ``bench/common.py`` builds on it."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from orchestrator.settings import commit_override

__all__ = ["gpu_names", "machine_description", "machine_details", "package_versions", "source_commit", "utc_now"]

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


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (the ``date`` of every result file)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def gpu_names() -> list[str]:
    """``name, memory`` of each GPU nvidia-smi sees; empty without one."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def machine_description(gpu: str | None = None) -> str:
    """CPU count, architecture and, where one is visible (or ``gpu`` names it), the GPU's name and memory."""
    gpu = gpu if gpu is not None else next(iter(gpu_names()), "")
    base = f"{os.cpu_count()} CPU cores, {platform.machine()}, {platform.system()}"
    return f"{gpu}; {base}" if gpu else base


def _cpu_model() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def _memory_gib() -> float | None:
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return round(pages * page_size / 2**30, 1)


def machine_details() -> dict[str, object]:
    """The machine in fields: host, CPU model and count, memory, GPUs, OS and Python."""
    return {"hostname": platform.node(), "cpu": _cpu_model(), "num_cpus": os.cpu_count(),
            "memory_gib": _memory_gib(), "gpus": gpu_names(), "platform": platform.platform(),
            "python": platform.python_version()}


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (``missing`` where one is not installed)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions
