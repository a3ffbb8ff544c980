"""Run untrusted Python in a separate, limited process: the ``python`` tool and :func:`run_python`.

The child is ``sys.executable -I [-S]`` (isolated mode: no PYTHON* variables, no user site, no
script directory on the path) started in its own session (process group) with
- a scrubbed environment: only PATH, LANG, HOME and TMPDIR (the last two point into the sandbox);
- a fresh temporary working directory, deleted afterwards;
- resource limits set by a small bootstrap before the user code runs: RLIMIT_CPU (CPU seconds),
  RLIMIT_AS (address space), RLIMIT_FSIZE (largest file written), RLIMIT_CORE = 0;
- a wall-clock limit enforced by the parent, which kills the whole process group;
- no network where the OS allows: the bootstrap calls ``unshare(CLONE_NEWNET)`` (or, without
  CAP_SYS_ADMIN, ``unshare(CLONE_NEWUSER | CLONE_NEWNET)``) through libc, so the process sees
  only an unconfigured loopback. Where neither is permitted (non-Linux, user namespaces
  disabled) the fallback replaces ``socket.socket`` with a refusing stub: a best-effort guard
  that stops ordinary library code, not a determined attacker. ``SandboxResult.network`` says
  which one applied ("namespace", "socket-guard", or "none" when ``SandboxLimits.network`` is
  "allow").

POSIX only (``resource``). Not covered: the number of processes (RLIMIT_NPROC counts every
process of the user, so it cannot be set per sandbox); a descendant that calls ``setsid()``
leaves the process group and survives the group kill; the filesystem outside the temporary
directory is readable and, with the parent's permissions, writable. With ``import_site`` on,
libraries that reserve much address space at import (OpenBLAS threads) need a larger
``memory_mb``.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.tools.base import Tool, ToolResult, ToolSpec

__all__ = ["SandboxLimits", "SandboxResult", "python_tool", "run_python"]

_MEMORY_EXIT = 86
"""Exit status the bootstrap uses when the user code dies of MemoryError."""

_BOOTSTRAP = r"""
import json, os, resource, signal, sys
status_fd, cpu_s, memory_bytes, file_bytes, network_mode, memory_exit = sys.argv[1:7]
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
network = "none" if network_mode == "allow" else "socket-guard"
if network_mode == "isolate":
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        for flags in (0x40000000, 0x10000000 | 0x40000000):  # NEWNET, NEWUSER|NEWNET
            if libc.unshare(flags) == 0:
                network = "namespace"
                break
    except (OSError, AttributeError, ImportError):
        pass
if network == "socket-guard":
    import socket
    class _NoNetwork(socket.socket):
        def __init__(self, *a, **k):
            raise OSError("network access is disabled in this sandbox")
    socket.socket = _NoNetwork
    socket.create_connection = lambda *a, **k: _NoNetwork()
with os.fdopen(int(status_fd), "w") as status:
    status.write(json.dumps({"network": network}))
cpu = int(cpu_s)
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_AS, (int(memory_bytes), int(memory_bytes)))
resource.setrlimit(resource.RLIMIT_FSIZE, (int(file_bytes), int(file_bytes)))
# Python ignores SIGXFSZ; restore the default so an oversized write kills the process visibly.
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
import traceback
del json, resource, signal
sys.argv = ["main.py"]
with open("main.py", encoding="utf-8") as f:
    source = f.read()
namespace = {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__}
try:
    exec(compile(source, "main.py", "exec"), namespace)
except MemoryError:
    traceback.print_exc()
    sys.stderr.flush()
    os._exit(int(memory_exit))
"""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed run."""

    cpu_s: int = 5
    """CPU seconds (RLIMIT_CPU); the process gets SIGXCPU at the limit and SIGKILL a second later."""
    memory_mb: int = 512
    """Address space in MiB (RLIMIT_AS); allocations past it raise MemoryError."""
    file_size_mb: int = 16
    """Largest file the code may write, in MiB (RLIMIT_FSIZE); a larger write kills it."""
    wall_s: float = 10.0
    """Wall-clock seconds before the whole process group is killed."""
    max_output_chars: int = 10_000
    """stdout and stderr are each cut to this many characters (the rest is counted, not kept)."""
    network: Literal["isolate", "guard", "allow"] = "isolate"
    """"isolate": a network namespace, else the socket guard; "guard": only the socket guard;
    "allow": leave the network alone (see the module docstring)."""
    import_site: bool = False
    """Make site-packages importable (off: the standard library only, and faster start-up)."""


@dataclass(frozen=True)
class SandboxResult:
    """What came out of a sandboxed run."""

    stdout: str
    stderr: str
    exit_code: int | None
    """The exit status; negative for a signal (as in ``subprocess``); None if it never started."""
    duration_s: float
    killed_by: str | None = None
    """"cpu", "memory", "file_size" or "wall" when a limit ended the run."""
    limit_message: str | None = None
    """A sentence naming the limit, e.g. "killed: CPU time limit 2s"."""
    network: str = "none"
    """Network isolation applied: "namespace", "socket-guard" or "none"."""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """The code ran to completion with exit status 0."""
        return self.exit_code == 0 and self.killed_by is None


