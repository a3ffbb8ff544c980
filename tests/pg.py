"""A throwaway PostgreSQL server for the tests: initdb in a temp dir, started on loopback.

Needs the PostgreSQL server binaries (Debian's ``postgresql`` package; ``.ci/run`` installs it).
As root, the cluster is created and run as the ``postgres`` user, since PostgreSQL refuses root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass


def find_bindir() -> str | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return candidate
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    bindir: str
    datadir: str
    port: int
    run_as: str | None

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.run_as, "--", *args] if self.run_as else list(args)

    def url(self, db: str = "quotaflow_test") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_db(self, name: str) -> str:
        subprocess.run(self._cmd(f"{self.bindir}/createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                                 name), check=True, capture_output=True)
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(self._cmd(f"{self.bindir}/pg_ctl", "-D", self.datadir, "-m", "immediate", "stop"),
                       capture_output=True, check=False)
        shutil.rmtree(os.path.dirname(self.datadir), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(tmpdir: str | None = None) -> list[str]:
    """Remove the clusters of test runs that were killed (their server no longer runs): each can
    hold gigabytes. A cluster whose server runs (another test session's) is left alone."""
    removed = []
    for top in glob.glob(os.path.join(tmpdir or tempfile.gettempdir(), "qf-pg-*")):
        try:
            with open(os.path.join(top, "data", "postmaster.pid")) as f:
                pid = int(f.readline().strip() or 0)
        except FileNotFoundError:
            pid = 0
        except (OSError, ValueError):
            continue
        if pid and _alive(pid):
            continue
        if os.stat(top).st_mtime > time.time() - 600 and not pid:
            continue  # just created by another session, its server not started yet
        shutil.rmtree(top, ignore_errors=True)
        removed.append(top)
    return removed


def start() -> PgServer:
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql (see .ci/run)")
    remove_stale()
    run_as = "postgres" if os.geteuid() == 0 else None
    top = tempfile.mkdtemp(prefix="qf-pg-")
    datadir = os.path.join(top, "data")
    if run_as:
        pw = pwd.getpwnam(run_as)
        os.chown(top, pw.pw_uid, pw.pw_gid)
    port = _free_port()
    server = PgServer(bindir, datadir, port, run_as)
    subprocess.run(server._cmd(f"{bindir}/initdb", "-D", datadir, "-U", "postgres", "--auth=trust", "-E", "UTF8"),
                   check=True, capture_output=True)
    # pg_ctl -w waits until the server accepts connections: no polling needed here.
    subprocess.run(
        server._cmd(f"{bindir}/pg_ctl", "-D", datadir, "-w", "-l", os.path.join(datadir, "log"), "-o",
                    f"-p {port} -k {top} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off", "start"),
        check=True, capture_output=True,
    )
    server.create_db("quotaflow_test")
    return server
