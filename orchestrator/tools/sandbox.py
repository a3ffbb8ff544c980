"""Run untrusted Python in a bubblewrap sandbox: the ``python`` tool and :func:`run_python`.

Each call starts ``bwrap`` (Debian package ``bubblewrap``), which runs ``python -I [-S]`` with
- new user, PID, IPC, UTS, network, mount and cgroup namespaces; the code runs as uid/gid 65534
  (not the caller's) with every capability dropped, in a session of its own, killed with its host
  (``--die-with-parent``); no further user namespaces (see ``_bwrap`` for root callers);
- a read-only view of the Python runtime and the shared libraries only (no shell, no ``/etc``, no
  home, no project files, no ctypes), a fresh ``/proc``, a private tmpfs ``/sandbox`` as working
  directory, and an environment of its own (``_bwrap.SANDBOX_ENV``);
- a seccomp filter refusing ptrace, mount, namespace, keyring, BPF and io_uring calls
  (``_seccomp``);
- limits on the whole sandbox, not one process: a per-call cgroup (v2, else v1) caps the memory of
  all its processes together (``memory_mb``, files in ``/sandbox`` included) and their number
  (``max_processes``, threads included). Where no cgroup is writable (on cgroup v2 the runtime's
  own cgroup holds processes, so it cannot have child groups with controllers) the number falls
  back to RLIMIT_NPROC (per sandbox: it counts the uid inside the sandbox's own user namespace)
  and the memory to a watcher in the host that kills the sandbox once its processes together pass
  ``memory_mb`` (``_memwatch``: a bound by detection, each process also under RLIMIT_AS);
  ``SandboxResult.tree_limits`` says which applied;
- per process, RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE and no core files; a wall-clock limit, and
  output cut to ``max_output_chars``.

When the call returns, every process of the sandbox is gone (the PID namespace dies with its
init, and the call waits for bubblewrap, which waits for it) and nothing of it is left on disk (the
code and stdin travel through memfds, the work directory is a tmpfs).

Without bubblewrap, or where the kernel denies the namespaces, the call fails with a one-line error
saying how to fix it. ``unsafe_unsandboxed_for_trusted_code=True`` runs the code in a plain child
process instead (resource limits only, the host's filesystem and network in reach): for code you
wrote yourself, never for model output.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import select
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.errors import ToolError
from orchestrator.tools import _bwrap
from orchestrator.tools._cgroup import SandboxCgroup, open_sandbox_cgroup
from orchestrator.tools._memwatch import POLL_INTERVAL_S, TreeMemoryWatch
from orchestrator.tools._seccomp import deny_list_filter
from orchestrator.tools.base import Tool, ToolResult, ToolSpec

__all__ = ["INSTALL_HINT", "SandboxLimits", "SandboxResult", "python_tool", "run_python"]

INSTALL_HINT = (
    "the python tool needs bubblewrap (bwrap) to sandbox model-written code and it is not "
    "installed: run 'apt-get install bubblewrap' (or scripts/bootstrap.sh as root)"
)

_MEMORY_EXIT = 86
"""Exit status the bootstrap uses when the user code dies of MemoryError."""
_CAPABILITY_EXIT = 87
"""Exit status the bootstrap uses when it finds capabilities left after the switch to 65534."""

_BOOTSTRAP = r"""
import os, resource, signal, sys
(status_fd, uid, gid, nproc, cpu_s, memory_bytes, file_bytes, memory_exit,
 cap_exit) = map(int, sys.argv[1:10])
if uid >= 0:
    if os.getuid() != uid:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    # Inheritable bits may stay: with no_new_privs and nosuid mounts no exec can regain them.
    with open("/proc/self/status") as f:
        status = dict(line.split(":", 1) for line in f)
    caps = [int(status[k], 16) for k in ("CapPrm", "CapEff", "CapAmb")]
    if os.getuid() != uid or any(caps) or int(status["NoNewPrivs"]) != 1:
        os._exit(cap_exit)
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
if nproc > 0:
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
# Python ignores SIGXFSZ; restore the default so an oversized write kills the process visibly.
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
os.write(status_fd, b"started")
# The status pipe and any descriptor bwrap left open (its --info-fd) are not the code's business.
os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
del resource, signal
sys.argv = ["main.py"]
with open("main.py", encoding="utf-8") as f:
    source = f.read()
namespace = {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__}
try:
    exec(compile(source, "main.py", "exec"), namespace)
