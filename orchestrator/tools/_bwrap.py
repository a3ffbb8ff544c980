"""The bubblewrap command line of the python sandbox: namespaces, the runtime view, the uid maps.

The sandbox sees a root of its own (read-only) holding only
- the Python executable and its ``lib`` directory (standard library, extension modules), and with
  ``import_site`` the virtual environment's ``pyvenv.cfg`` and ``site-packages``;
- the shared libraries (``/usr/lib``, ``/lib*``), never ``/usr/bin``: there is no shell;
- a fresh ``/proc`` of its own PID namespace, a minimal ``/dev``;
- ``/sandbox``: a private tmpfs of bounded size, the working directory (``/tmp`` points there).

The ``_ctypes`` extension is replaced by an empty file: ctypes is the one standard-library route
to raw libc calls, which no legitimate use of this tool needs.

User IDs. Run by an ordinary user, bubblewrap maps sandbox uid/gid 65534 to that user. Run by
root, it could only map 65534 to root, so the parent writes the maps itself (``0 0 1`` and
``65534 65534 1``, which only root may write) and the bootstrap, before any user code, switches to
65534: the code then runs as the host's ``nobody``, not the caller, and its capabilities are gone
(the bootstrap checks). bubblewrap sets up the mounts while still root in the namespace, so the
runtime may live under a directory ``nobody`` cannot enter (``/root/.pyenv``).
"""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ConfigError

__all__ = ["SANDBOX_GID", "SANDBOX_UID", "WORKDIR", "BwrapPlan", "find_bwrap", "plan"]

SANDBOX_UID = 65534
SANDBOX_GID = 65534
WORKDIR = "/sandbox"
"""The working directory: a top-level name no host path is likely to share (runtime binds under
it would be hidden by the tmpfs; :func:`plan` refuses them)."""

_SHARED_LIBRARY_DIRS = ("/usr/lib", "/usr/lib64", "/usr/lib32", "/lib", "/lib64", "/lib32")

SANDBOX_ENV = {
    "LANG": "C.UTF-8",
    "HOME": WORKDIR,
    "TMPDIR": WORKDIR,
    "PATH": "/nonexistent",
    # Native libraries size their thread pools by the CPU count; each thread counts as a process.
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
"""The sandbox's whole environment (the host's is never passed on)."""


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


@dataclass(frozen=True)
class BwrapPlan:
    """A bubblewrap invocation: ``argv`` (the python command line appended by the caller)."""

    argv: list[str]
    python: str
    """The interpreter path inside the sandbox."""
    root_maps: bool
    """The parent must write the uid/gid maps (run as root; see the module docstring)."""


def _runtime_binds(import_site: bool) -> tuple[str, list[tuple[str, str]]]:
    """(interpreter path to run, [(host source, sandbox destination)] read-only binds)."""
    executable = os.path.realpath(sys.executable)
    binds = [(executable, executable)]
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    binds.append((str(stdlib.parent), str(stdlib.parent)))  # lib/: stdlib and libpython
    python = executable
    if import_site:
        if sys.prefix != sys.base_prefix:
            # The venv's own path is what makes Python find pyvenv.cfg.
            python = os.path.join(sys.prefix, "bin", os.path.basename(sys.executable))
            binds.append((executable, python))
            binds.append((os.path.join(sys.prefix, "pyvenv.cfg"),) * 2)
        purelib = sysconfig.get_paths()["purelib"]
        binds.append((purelib, purelib))
    return python, binds


def plan(
    *,
    import_site: bool,
    network: bool,
    workdir_bytes: int,
    code_fd: int,
    seccomp_fd: int | None,
    block_fd: int,
    info_fd: int,
) -> BwrapPlan:
    """The bubblewrap arguments for one call (its file descriptors must be passed to the child)."""
    bwrap = find_bwrap()
    assert bwrap is not None
    root_maps = os.geteuid() == 0
    python, binds = _runtime_binds(import_site)
    hidden = [dest for _, dest in binds if Path(dest).is_relative_to(WORKDIR)]
    if hidden:
        raise ConfigError(
            f"the Python runtime lives under {WORKDIR}, the sandbox's work directory: {hidden[0]}"
        )
    argv = [bwrap, "--unshare-all", "--unshare-user"]
    if network:
        argv.append("--share-net")
    argv += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    if root_maps:
        # Kept in the namespace only for the bootstrap's switch to 65534 (which clears them).
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        argv += ["--userns-block-fd", str(block_fd)]
    else:
        argv += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID), "--disable-userns"]
        argv += ["--block-fd", str(block_fd)]
    argv += ["--info-fd", str(info_fd), "--hostname", "sandbox"]
    # bwrap gives the directories it creates on the way to a bind the host's modes: /root would be
    # 0700 and the runtime under it unreachable for uid 65534.
    dests = [dest for _, dest in binds] + [p for p in _SHARED_LIBRARY_DIRS if os.path.isdir(p)]
    ancestors = sorted({str(a) for d in dests for a in Path(d).parents if str(a) != "/"})
    for ancestor in ancestors:
        argv += ["--perms", "0755", "--dir", ancestor]
    for path in _SHARED_LIBRARY_DIRS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for source, dest in binds:
        argv += ["--ro-bind", source, dest]
    ctypes_spec = importlib.machinery.PathFinder.find_spec("_ctypes")
    if ctypes_spec is not None and ctypes_spec.origin:
        argv += ["--ro-bind", "/dev/null", os.path.realpath(ctypes_spec.origin)]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--size", str(workdir_bytes), "--perms", "01777", "--tmpfs", "/dev/shm"]
    argv += ["--size", str(workdir_bytes), "--perms", "01777", "--tmpfs", WORKDIR]
    if not any(Path(d).is_relative_to("/tmp") for d in dests):
        # /tmp is the work dir too; where the runtime itself lives under /tmp (a checkout there),
        # /tmp holds the read-only runtime instead and TMPDIR still points into the work dir.
        argv += ["--symlink", WORKDIR, "/tmp"]
    argv += ["--perms", "0444", "--file", str(code_fd), f"{WORKDIR}/main.py"]
    argv += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", WORKDIR, "--clearenv"]
    for key, value in SANDBOX_ENV.items():
        argv += ["--setenv", key, value]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    argv.append("--")
    return BwrapPlan(argv=argv, python=python, root_maps=root_maps)


def write_root_maps(child_pid: int) -> None:
    """Map 0 and 65534 onto themselves in the sandbox's user namespace (root callers only)."""
    mapping = f"0 0 1\n{SANDBOX_UID} {SANDBOX_UID} 1\n"
    Path(f"/proc/{child_pid}/uid_map").write_text(mapping)
    gid_mapping = f"0 0 1\n{SANDBOX_GID} {SANDBOX_GID} 1\n"
    Path(f"/proc/{child_pid}/gid_map").write_text(gid_mapping)