class _Capture:
    """Keeps the first ``max_chars`` characters of a stream and counts the rest."""

    def __init__(self, max_chars: int) -> None:
        # Reading bytes, so keep up to 4 bytes per character before decoding.
        self.max_bytes = max_chars * 4
        self.max_chars = max_chars
        self.chunks: list[bytes] = []
        self.num_bytes = 0

    def feed(self, data: bytes) -> None:
        room = self.max_bytes - sum(len(c) for c in self.chunks)
        if room > 0:
            self.chunks.append(data[:room])
        self.num_bytes += len(data)

    def text(self) -> tuple[str, bool]:
        text = b"".join(self.chunks).decode("utf-8", errors="replace")
        truncated = self.num_bytes > self.max_bytes or len(text) > self.max_chars
        if truncated:
            text = text[: self.max_chars] + f"\n[output truncated: {self.num_bytes} bytes in total]"
        return text, truncated


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _classify(
    exit_code: int, stderr: str, wall_killed: bool, limits: SandboxLimits
) -> tuple[str | None, str | None]:
    if wall_killed:
        return "wall", f"killed: wall-clock limit {limits.wall_s:g}s"
    if exit_code in (-signal.SIGXCPU, -signal.SIGKILL):
        return "cpu", f"killed: CPU time limit {limits.cpu_s}s"
    if exit_code == -signal.SIGXFSZ:
        return "file_size", f"killed: file size limit {limits.file_size_mb} MiB"
    if exit_code == _MEMORY_EXIT or (exit_code != 0 and stderr.rstrip().endswith("MemoryError")):
        return "memory", f"stopped: memory limit {limits.memory_mb} MiB (MemoryError)"
    return None, None


def run_python(code: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run ``code`` as ``__main__`` in a fresh sandboxed process and wait for it (blocking).

    Safe to call from worker threads; from async code use ``await asyncio.to_thread(...)``.
    For scoring code against tests, append the tests to ``code`` and check ``result.ok``.
    """
    limits = limits or SandboxLimits()
    workdir = tempfile.mkdtemp(prefix="quotaflow-sandbox-")
    started = time.monotonic()
    try:
        with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8") as f:
            f.write(code)
        status_r, status_w = os.pipe()
        argv = [sys.executable, "-I"]
        if not limits.import_site:
            argv.append("-S")
        argv += [
            "-c",
            _BOOTSTRAP,
            str(status_w),
            str(limits.cpu_s),
            str(limits.memory_mb * 1024 * 1024),
            str(limits.file_size_mb * 1024 * 1024),
            limits.network,
            str(_MEMORY_EXIT),
        ]
        env = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": workdir,
            "TMPDIR": workdir,
        }
        try:
            proc = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(status_w,),
                start_new_session=True,
            )
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        out, err = _Capture(limits.max_output_chars), _Capture(limits.max_output_chars)
        wall_killed = _pump(proc, {proc.stdout: out, proc.stderr: err}, started + limits.wall_s)
        exit_code = proc.wait()
        network = _read_status(status_r)
        stdout, stdout_truncated = out.text()
        stderr, stderr_truncated = err.text()
        killed_by, message = _classify(exit_code, stderr, wall_killed, limits)
        return SandboxResult(
            stdout=stdout,
            stderr=stderr,
            exit_code=exit_code,
            duration_s=time.monotonic() - started,
            killed_by=killed_by,
            limit_message=message,
            network=network,
            stdout_truncated=stdout_truncated,
            stderr_truncated=stderr_truncated,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _read_status(fd: int) -> str:
    """The isolation the bootstrap reported ("none" if it died before reporting)."""
    with os.fdopen(fd, "rb") as status:
        raw = status.read()
    try:
        return str(json.loads(raw)["network"])
    except (ValueError, KeyError, TypeError):
        return "none"


def _pump(proc: subprocess.Popen[bytes], captures: dict[Any, _Capture], deadline: float) -> bool:
    """Drain the child's pipes until EOF or the deadline; returns whether the wall limit hit.

    When the child exits, its process group is killed so that a lingering grandchild holding
    the pipes open cannot stall the read.
    """
    wall_killed = False
    with selectors.DefaultSelector() as selector:
        for stream in captures:
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0 and not wall_killed:
                wall_killed = proc.poll() is None
                _kill_group(proc.pid)
                deadline = time.monotonic() + 5.0
                continue
            if remaining <= 0:
                break
            for key, _ in selector.select(timeout=min(remaining, 0.1)):
                data = os.read(key.fd, 65536)
                if data:
                    captures[key.fileobj].feed(data)
                else:
                    selector.unregister(key.fileobj)
            if proc.poll() is not None:
                _kill_group(proc.pid)
    for stream in captures:
        stream.close()
    if proc.poll() is None:
        _kill_group(proc.pid)
    return wall_killed


def _render(result: SandboxResult) -> str:
    parts = []
    if result.limit_message:
        parts.append(result.limit_message)
    parts.append(f"exit status: {result.exit_code}")
    if result.stdout:
        parts.append("stdout:\n" + result.stdout)
    if result.stderr:
        parts.append("stderr:\n" + result.stderr)
    return "\n".join(parts)


def python_tool(limits: SandboxLimits | None = None) -> Tool:
    """``python``: run a program and see its exit status, stdout and stderr (one unit per run)."""
    limits = limits or SandboxLimits()
    libraries = "installed packages available" if limits.import_site else "standard library only"

    async def call(args: dict[str, Any]) -> ToolResult:
        result = await asyncio.to_thread(run_python, args["code"], limits)
        return ToolResult(
            content=_render(result),
            is_error=not result.ok,
            metadata={
                "exit_code": result.exit_code,
                "killed_by": result.killed_by,
                "network": result.network,
                "duration_s": result.duration_s,
            },
        )

    spec = ToolSpec(
        name="python",
        description=(
            f"Run a Python program ({libraries}, {limits.cpu_s}s CPU, "
            f"{limits.memory_mb} MiB); print what you want to see."
        ),
        parameters={
            "type": "object",
            "properties": {"code": {"type": "string", "description": "the program's source"}},
            "required": ["code"],
            "additionalProperties": False,
        },
        unit="run",
        timeout_s=limits.wall_s + 5.0,
    )
    return Tool(spec=spec, fn=call)