except MemoryError:
    import traceback
    traceback.print_exc()
    sys.stderr.flush()
    os._exit(memory_exit)
"""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed run."""

    cpu_s: int = 5
    """CPU seconds per process (RLIMIT_CPU); SIGXCPU at the limit, SIGKILL a second later."""
    memory_mb: int = 512
    """MiB for the whole sandbox: every process and the files in /sandbox together (cgroup); also
    each process's address space (RLIMIT_AS), so one large allocation raises MemoryError."""
    max_processes: int = 16
    """Processes and threads the sandbox may have at once (cgroup pids.max, RLIMIT_NPROC)."""
    file_size_mb: int = 16
    """Largest file the code may write, in MiB (RLIMIT_FSIZE); a larger write kills it."""
    workdir_mb: int = 64
    """Size of the private tmpfs /sandbox (and of /dev/shm)."""
    wall_s: float = 10.0
    """Wall-clock seconds before the whole sandbox is killed."""
    max_output_chars: int = 10_000
    """stdout and stderr are each cut to this many characters (the rest is counted, not kept)."""
    network: Literal["isolate", "allow"] = "isolate"
    """"isolate": a network namespace with only an unconfigured loopback; "allow": the host's."""
    import_site: bool = False
    """Make the installed packages importable, read-only (off: the standard library only, and a
    faster start-up)."""


