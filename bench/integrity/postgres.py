"""A throwaway PostgreSQL server for the integrity bench where no ``--postgres-url`` is given:
``initdb`` and ``pg_ctl`` of the installed server in a temporary directory, on a free loopback
port. PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


def _bindir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True) or [shutil.which("initdb") or ""]
    if not found[0]:
        raise RuntimeError("no PostgreSQL server binaries (initdb): apt-get install postgresql, "
                           "or pass --postgres-url")
    return os.path.dirname(found[0])


@contextmanager
def temporary_server(*settings: str) -> Iterator[str]:
    """Yields ``postgresql://postgres@127.0.0.1:<port>`` (append ``/<db>``); stops and deletes it after.
    ``settings``: more server settings, e.g. ``"synchronous_commit=off"``."""
    bindir = _bindir()
    top = tempfile.mkdtemp(prefix="qf-bench-pg-")
    owner = "postgres" if os.geteuid() == 0 else None
    if owner:
        os.chown(top, pwd.getpwnam(owner).pw_uid, pwd.getpwnam(owner).pw_gid)
    as_owner = ["runuser", "-u", owner, "--"] if owner else []
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = os.path.join(top, "data")
    try:
        subprocess.run([*as_owner, f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust"],
                       check=True, capture_output=True)
        subprocess.run([*as_owner, f"{bindir}/pg_ctl", "-D", data, "-w", "-l", os.path.join(top, "log"), "-o",
                        f"-p {port} -k {top} -c listen_addresses=127.0.0.1 -c max_connections=300"
                        + "".join(f" -c {s}" for s in settings), "start"],
                       check=True, capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_owner, f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "stop"], check=False,
                       capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    """An empty database ``name`` on ``server_url``'s server; returns its URL."""
    import psycopg

    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"
