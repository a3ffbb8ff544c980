"""The python sandbox's legitimate uses and limits: each limit, the environment, the work directory,
the network, stdin, the missing-bubblewrap error, the unsafe opt-out. Attacks: test_sandbox_attacks."""

from __future__ import annotations

import asyncio
import os
import select
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import ToolError
from orchestrator.tools._bwrap import SANDBOX_ENV
from orchestrator.tools.registry import ToolRegistry
from orchestrator.tools.sandbox import INSTALL_HINT, SandboxLimits, python_tool, run_python
from tests.orchestrator.tools.test_sandbox_attacks import processes_in_pid_namespace

FAST = SandboxLimits(cpu_s=1, memory_mb=128, file_size_mb=1, wall_s=8.0)


def test_runs_code_with_the_standard_library() -> None:
    result = run_python(
        "import json, sqlite3, math\nprint(json.dumps({'x': math.factorial(5)}))", FAST
    )
    assert result.ok, result.stderr
    assert result.stdout == '{"x": 120}\n'
    assert result.killed_by is None and result.limit_message is None


def test_exit_status_and_exceptions_are_reported() -> None:
    exited = run_python("import sys\nprint('bye')\nsys.exit(3)", FAST)
    assert exited.exit_code == 3 and not exited.ok and exited.killed_by is None
    raised = run_python("def f():\n    raise ValueError('bad value')\nf()", FAST)
    assert raised.exit_code == 1 and "ValueError: bad value" in raised.stderr
    assert 'File "main.py", line 2, in f' in raised.stderr


def test_cpu_time_limit_kills_a_busy_loop() -> None:
    result = run_python("while True:\n    pass", FAST)
    assert result.killed_by == "cpu"
    assert result.limit_message == "killed: CPU time limit 1s"
    assert result.duration_s < FAST.wall_s  # the CPU limit, not the wall clock, ended it


def test_memory_limit_stops_a_large_allocation_but_allows_a_small_one() -> None:
    small = run_python("x = bytearray(16 * 1024 * 1024)\nprint(len(x))", FAST)
    assert small.ok and small.stdout.strip() == str(16 * 1024 * 1024)
    big = run_python("x = bytearray(512 * 1024 * 1024)\nprint('allocated')", FAST)
    assert big.killed_by == "memory"
    assert big.limit_message == "stopped: memory limit 128 MiB (MemoryError)"
    assert "allocated" not in big.stdout and "MemoryError" in big.stderr


def test_file_size_limit_kills_an_oversized_write() -> None:
    small = run_python("open('f', 'wb').write(b'x' * 512 * 1024)\nprint('ok')", FAST)
    assert small.ok and small.stdout == "ok\n"
    big = run_python("open('f', 'wb').write(b'x' * 2 * 1024 * 1024)\nprint('written')", FAST)
    assert big.killed_by == "file_size"
    assert big.limit_message == "killed: file size limit 1 MiB"
    assert "written" not in big.stdout


def test_wall_clock_limit_kills_the_whole_sandbox() -> None:
    code = textwrap.dedent("""
        import os, time
        print(os.readlink("/proc/self/ns/pid"), flush=True)
        if os.fork() == 0:
            os.setsid()
            time.sleep(60)
        time.sleep(60)
    """)
    result = run_python(code, SandboxLimits(cpu_s=5, wall_s=1.0))
    assert result.killed_by == "wall"
    assert result.limit_message == "killed: wall-clock limit 1s"
    assert 1.0 <= result.duration_s < 5.0
    namespace = result.stdout.split()[0]
    assert namespace.startswith("pid:[")
    assert processes_in_pid_namespace(namespace) == []


def test_environment_is_the_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUOTAFLOW_TEST_SECRET", "hunter2")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    result = run_python("import os\nprint(sorted(os.environ))\nprint(dict(os.environ))", FAST)
    assert result.ok, result.stderr
    assert result.stdout.splitlines()[0] == str(sorted([*SANDBOX_ENV, "PWD"]))
    assert "hunter2" not in result.stdout and "/somewhere/else" not in result.stdout