@dataclass(frozen=True)
class SandboxResult:
    """What came out of a sandboxed run."""

    stdout: str
    stderr: str
    exit_code: int | None
    """The exit status; negative for a signal (as in ``subprocess``); None if it never started."""
    duration_s: float
    killed_by: str | None = None
    """"cpu", "memory", "file_size", "processes" or "wall" when a limit ended the run."""
    limit_message: str | None = None
    """A sentence naming the limit, e.g. "killed: CPU time limit 2s"."""
    network: str = "none"
    """Network isolation applied: "namespace" or "none"."""
    isolation: str = "bubblewrap"
    """"bubblewrap", or "none" for the unsafe opt-out."""
    tree_limits: str = "none"
    """How memory and processes were capped for the whole sandbox: "cgroup-v2", "cgroup-v1",
    "rlimit+watch" (see the module docstring) or "none" (the unsafe opt-out)."""
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


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)  # inheritable only through pass_fds
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _kill(pid: int, *, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        (os.killpg if group else os.kill)(pid, signal.SIGKILL)


def _classify(
    exit_code: int, stderr: str, stopped_by: str | None, oom_kills: int, limits: SandboxLimits
) -> tuple[str | None, str | None]:
    if stopped_by == "wall":
        return "wall", f"killed: wall-clock limit {limits.wall_s:g}s"
    if oom_kills or stopped_by == "memory":
        return "memory", f"killed: memory limit {limits.memory_mb} MiB for the whole sandbox"
    if exit_code in (-signal.SIGXCPU, -signal.SIGKILL):
        return "cpu", f"killed: CPU time limit {limits.cpu_s}s"
    if exit_code == -signal.SIGXFSZ:
        return "file_size", f"killed: file size limit {limits.file_size_mb} MiB"
    if exit_code == _MEMORY_EXIT or (exit_code != 0 and stderr.rstrip().endswith("MemoryError")):
        return "memory", f"stopped: memory limit {limits.memory_mb} MiB (MemoryError)"
    if exit_code != 0 and "[Errno 11] Resource temporarily unavailable" in stderr:
        return "processes", f"stopped: process limit {limits.max_processes} (threads included)"
    return None, None


def run_python(
    code: str,
    limits: SandboxLimits | None = None,
    *,
    stdin: str = "",
    unsafe_unsandboxed_for_trusted_code: bool = False,
) -> SandboxResult:
    """Run ``code`` as ``__main__`` in a fresh sandbox and wait for it (blocking).

    ``stdin`` is what the code reads from standard input. Raises ToolError when bubblewrap is
    missing or cannot create its namespaces (the message says what to do). Safe to call from
    worker threads; from async code use ``await asyncio.to_thread(...)``. For scoring code against
    tests, append the tests to ``code`` and check ``result.ok``.
    """
    limits = limits or SandboxLimits()
    if unsafe_unsandboxed_for_trusted_code:
        return _run_unsandboxed(code, stdin, limits)
    if _bwrap.find_bwrap() is None:
        raise ToolError(INSTALL_HINT)
    return _run_sandboxed(code, stdin, limits)


def _bootstrap_args(status_w: int, uid: int, nproc: int, limits: SandboxLimits) -> list[str]:
    gid = _bwrap.SANDBOX_GID if uid >= 0 else -1
    return ["-c", _BOOTSTRAP] + [
        str(v)
        for v in (
            status_w,
            uid,
            gid,
            nproc,
            limits.cpu_s,
            limits.memory_mb * 1024 * 1024,
            limits.file_size_mb * 1024 * 1024,
            _MEMORY_EXIT,
            _CAPABILITY_EXIT,
        )
    ]


class _Sandbox:
    """What one sandboxed run holds; ``close`` leaves no process, descriptor or cgroup behind."""

    def __init__(self) -> None:
        self.owned: list[int] = []  # descriptors to close whatever happens
        self.cgroup: SandboxCgroup | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.init_pid: int | None = None
        self.init_fd: int | None = None

    def close_fd(self, fd: int) -> None:
        os.close(fd)
        self.owned.remove(fd)

    def kill(self) -> None:
        # Killing the PID namespace's init kills every process of the sandbox; bwrap, left
        # alive, reaps it, so once bwrap has exited none of them is left.
        if self.init_pid is not None:
            _kill(self.init_pid)
        elif self.proc is not None:
            _kill(self.proc.pid, group=True)

    def close(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:  # an error on the way: no sandbox left behind
            if self.init_pid is not None:
                _kill(self.init_pid)
            _kill(proc.pid, group=True)
            proc.wait()
            if self.init_fd is not None:
                _wait_gone(self.init_fd, self.init_pid)
        if proc is not None:
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        for fd in self.owned:
            os.close(fd)
        if self.cgroup is not None:
            self.cgroup.remove()


@dataclass(frozen=True)
class _Started:
    """The host's ends of the pipes to a sandbox that bwrap has just started."""

    info_r: int
    block_w: int
    status_r: int
    root_maps: bool


def _run_sandboxed(code: str, stdin: str, limits: SandboxLimits) -> SandboxResult:
    started = time.monotonic()
    deadline = started + limits.wall_s
    filter_bytes = deny_list_filter()
    box = _Sandbox()
    try:
        pipes = _start_bwrap(box, code, stdin, limits, filter_bytes)
        _release_init(box, pipes, deadline)
        proc = box.proc
        assert proc is not None
        out, err = _Capture(limits.max_output_chars), _Capture(limits.max_output_chars)
        # Without a cgroup, the host watches the tree's memory (see _memwatch for the bound).
        memory_watch = None
        if box.cgroup is None and box.init_pid is not None:
            with contextlib.suppress(OSError):
                memory_watch = TreeMemoryWatch(box.init_pid, limits.memory_mb * 1024 * 1024)
        streams = {proc.stdout: out, proc.stderr: err}
        stopped_by = _pump(proc, streams, deadline, box.kill, memory_watch)
        status = proc.wait()
        if box.init_fd is not None:
            _wait_gone(box.init_fd, box.init_pid)
        started_ok = _read_all(pipes.status_r) == b"started"
        stdout, stdout_truncated = out.text()
        stderr, stderr_truncated = err.text()
        if not started_ok and stopped_by is None:
            raise ToolError(_startup_error(stderr, status))
        # bwrap reports a command killed by signal N as 128 + N, like a shell.
        exit_code = -(status - 128) if status > 128 else status
        oom_kills = box.cgroup.oom_kills() if box.cgroup is not None else 0
        killed_by, message = _classify(exit_code, stderr, stopped_by, oom_kills, limits)
        return SandboxResult(
            stdout=stdout,
            stderr=stderr,
            exit_code=exit_code,
            duration_s=time.monotonic() - started,
            killed_by=killed_by,
            limit_message=message,
            network="none" if limits.network == "allow" else "namespace",
            isolation="bubblewrap",
            tree_limits=box.cgroup.kind if box.cgroup is not None else "rlimit+watch",
            stdout_truncated=stdout_truncated,
            stderr_truncated=stderr_truncated,
            metadata={"seccomp": filter_bytes is not None},
        )
    finally:
        box.close()


def _start_bwrap(
    box: _Sandbox, code: str, stdin: str, limits: SandboxLimits, filter_bytes: bytes | None
) -> _Started:
    """Start bwrap with the code, stdin and seccomp filter in memfds; its init waits on a pipe."""
    code_fd = _memfd("main.py", code.encode())
    stdin_fd = _memfd("stdin", stdin.encode())
    box.owned += [code_fd, stdin_fd]
    seccomp_fd = None
    if filter_bytes is not None:
        seccomp_fd = _memfd("seccomp", filter_bytes)
        box.owned.append(seccomp_fd)
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    status_r, status_w = os.pipe()
    box.owned += [info_r, info_w, block_r, block_w, status_r, status_w]
    plan = _bwrap.plan(
        import_site=limits.import_site,
        network=limits.network == "allow",
        workdir_bytes=limits.workdir_mb * 1024 * 1024,
        code_fd=code_fd,
        seccomp_fd=seccomp_fd,
        block_fd=block_r,
        info_fd=info_w,
    )
    # The sandbox's init shares the uid of the code unless the parent writes root maps.
    nproc = limits.max_processes + (0 if plan.root_maps else 1)
    argv = [*plan.argv, plan.python, "-I", *([] if limits.import_site else ["-S"])]
    argv += _bootstrap_args(status_w, _bwrap.SANDBOX_UID, nproc, limits)
    box.cgroup = open_sandbox_cgroup(limits.memory_mb * 1024 * 1024, limits.max_processes + 1)
    child_fds = [code_fd, info_w, block_r, status_w] + ([seccomp_fd] if seccomp_fd else [])
    box.proc = subprocess.Popen(
        argv,
        env=dict(_bwrap.SANDBOX_ENV),  # bwrap's own init keeps its environment: not the host's
        stdin=stdin_fd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=child_fds,
        start_new_session=True,
    )
    for fd in [*child_fds, stdin_fd]:
        box.close_fd(fd)
    return _Started(info_r=info_r, block_w=block_w, status_r=status_r, root_maps=plan.root_maps)


def _release_init(box: _Sandbox, pipes: _Started, deadline: float) -> None:
    """Put the sandbox's init in the cgroup, write its root maps, then let it run the code."""
    box.init_pid = _read_init_pid(pipes.info_r, deadline)
    box.init_fd = _pidfd(box.init_pid)
    if box.init_fd is not None:
        box.owned.append(box.init_fd)
    if box.init_pid is not None:
        if box.cgroup is not None:
            box.cgroup.add(box.init_pid)
        if pipes.root_maps:
            _bwrap.write_root_maps(box.init_pid)
        os.write(pipes.block_w, b"go")
    box.close_fd(pipes.block_w)


def _startup_error(stderr: str, status: int) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    detail = lines[-1] if lines else f"exit status {status}"
    if status == _CAPABILITY_EXIT:
        detail = "capabilities or privileges were left after the switch to uid 65534"
    return (
        f"the python sandbox could not start ({detail}); bubblewrap needs unprivileged user "
        "namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0) "
        "and a working /proc; fix that rather than run model code unsandboxed"
    )


def _read_init_pid(fd: int, deadline: float) -> int | None:
    """The host pid of the sandbox's init, from bwrap's --info-fd; None if bwrap gave up first."""
    buf = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(deadline - time.monotonic(), 0)):
                continue
            data = os.read(fd, 4096)
            if not data:
                return None
            buf += data
            try:
                return int(json.loads(buf)["child-pid"])
            except ValueError:
                continue
    return None


def _pidfd(pid: int | None) -> int | None:
    try:
        return None if pid is None else os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def _wait_gone(init_fd: int, init_pid: int | None) -> None:
    """Wait until the sandbox's init has exited, and with it every process of its namespace.

    bwrap can exit on its init's exit code before the init itself is gone (the kernel kills the
    rest of the namespace as the init exits)."""
    if not select.select([init_fd], [], [], 5.0)[0] and init_pid is not None:
        _kill(init_pid)
        select.select([init_fd], [], [], 5.0)


def _read_all(fd: int) -> bytes:
    chunks = []
    while data := os.read(fd, 4096):
        chunks.append(data)
    return b"".join(chunks)


def _pump(
    proc: subprocess.Popen[bytes],
    captures: dict[Any, _Capture],
    deadline: float,
    kill: Callable[[], None],
    memory_watch: TreeMemoryWatch | None = None,
) -> str | None:
    """Drain the child's pipes until EOF or the deadline; returns "wall" when the wall limit
    ended the run, "memory" when ``memory_watch`` found the tree over its limit, else None.

    When the child exits, ``kill`` runs so that a lingering process holding the pipes open
    cannot stall the read.
    """
    stopped_by: str | None = None
    poll_s = POLL_INTERVAL_S if memory_watch is not None else 0.1
    with selectors.DefaultSelector() as selector:
        for stream in captures:
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0 and stopped_by is None:
                stopped_by = "wall" if proc.poll() is None else None
                kill()
                deadline = time.monotonic() + 5.0
                continue
            if remaining <= 0:
                break
            for key, _ in selector.select(timeout=min(remaining, poll_s)):
                data = os.read(key.fd, 65536)
                if data:
                    captures[key.fileobj].feed(data)
                else:
                    selector.unregister(key.fileobj)
            if proc.poll() is not None:
                kill()
            elif stopped_by is None and memory_watch is not None and memory_watch.over_limit():
                stopped_by = "memory"
                kill()
    for stream in captures:
        stream.close()
    if proc.poll() is None:
        kill()
    return stopped_by


def _run_unsandboxed(code: str, stdin: str, limits: SandboxLimits) -> SandboxResult:
    """The opt-out: a plain child process under resource limits, as the caller's user."""
    workdir = tempfile.mkdtemp(prefix="quotaflow-unsandboxed-")
    started = time.monotonic()
    try:
        with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8") as f:
            f.write(code)
        stdin_fd = _memfd("stdin", stdin.encode())
        status_r, status_w = os.pipe()
        argv = [sys.executable, "-I"] + ([] if limits.import_site else ["-S"])
        argv += _bootstrap_args(status_w, -1, 0, limits)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
        try:
            proc = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdin=stdin_fd,
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
            os.close(stdin_fd)
        out, err = _Capture(limits.max_output_chars), _Capture(limits.max_output_chars)
        stopped_by = _pump(
            proc,
            {proc.stdout: out, proc.stderr: err},
            started + limits.wall_s,
            lambda: _kill(proc.pid, group=True),
        )
        exit_code = proc.wait()
        with os.fdopen(status_r, "rb"):
            pass
        stdout, stdout_truncated = out.text()
        stderr, stderr_truncated = err.text()
        killed_by, message = _classify(exit_code, stderr, stopped_by, 0, limits)
        return SandboxResult(
            stdout=stdout,
            stderr=stderr,
            exit_code=exit_code,
            duration_s=time.monotonic() - started,
            killed_by=killed_by,
            limit_message=message,
            network="none",
            isolation="none",
            tree_limits="none",
            stdout_truncated=stdout_truncated,
            stderr_truncated=stderr_truncated,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


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


_RUNS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="quotaflow-sandbox")
"""Threads that wait on sandboxed programs, apart from the event loop's default executor: there
a busy neighbour (a model generating on the CPU, other blocking calls) held every thread, and
programs timed out before they started."""


def python_tool(
    limits: SandboxLimits | None = None, *, unsafe_unsandboxed_for_trusted_code: bool = False
) -> Tool:
    """``python``: run a program and see its exit status, stdout and stderr (one unit per run).

    ``unsafe_unsandboxed_for_trusted_code`` turns the sandbox off (see the module docstring).
    """
    limits = limits or SandboxLimits()
    libraries = "installed packages available" if limits.import_site else "standard library only"

    async def call(args: dict[str, Any]) -> ToolResult:
        run = functools.partial(run_python, args["code"], limits, stdin=args.get("stdin", ""),
                                unsafe_unsandboxed_for_trusted_code=unsafe_unsandboxed_for_trusted_code)
        result = await asyncio.get_running_loop().run_in_executor(_RUNS, run)
        return ToolResult(
            content=_render(result),
            is_error=not result.ok,
            metadata={
                "exit_code": result.exit_code,
                "killed_by": result.killed_by,
                "network": result.network,
                "isolation": result.isolation,
                "tree_limits": result.tree_limits,
                "duration_s": result.duration_s,
            },
        )

    sandbox = "bubblewrap"
    if unsafe_unsandboxed_for_trusted_code:
        sandbox = "none (UNSAFE: trusted code only)"
    spec = ToolSpec(
        name="python",
        description=(
            f"Run a Python program ({libraries}, {limits.cpu_s}s CPU, "
            f"{limits.memory_mb} MiB); print what you want to see."
        ),
        parameters={
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "the program's source"},
                "stdin": {"type": "string", "description": "what the program reads from stdin"},
            },
            "required": ["code"],
            "additionalProperties": False,
        },
        unit="run",
        timeout_s=limits.wall_s + 5.0,
        limits={**dataclasses.asdict(limits), "sandbox": sandbox},
    )
    return Tool(spec=spec, fn=call)
