"""The whole-sandbox memory bound where no cgroup is writable: a watcher in the host.

It finds the sandbox's processes by their PID namespace (every process in ``/proc`` whose
``ns/pid`` is the sandbox's; none can leave it) and sums their proportional set size (``Pss`` in
``/proc/PID/smaps_rollup``: pages shared after a fork count once, not once per process). The
caller polls it every ``POLL_INTERVAL_S`` while it waits for output and kills the sandbox once the
sum passes the limit. It is a bound by detection, not by the kernel: between two polls the tree
can overshoot by what it allocates in one interval, and each process stays under RLIMIT_AS, so
the overshoot is at most min(interval x allocation rate, (max_processes - 1) x memory_mb). Files
in the sandbox's tmpfs are not counted; their size is capped by ``workdir_mb``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["POLL_INTERVAL_S", "TreeMemoryWatch"]

POLL_INTERVAL_S = 0.05


def _pss_bytes(pid: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class TreeMemoryWatch:
    """Sums the memory of every process in the PID namespace of ``init_pid`` (a host pid)."""

    def __init__(self, init_pid: int, limit_bytes: int) -> None:
        self.namespace = os.readlink(f"/proc/{init_pid}/ns/pid")
        self.limit_bytes = limit_bytes
        self.peak_bytes = 0

    def total_bytes(self) -> int:
        total = 0
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry.name}/ns/pid") == self.namespace:
                        total += _pss_bytes(entry.name)
        self.peak_bytes = max(self.peak_bytes, total)
        return total

    def over_limit(self) -> bool:
        return self.total_bytes() > self.limit_bytes