def test_work_directory_is_a_private_tmpfs_that_does_not_outlive_the_call() -> None:
    code = (
        "import os\nopen('scratch.txt', 'w').write('x')\n"
        "print(os.getcwd(), os.environ['HOME'], sorted(os.listdir('.')))"
    )
    result = run_python(code, FAST)
    assert result.ok, result.stderr
    assert result.stdout.split() == ["/sandbox", "/sandbox", "['main.py',", "'scratch.txt']"]
    again = run_python("import os\nprint(sorted(os.listdir('.')))", FAST)
    assert again.stdout == "['main.py']\n"


def test_code_reads_its_stdin() -> None:
    result = run_python("import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))", FAST, stdin="1 2 39")
    assert result.ok and result.stdout == "42\n"


def test_runs_as_an_unprivileged_user_in_its_own_namespaces() -> None:
    code = "import os\nprint(os.getuid(), os.getgid(), os.getpid())"
    result = run_python(code, FAST)
    assert result.ok and result.stdout.split() == ["65534", "65534", "2"]  # 1 is bwrap's init
    assert result.isolation == "bubblewrap" and result.network == "namespace"
    assert result.tree_limits in ("cgroup-v2", "cgroup-v1", "rlimit+watch")


def test_process_limit_stops_a_fork_loop_with_a_clear_message() -> None:
    code = "import os\nwhile True:\n    if os.fork() == 0:\n        os.read(0, 1)\n        os._exit(0)"
    result = run_python(code, SandboxLimits(max_processes=4, wall_s=8.0))
    assert result.killed_by == "processes"
    assert result.limit_message == "stopped: process limit 4 (threads included)"
    assert "BlockingIOError" in result.stderr


def test_missing_bubblewrap_refuses_with_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolError, match="apt-get install bubblewrap"):
        run_python("print(1)", FAST)
    result = asyncio.run(ToolRegistry([python_tool(FAST)]).invoke("python", "print(1)"))
    assert result.is_error and result.content == f"Error: {INSTALL_HINT}"
    assert "\n" not in result.content


def test_unsafe_opt_out_runs_unsandboxed_as_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no bwrap needed
    result = run_python("import os\nprint(os.getuid())", FAST, unsafe_unsandboxed_for_trusted_code=True)
    assert result.ok and result.stdout == f"{os.getuid()}\n"
    assert result.isolation == "none" and result.tree_limits == "none"
    tool = python_tool(FAST, unsafe_unsandboxed_for_trusted_code=True)
    assert tool.spec.limits["sandbox"] == "none (UNSAFE: trusted code only)"


def test_declared_limits_are_part_of_the_tool_spec() -> None:
    spec = python_tool(FAST).spec
    assert spec.limits == {
        "cpu_s": 1, "memory_mb": 128, "max_processes": 16, "file_size_mb": 1, "workdir_mb": 64,
        "wall_s": 8.0, "max_output_chars": 10_000, "network": "isolate", "import_site": False,
        "sandbox": "bubblewrap",
    }


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


CONNECT = (
    "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
)


def test_network_is_cut_off_unless_allowed(listener: int) -> None:
    allowed = run_python(CONNECT.format(port=listener), SandboxLimits(network="allow"))
    assert allowed.stdout == "connected\n", allowed.stderr  # the probe can connect
    isolated = run_python(CONNECT.format(port=listener), SandboxLimits())
    assert isolated.network == "namespace"
    # The namespace has only its own loopback: nothing listens there.
    assert isolated.stdout == "" and "ConnectionRefusedError" in isolated.stderr


def test_output_is_truncated_with_a_note() -> None:
    result = run_python("print('y' * 100_000)", SandboxLimits(max_output_chars=1_000))
    assert result.ok and result.stdout_truncated
    assert result.stdout.startswith("y" * 1_000 + "\n[output truncated: 100001 bytes in total]")


