"""Hostile code through the python tool, as a model could write it: every attack must fail and
leave the host alone.

Each case runs real attack code through ``ToolRegistry.invoke`` of the runtime's default registry
(default limits). The code prints ``PWNED`` when a step succeeds. After each call the test checks
the host: a secret variable of this process did not leak, a sentinel directory outside the sandbox
is unchanged, a bystander host process is alive, the rows of a real SQLite store's ledger (held
open by this process, as the runtime holds its store) are unchanged, nothing appeared in the
host's /dev/shm, and no process of the sandbox's PID namespace is left.

bubblewrap must be installed (CI and scripts/bootstrap.sh install it); without it these tests fail
with the tool's install message rather than skip.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import select
import socket
import string
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from orchestrator.store.db import Store
from orchestrator.tools._cgroup import open_sandbox_cgroup
from orchestrator.tools.base import ToolResult
from orchestrator.tools.builtins import default_registry
from orchestrator.tools.sandbox import SandboxLimits

REPO = Path(__file__).resolve().parents[3]
SECRET_NAME = "QUOTAFLOW_SANDBOX_TEST_SECRET"

PREAMBLE = """
import os, sys
print("NS", os.readlink("/proc/self/ns/pid"), flush=True)
def pwned(what):
    print("PWNED", what, flush=True)
