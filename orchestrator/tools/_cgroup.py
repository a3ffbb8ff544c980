"""A per-call control group for the python sandbox: memory and process count of the whole tree.

:func:`open_sandbox_cgroup` makes a child of this process's own cgroup with a memory limit and a
process cap, and returns None where the machine offers no writable one. cgroup v2 is used where
``/sys/fs/cgroup`` is the unified hierarchy and this process's cgroup delegates the ``memory`` and
``pids`` controllers; otherwise the v1 ``memory`` and ``pids`` hierarchies if both are mounted and
writable (containers that mount v1). The sandbox's init is added before it starts the user code, so
every process of the sandbox is inside; :meth:`SandboxCgroup.remove` kills what is left and deletes
the group. A group left by a killed host (its pid is in the name) is deleted by the next call.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

__all__ = ["SandboxCgroup", "open_sandbox_cgroup"]

_ROOT = Path("/sys/fs/cgroup")
_PREFIX = "quotaflow-sandbox-"


def _own_paths() -> dict[str, str]:
    """Controller (``""`` for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def _located(mount: Path, path: str) -> Path:
    # Inside a cgroup namespace the mount's root is this process's own cgroup.
    candidate = mount / path.lstrip("/")
    return candidate if candidate.is_dir() else mount


def _sweep(parent: Path) -> None:
    """Delete groups whose creating process is gone (a killed host leaves them behind)."""
    for stale in parent.glob(_PREFIX + "*"):
        pid = stale.name[len(_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            with contextlib.suppress(OSError):
                stale.rmdir()


class SandboxCgroup:
    """One sandbox's group (one directory under v2, one per controller under v1)."""

    def __init__(self, kind: str, dirs: list[Path], events: Path) -> None:
        self.kind = kind
        """"cgroup-v2" or "cgroup-v1"."""
        self.dirs = dirs
        self._events = events

    def add(self, pid: int) -> None:
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(pid))

    def oom_kills(self) -> int:
        """How many processes the kernel killed for going over the memory limit."""
        with contextlib.suppress(OSError):
            for line in self._events.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def remove(self) -> None:
        for d in self.dirs:
            kill = d / "cgroup.kill"
            with contextlib.suppress(OSError):
                if kill.exists():
                    kill.write_text("1")
                else:
                    for pid in (d / "cgroup.procs").read_text().split():
                        os.kill(int(pid), signal.SIGKILL)
        # Killed processes leave the group as the kernel reaps them: a few milliseconds.
        deadline = time.monotonic() + 2.0
        for d in self.dirs:
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.005)


def _make(parent: Path) -> Path:
    _sweep(parent)
    path = parent / f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
    path.mkdir()
    return path


def _open_v2(memory_bytes: int, max_pids: int) -> SandboxCgroup | None:
    if not (_ROOT / "cgroup.controllers").exists():
        return None
    parent = _located(_ROOT, _own_paths().get("", "/"))
    control = parent / "cgroup.subtree_control"
    if not {"memory", "pids"} <= set(control.read_text().split()):
        try:
            control.write_text("+memory +pids")
        except OSError:  # EBUSY: processes live in our own group (the "no internal processes" rule)
            return None
    group = _make(parent)
    try:
        (group / "memory.max").write_text(str(memory_bytes))
        if (group / "memory.swap.max").exists():
            (group / "memory.swap.max").write_text("0")
        (group / "pids.max").write_text(str(max_pids))
    except OSError:
        group.rmdir()
        raise
    return SandboxCgroup("cgroup-v2", [group], group / "memory.events")


def _open_v1(memory_bytes: int, max_pids: int) -> SandboxCgroup | None:
    own = _own_paths()
    mounts = {name: _ROOT / name for name in ("memory", "pids")}
    if not all(name in own and (mount / "cgroup.procs").exists() for name, mount in mounts.items()):
        return None
    memory = _make(_located(mounts["memory"], own["memory"]))
    try:
        pids = _make(_located(mounts["pids"], own["pids"]))
    except OSError:
        memory.rmdir()
        raise
    try:
        (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
        if (memory / "memory.memsw.limit_in_bytes").exists():
            (memory / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
        (pids / "pids.max").write_text(str(max_pids))
    except OSError:
        memory.rmdir()
        pids.rmdir()
        raise
    return SandboxCgroup("cgroup-v1", [memory, pids], memory / "memory.oom_control")


def open_sandbox_cgroup(memory_bytes: int, max_pids: int) -> SandboxCgroup | None:
    """A fresh group capped at ``memory_bytes`` and ``max_pids``; None where none is writable."""
    for opener in (_open_v2, _open_v1):
        try:
            group = opener(memory_bytes, max_pids)
        except OSError:
            group = None
        if group is not None:
            return group
    return None
