"""The python sandbox: each limit, the scrubbed environment, the temporary directory, the network."""

from __future__ import annotations

import asyncio
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.tools.registry import ToolRegistry
from orchestrator.tools.sandbox import SandboxLimits, python_tool, run_python

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


def test_wall_clock_limit_kills_the_whole_process_group() -> None:
    code = textwrap.dedent("""
        import subprocess, sys, time
        child = subprocess.Popen(["sleep", "60"])
        print(child.pid, flush=True)
        time.sleep(60)
    """)
    result = run_python(code, SandboxLimits(cpu_s=5, wall_s=1.0))
    assert result.killed_by == "wall"
    assert result.limit_message == "killed: wall-clock limit 1s"
    assert 1.0 <= result.duration_s < 5.0
    grandchild = int(result.stdout.split()[0])
    status = Path(f"/proc/{grandchild}/status")
    # Killed: gone, or a zombie waiting for an init that does not reap.
    assert not status.exists() or "State:\tZ" in status.read_text()


def test_environment_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUOTAFLOW_TEST_SECRET", "hunter2")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    result = run_python("import os\nprint(sorted(os.environ))\nprint(dict(os.environ))", FAST)
    assert result.ok
    assert result.stdout.splitlines()[0] == "['HOME', 'LANG', 'PATH', 'TMPDIR']"
    assert "hunter2" not in result.stdout and "/somewhere/else" not in result.stdout


def test_temporary_directory_is_the_cwd_and_is_removed() -> None:
    code = "import os\nopen('scratch.txt', 'w').write('x')\nprint(os.getcwd())\nprint(os.environ['HOME'])"
    result = run_python(code, FAST)
    assert result.ok
    cwd, home = result.stdout.split()
    assert cwd == home and Path(cwd).name.startswith("quotaflow-sandbox-")
    assert not Path(cwd).exists()
    killed = run_python("import os\nprint(os.getcwd(), flush=True)\nwhile True: pass", FAST)
    assert killed.killed_by == "cpu" and not Path(killed.stdout.strip()).exists()


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


def test_network_is_cut_off_when_namespaces_are_available(listener: int) -> None:
    allowed = run_python(CONNECT.format(port=listener), SandboxLimits(network="allow"))
    assert allowed.network == "none" and allowed.stdout == "connected\n"  # the probe can connect
    isolated = run_python(CONNECT.format(port=listener), SandboxLimits())
    if isolated.network != "namespace":
        pytest.skip("network namespaces not permitted here (unshare failed); socket guard applied")
    assert isolated.stdout == "" and "Network is unreachable" in isolated.stderr


def test_socket_guard_fallback_refuses_sockets(listener: int) -> None:
    result = run_python(CONNECT.format(port=listener), SandboxLimits(network="guard"))
    assert result.network == "socket-guard"
    assert result.stdout == "" and "network access is disabled" in result.stderr


def test_output_is_truncated_with_a_note() -> None:
    result = run_python("print('y' * 100_000)", SandboxLimits(max_output_chars=1_000))
    assert result.ok and result.stdout_truncated
    assert result.stdout.startswith("y" * 1_000 + "\n[output truncated: 100001 bytes in total]")


def test_python_tool_through_the_registry() -> None:
    reg = ToolRegistry([python_tool(FAST)])
    ok = asyncio.run(reg.invoke("python", "print(6 * 7)"))
    assert not ok.is_error and ok.content == "exit status: 0\nstdout:\n42\n"
    assert ok.metadata["network"] in ("namespace", "socket-guard")
    assert reg.units_for("python", {"code": "print(1)"}) == 1
    busy = asyncio.run(reg.invoke("python", {"code": "while True: pass"}))
    assert busy.is_error and busy.content.startswith("killed: CPU time limit 1s")
    assert busy.metadata["killed_by"] == "cpu"


def test_humaneval_style_scoring() -> None:
    solution = "def add(a, b):\n    return a + b\n"
    tests = "\ndef check(f):\n    assert f(2, 3) == 5\ncheck(add)\n"
    assert run_python(solution + tests, FAST).ok
    wrong = run_python(solution.replace("a + b", "a - b") + tests, FAST)
    assert not wrong.ok and "AssertionError" in wrong.stderr