"""

ATTACKS: dict[str, str] = {
    # -- the host's files ------------------------------------------------------------------------
    "read_etc_passwd": """
        try:
            data = open("/etc/passwd").read()
            pwned("passwd " + data[:80])
        except OSError as exc:
            print("blocked", exc)
    """,
    "read_etc_shadow": """
        try:
            data = open("/etc/shadow").read()
            pwned("shadow " + data[:80])
        except OSError as exc:
            print("blocked", exc)
    """,
    "read_prompts_from_project_database": """
        import sqlite3
        try:
            rows = sqlite3.connect("file:$db?mode=ro", uri=True).execute(
                "SELECT scope, resource FROM budget_accounts").fetchall()
            pwned(rows)
        except Exception as exc:
            print("blocked", exc)
    """,
    "write_outside_work_directory": """
        for path in ("$sentinel_dir/planted.txt", "/usr/lib/planted.txt", "/planted.txt",
                     "/root/planted.txt", "/proc/1/root/planted.txt"):
            try:
                with open(path, "w") as f:
                    f.write("planted")
                pwned("wrote " + path)
            except OSError as exc:
                print("blocked", path, exc)
    """,
    "delete_outside_work_directory": """
        for path in ("$sentinel", "$db"):
            try:
                os.remove(path)
                pwned("deleted " + path)
            except OSError as exc:
                print("blocked", path, exc)
    """,
    "open_database_by_path_and_write": """
        import sqlite3
        try:
            con = sqlite3.connect("$db")
            con.execute("UPDATE budget_accounts SET limit_amount = 1000, spent = 0")
            con.commit()
            pwned("ledger rewritten")
        except Exception as exc:
            print("blocked", exc)
    """,
    # -- the host's processes and secrets --------------------------------------------------------
    "read_parent_environ": """
        for pid in (os.getppid(), $host_pid, 1):
            try:
                data = open(f"/proc/{pid}/environ", "rb").read()
                print("environ", pid, data)
                if b"$secret_name" in data:
                    pwned("secret from " + str(pid))
            except OSError as exc:
                print("blocked", pid, exc)
    """,
    "read_proc_1": """
        for path in ("/proc/1/environ", "/proc/1/root/etc/passwd", "/proc/1/mem", "/proc/1/fd/0"):
            try:
                with open(path, "rb") as f:
                    data = f.read(64)
                print("read", path, data)
                if path != "/proc/1/fd/0" or data:
                    pwned("read " + path)
            except OSError as exc:
                print("blocked", path, exc)
        print("proc 1 is", open("/proc/1/cmdline", "rb").read()[:20])
    """,
    "use_inherited_descriptors": """
        for fd in [int(f) for f in os.listdir("/proc/self/fd")]:  # the listing's own fd closes
            if fd > 2:
                try:
                    os.fstat(fd)
                    pwned(f"inherited descriptor {fd}: " + os.readlink(f"/proc/self/fd/{fd}"))
                except OSError:
                    print("closed", fd)
    """,
    "sigkill_the_host_process": """
        import signal
        try:
            os.kill($host_pid, signal.SIGKILL)
            pwned("killed the host")
        except OSError as exc:
            print("blocked", exc)
    """,
    "signal_any_host_process": """
        import signal
        for pid in ($victim_pid, $host_pid):
            try:
                os.kill(pid, signal.SIGTERM)
                pwned("signalled " + str(pid))
            except OSError as exc:
                print("blocked", pid, exc)
        print("sandbox pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()), flush=True)
        os.kill(-1, signal.SIGKILL)  # every process this code may signal: only the sandbox's own
    """,
    "ptrace_the_parent": """
        for target in (os.getppid(), $host_pid):
            try:
                with open(f"/proc/{target}/mem", "rb") as mem:
                    mem.read(1)
                pwned("read memory of " + str(target))
            except OSError as exc:
                print("blocked /proc mem", target, exc)
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.ptrace(16, os.getppid(), 0, 0) == 0:  # PTRACE_ATTACH
                pwned("ptrace attached")
        except ImportError as exc:
            print("blocked", exc)
    """,
    "rewrite_budget_through_proc_fd": """
        import sqlite3
        for pid in [p for p in os.listdir("/proc") if p.isdigit()] + ["$host_pid"]:
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError as exc:
                print("blocked", pid, exc)
                continue
            for fd in fds:
                path = f"/proc/{pid}/fd/{fd}"
                try:
                    con = sqlite3.connect(path)
                    con.execute("UPDATE budget_accounts SET limit_amount = 1000, spent = 0")
                    con.commit()
                    pwned("budget rewritten through " + path)
                except Exception as exc:
                    print("no store at", path, exc)
    """,
    # -- escaping the namespaces ----------------------------------------------------------------
    "setns_into_host_network_and_connect": """
        import socket
        for pid in ($host_pid, os.getppid()):
            try:
                fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
                import ctypes
                if ctypes.CDLL(None, use_errno=True).setns(fd, 0x40000000) == 0:
                    print("joined the network namespace of", pid)
            except (OSError, ImportError) as exc:
                print("blocked", pid, exc)
        try:
            socket.create_connection(("127.0.0.1", $port), timeout=2)
            pwned("connected to the host's loopback")
        except OSError as exc:
            print("blocked", exc)
    """,
    "connect_to_host_loopback": """
        import socket
        for host in ("127.0.0.1", "::1", "localhost"):
            try:
                socket.create_connection((host, $port), timeout=2)
                pwned("connected to " + host)
            except OSError as exc:
                print("blocked", host, exc)
    """,
    "spawn_a_shell": """
        import subprocess
        for shell in ("sh", "/bin/sh", "/usr/bin/sh", "bash", "/bin/bash", "busybox"):
            try:
                out = subprocess.run([shell, "-c", "echo shell-ran"], capture_output=True, text=True)
                if "shell-ran" in out.stdout:
                    pwned("ran " + shell)
            except OSError as exc:
                print("blocked", shell, exc)
    """,
    "load_ctypes": """
        try:
            import ctypes
            ctypes.CDLL(None).getpid()
            pwned("ctypes loaded")
        except (ImportError, OSError) as exc:
            print("blocked", exc)
    """,
    "mount_a_filesystem": """
        # A directory of its own as the target: were the sandbox to fail open, a mount over a host
        # path (the repository's parent, say) would hide it from everyone on the machine.
        os.mkdir("target")
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.mount(b"none", b"target", b"tmpfs", 0, None) == 0:
                pwned("mounted")
        except ImportError as exc:
            print("blocked", exc)
        if os.path.ismount("target"):
            pwned("mounted")
    """,
    "unshare_inside": """
        attempts = []
        if hasattr(os, "unshare"):
            attempts.append(lambda: os.unshare(os.CLONE_NEWUSER))
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            attempts.append(lambda: libc.unshare(0x10000000) == 0 or (_ for _ in ()).throw(OSError()))
        except ImportError as exc:
            print("blocked", exc)
        for attempt in attempts:
            try:
                attempt()
                pwned("new user namespace")
            except OSError as exc:
                print("blocked", exc)
    """,
    "write_to_dev_shm": """
        try:
            with open("/dev/shm/$marker", "w") as f:
                f.write("x")
            print("wrote the sandbox's own /dev/shm")
        except OSError as exc:
            print("blocked", exc)
    """,
    # -- the limits of the whole sandbox ---------------------------------------------------------
    "setsid_child_outlives_the_tool": """
        import time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                while True:
                    try:
                        open("$sentinel_dir/late.txt", "w").write("still here")
                        pwned("late write")
                    except OSError:
                        pass
                    time.sleep(0.5)
            os._exit(0)
        print("parent exits, the grandchild stays")
    """,
    "fork_128_processes": """
        r, w = os.pipe()
        count = 0
        try:
            for _ in range(128):
                if os.fork() == 0:
                    os.read(r, 1)
                    os._exit(0)
                count += 1
        except OSError as exc:
            print("blocked after", count, exc)
        print("forked", count, flush=True)
        if count >= 128:
            pwned("128 processes")
    """,
    "eight_processes_of_400_mib": """
        r, w = os.pipe()
        hold_r, hold_w = os.pipe()
        for _ in range(8):
            try:
                if os.fork() == 0:
                    block = b"x" * (400 << 20)  # written, so resident
                    os.write(w, b"1")
                    os.read(hold_r, 1)
                    os._exit(0)
            except OSError as exc:
                print("fork blocked", exc)
        import select
        allocated = 0
        while select.select([r], [], [], 3.0)[0]:  # a child the kernel killed never answers
            os.read(r, 1)
            allocated += 1
            if allocated == 8:
                pwned("8 x 400 MiB resident")
                break
        print("allocated", allocated)
    """,
}


@dataclass
class Host:
    secret: str
    sentinel: Path
    victim: subprocess.Popen[bytes]
    port: int
    store: Store
    db: Path
    marker: str

    def ledger(self) -> list[tuple[object, ...]]:
        with self.store.sync_engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text("SELECT * FROM budget_accounts ORDER BY id"))]

    def snapshot(self) -> dict[str, object]:
        directory = self.sentinel.parent
        return {
            "files": sorted((p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in directory.iterdir()),
            "ledger": self.ledger(),
            "db_exists": self.db.exists(),
        }


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Path]]:
    db = tmp_path_factory.mktemp("store") / "quotaflow.db"
    store = Store(f"sqlite:///{db}")
    asyncio.run(store.ensure_schema())
    with store.sync_engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO budget_accounts (scope, resource, limit_amount, reserved, spent) VALUES "
            "('run:attack-test', 'python', 2, 0, 1), ('run:attack-test', 'usd', 0.5, 0, 0.25)"
        ))
    # Held open for the module, as the runtime holds its store: the fd is there to be found.
    held = store.sync_engine.connect()
    yield store, db
    held.close()
    store.sync_engine.dispose()
    asyncio.run(store.engine.dispose())


@pytest.fixture
def host(
    store: tuple[Store, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Host]:
    secret = f"qf-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv(SECRET_NAME, secret)
    outside = tmp_path / "outside"
    outside.mkdir()
    sentinel = outside / "sentinel.txt"
    sentinel.write_text("untouched")
    victim = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield Host(secret, sentinel, victim, server.getsockname()[1], store[0], store[1], f"qf-{uuid.uuid4().hex}")
    server.close()
    assert victim.stdin is not None
    victim.stdin.close()
    victim.wait()


def processes_in_pid_namespace(ns: str) -> list[int]:
    """Host pids of the live processes whose PID namespace is ``ns`` ("pid:[4026...]")."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "pid") == ns and "State:\tZ" not in (entry / "status").read_text():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def attack_code(name: str, host: Host) -> str:
    body = string.Template(textwrap.dedent(ATTACKS[name])).substitute(
        host_pid=os.getpid(),
        victim_pid=host.victim.pid,
        sentinel=host.sentinel,
        sentinel_dir=host.sentinel.parent,
        db=host.db,
        port=host.port,
        secret_name=SECRET_NAME,
        marker=host.marker,
    )
    return PREAMBLE + body


def invoke(code: str) -> ToolResult:
    return asyncio.run(default_registry().invoke("python", {"code": code}))


def assert_blocked_and_host_untouched(result: ToolResult, host: Host, before: dict[str, object]) -> None:
    assert result.metadata.get("error") is None, result.content  # the sandbox ran (bwrap present)
    assert "PWNED" not in result.content, result.content
    assert host.secret not in result.content
    assert host.snapshot() == before
    assert host.victim.poll() is None, "a host process was killed"
    assert not Path("/dev/shm", host.marker).exists()
    assert result.metadata["isolation"] == "bubblewrap" and result.metadata["network"] == "namespace"
    namespace = next(line.split()[1] for line in result.content.splitlines() if line.startswith("NS "))
    assert processes_in_pid_namespace(namespace) == [], "a process of the sandbox outlived the call"


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_is_blocked_and_the_host_untouched(name: str, host: Host) -> None:
    before = host.snapshot()
    result = invoke(attack_code(name, host))
    assert_blocked_and_host_untouched(result, host, before)


def test_fork_bomb_stops_at_the_process_cap(host: Host) -> None:
    result = invoke(attack_code("fork_128_processes", host))
    forked = int(next(line.split()[1] for line in result.content.splitlines() if line.startswith("forked ")))
    assert forked < SandboxLimits().max_processes


@pytest.mark.parametrize("cgroup", [True, False], ids=["cgroup", "no_cgroup"])
def test_memory_of_all_processes_together_is_capped(
    cgroup: bool, host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    if cgroup:
        probe = open_sandbox_cgroup(1 << 20, 1)
        if probe is None:
            pytest.skip("no writable cgroup on this machine; the no_cgroup case covers it")
        probe.remove()
    else:  # the fallback of machines without a writable cgroup: the host's watcher
        monkeypatch.setattr("orchestrator.tools.sandbox.open_sandbox_cgroup", lambda *_: None)
    result = invoke(attack_code("eight_processes_of_400_mib", host))
    expected = ("cgroup-v2", "cgroup-v1") if cgroup else ("rlimit+watch",)
    assert result.metadata["tree_limits"] in expected
    assert result.metadata["killed_by"] == "memory", result.content
    assert result.content.startswith("killed: memory limit 512 MiB for the whole sandbox")
    assert "PWNED" not in result.content


RUNNER = """
import asyncio, sys
from orchestrator.tools import sandbox
from orchestrator.tools.builtins import default_registry

read_init_pid, feed = sandbox._read_init_pid, sandbox._Capture.feed

def announce(fd, deadline):
    pid = read_init_pid(fd, deadline)
    print("init", pid, flush=True)
    return pid

def echo(self, data):
    sys.stdout.write(data.decode(errors="replace"))
    sys.stdout.flush()
    feed(self, data)

sandbox._read_init_pid, sandbox._Capture.feed = announce, echo
asyncio.run(default_registry().invoke("python", {"code": sys.stdin.read()}))
"""


def test_nothing_is_left_behind_when_the_host_is_killed(host: Host) -> None:
    marker = host.marker
    code = f"print('running {marker}', flush=True)\nwhile True:\n    pass\n"
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert runner.stdin is not None and runner.stdout is not None
    runner.stdin.write(code)
    runner.stdin.close()
    init_pid = int(runner.stdout.readline().split()[1])
    init = os.pidfd_open(init_pid)
    assert runner.stdout.readline() == f"running {marker}\n"  # the model's code is running
    runner.kill()
    runner.wait()
    # The sandbox's init dies with its host (--die-with-parent) and takes the namespace with it.
    readable, _, _ = select.select([init], [], [], 10.0)
    os.close(init)
    assert readable, "the sandbox outlived its host"
    leftovers = [
        p for p in Path(tempfile.gettempdir()).glob("quotaflow-*")
        if p.is_dir() and any(marker in f.read_text(errors="replace") for f in p.glob("*.py"))
    ]
    assert leftovers == []
    # A cgroup the killed host left is deleted by the next call.
    after = invoke("print('next call')")
    assert after.content == "exit status: 0\nstdout:\nnext call\n"
    assert not list(Path("/sys/fs/cgroup").glob(f"*/**/quotaflow-sandbox-{runner.pid}-*"))


SECCOMP_PROBE = """
import ctypes, json, os, tempfile
from orchestrator.tools._seccomp import deny_list_filter

prog = deny_list_filter()
libc = ctypes.CDLL(None, use_errno=True)

class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

# A user and mount namespace of its own first: were the filter to let mount through, the
# mount would stay private to this process.
assert libc.unshare(0x10000000 | 0x00020000) == 0
target = tempfile.mkdtemp()
buf = ctypes.create_string_buffer(prog, len(prog))
fprog = SockFprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0  # PR_SET_SECCOMP, filter mode

def errno_of(rc):
    return ctypes.get_errno() if rc == -1 else 0

net = os.open("/proc/self/ns/net", os.O_RDONLY)
results = {
    "unshare": errno_of(libc.unshare(0x10000000)),
    "setns": errno_of(libc.setns(net, 0)),
    "ptrace": errno_of(libc.ptrace(16, os.getppid(), 0, 0)),
    "mount": errno_of(libc.mount(b"none", target.encode(), b"tmpfs", 0, None)),
    "keyctl": errno_of(libc.syscall(250, 0, 0, 0, 0, 0)),
    "clone3": errno_of(libc.syscall(435, 0, 0)),
}
pid = os.fork()  # plain clone still works
if pid == 0:
    os._exit(7)
results["fork"] = os.waitpid(pid, 0)[1] >> 8
os.rmdir(target)
print(json.dumps(results))
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the probe's keyctl number is x86_64's")
def test_seccomp_filter_refuses_escape_calls_and_allows_fork() -> None:
    # The filter loaded into a host process that has ctypes (the sandbox has none).
    out = subprocess.run(
        [sys.executable, "-c", SECCOMP_PROBE], cwd=REPO, capture_output=True, text=True, check=True
    )
    results = json.loads(out.stdout)
    eperm, enosys = 1, 38
    assert results == {
        "unshare": eperm, "setns": eperm, "ptrace": eperm, "mount": eperm, "keyctl": eperm,
        "clone3": enosys, "fork": 7,
    }


def test_sandbox_signals_stay_inside(host: Host) -> None:
    # kill(-1) may reach only the sandbox's own processes, other than itself and bwrap's init
    # (another uid): here there are none, so it finds nothing to signal.
    result = invoke(attack_code("signal_any_host_process", host))
    assert "sandbox pids [1, 2]" in result.content
    assert result.content.rstrip().endswith("ProcessLookupError: [Errno 3] No such process")
    assert host.victim.poll() is None