def test_python_tool_through_the_registry() -> None:
    reg = ToolRegistry([python_tool(FAST)])
    ok = asyncio.run(reg.invoke("python", "print(6 * 7)"))
    assert not ok.is_error and ok.content == "exit status: 0\nstdout:\n42\n"
    assert ok.metadata["network"] == "namespace" and ok.metadata["isolation"] == "bubblewrap"
    assert reg.units_for("python", {"code": "print(1)"}) == 1
    busy = asyncio.run(reg.invoke("python", {"code": "while True: pass"}))
    assert busy.is_error and busy.content.startswith("killed: CPU time limit 1s")
    assert busy.metadata["killed_by"] == "cpu"


def test_programs_run_while_the_event_loops_threads_are_all_busy() -> None:
    """Programs wait in the sandbox's own threads: a neighbour holding every thread of the loop's
    default executor (a model generating on the CPU did) no longer times them out."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    reg, release = ToolRegistry([python_tool(FAST)]), threading.Event()

    async def scenario() -> list[str]:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=2))
        busy = [asyncio.create_task(asyncio.to_thread(release.wait)) for _ in range(2)]
        try:
            runs = await asyncio.gather(*(reg.invoke("python", f"print({i} * 7)") for i in range(4)))
            assert not any(b.done() for b in busy)
        finally:
            release.set()
        await asyncio.gather(*busy)
        return [r.content for r in runs]

    assert asyncio.run(scenario()) == [f"exit status: 0\nstdout:\n{i * 7}\n" for i in range(4)]


def test_humaneval_style_scoring() -> None:
    solution = "def add(a, b):\n    return a + b\n"
    tests = "\ndef check(f):\n    assert f(2, 3) == 5\ncheck(add)\n"
    assert run_python(solution + tests, FAST).ok
    wrong = run_python(solution.replace("a + b", "a - b") + tests, FAST)
    assert not wrong.ok and "AssertionError" in wrong.stderr


def test_run_report_shows_the_python_tool_declared_limits(tmp_path: Path) -> None:
    from orchestrator.reports import run_report
    from orchestrator.runtime import Runtime
    from orchestrator.settings import Settings
    from orchestrator.testing import ScriptedClient, ScriptedConfig

    def rule(messages: list) -> str:  # type: ignore[type-arg]
        # Observations of this task only: the prompt may open with a worked example.
        start = max(i for i, m in enumerate(messages) if m.role == "user" and "Question:" in m.content)
        return "answer: 42" if any(m.role == "tool" for m in messages[start:]) else "python: print(6 * 7)"

    async def go() -> dict:  # type: ignore[type-arg]
        rt = Runtime(
            Settings(db_url=f"sqlite:///{tmp_path / 'store.db'}"),
            tools=ToolRegistry([python_tool(FAST)]),
            clients={"fake": ScriptedClient(ScriptedConfig(responses=rule))},
        )
        res = await rt.run("react", {"question": "six times seven?"}, backend="fake", tools=["python"])
        report = await run_report(rt, res.run_id)
        await rt.aclose()
        return report

    report = asyncio.run(go())
    (row,) = report["tools"]
    assert row["tool"] == "python" and row["calls"] == 1 and row["errors"] == 0
    assert row["limits"] == python_tool(FAST).spec.limits
    assert row["limits"]["memory_mb"] == 128 and row["limits"]["sandbox"] == "bubblewrap"


def test_import_site_mounts_the_installed_packages_read_only_but_not_the_project() -> None:
    code = textwrap.dedent("""
        import jsonschema, sys
        print(jsonschema.__name__)
        try:
            import orchestrator
            print("project importable")
        except ImportError:
            print("no project")
        try:
            open(jsonschema.__file__, "a")
        except OSError:
            print("read-only")
    """)
    result = run_python(code, SandboxLimits(import_site=True, wall_s=8.0))
    assert result.ok, result.stderr
    assert result.stdout.split() == ["jsonschema", "no", "project", "read-only"]


def test_process_cap_holds_without_a_cgroup(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fallback: RLIMIT_NPROC counts the sandbox's uid in its own user namespace only.
    monkeypatch.setattr("orchestrator.tools.sandbox.open_sandbox_cgroup", lambda *_: None)
    code = "import os\nwhile True:\n    if os.fork() == 0:\n        os.read(0, 1)\n        os._exit(0)"
    result = run_python(code, SandboxLimits(max_processes=6, wall_s=8.0))
    assert result.tree_limits == "rlimit+watch"
    assert result.killed_by == "processes", result.stderr


NOBODY_PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
from orchestrator.tools.sandbox import SandboxLimits, run_python
uid = run_python("import os\\nprint(os.getuid(), os.getgid())")
fork = run_python(
    "import os\\nwhile True:\\n    if os.fork() == 0:\\n        os.read(0, 1)\\n        os._exit(0)",
    SandboxLimits(max_processes=6),
)
print(uid.stdout.strip(), uid.isolation, fork.killed_by, fork.tree_limits)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="not root: every other test runs bwrap's own uid map")
def test_an_ordinary_user_gets_bwraps_own_uid_map_and_the_same_limits() -> None:
    # Run as root, the tests take the root-maps route; here an ordinary user (nobody) calls the
    # sandbox, with the system's Python (this venv's may live where nobody cannot read).
    import shutil
    import subprocess

    python, setpriv = shutil.which("python3", path="/usr/bin:/bin"), shutil.which("setpriv")
    if python is None or setpriv is None:
        pytest.fail("this test needs /usr/bin/python3 and setpriv (util-linux) to run as nobody")
    repo = str(Path(__file__).resolve().parents[3])
    out = subprocess.run(
        [setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups",
         python, "-c", NOBODY_PROBE, repo],
        capture_output=True, text=True, check=True, cwd="/",
    )
    assert out.stdout.split() == ["65534", "65534", "bubblewrap", "processes", "rlimit+watch"]


def test_an_error_mid_call_leaves_no_sandbox_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.tools import sandbox

    inits: list[int] = []
    read_init_pid = sandbox._read_init_pid

    def record(fd: int, deadline: float) -> int | None:
        pid = read_init_pid(fd, deadline)
        if pid is not None:
            inits.append(os.pidfd_open(pid))
        return pid

    def fail(*_: object) -> None:
        raise RuntimeError("reading the output failed")

    monkeypatch.setattr(sandbox, "_read_init_pid", record)
    monkeypatch.setattr(sandbox, "_pump", fail)
    with pytest.raises(RuntimeError, match="reading the output failed"):
        run_python("while True:\n    pass", FAST)
    (init,) = inits
    assert select.select([init], [], [], 0)[0], "the sandbox's init is still alive"
    os.close(init)


def test_denied_namespaces_refuse_with_one_line_saying_what_to_fix() -> None:
    # This test's process is put where user namespaces are denied (bwrap's --disable-userns).
    import shutil
    import subprocess
    import sys

    probe = (
        "import asyncio\n"
        "from orchestrator.tools.builtins import default_registry\n"
        "print(asyncio.run(default_registry().invoke('python', 'print(1)')).content)\n"
    )
    bwrap = shutil.which("bwrap")
    assert bwrap is not None, INSTALL_HINT
    out = subprocess.run(
        [bwrap, "--unshare-user", "--disable-userns", "--dev-bind", "/", "/", "--proc", "/proc",
         sys.executable, "-c", probe],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[3],
    )
    (line,) = out.stdout.splitlines()
    assert line.startswith("Error: the python sandbox could not start (bwrap: ")
    assert "user namespaces" in line and "rather than run model code unsandboxed" in line
