"""Provenance of data files and checkpoints: a versioned manifest JSON beside them."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["MANIFEST_VERSION", "file_sha256", "git_commit", "read_manifest", "write_atomic", "write_manifest"]

MANIFEST_VERSION = 1


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git_commit(repo_dir: str | Path | None = None) -> str:
    """The checkout's HEAD commit (see :func:`orchestrator.provenance.source_commit`)."""
    from orchestrator.provenance import source_commit

    return source_commit(repo_dir)


def write_atomic(path: str | Path, content: str | Callable[[BinaryIO], object]) -> None:
    """Write ``content`` (text, or a function that writes to the open binary file) to a temporary
    file beside ``path`` (``.NAME.<random>``), fsync it, and rename it over ``path``: readers (and
    a job resumed after a kill) see the old file or the new one, never half of one."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    try:
        with tmp.open("wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _describe(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        path = Path(p)
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
        for f in files:
            out.append({"path": str(f), "sha256": file_sha256(f), "bytes": f.stat().st_size})
    return out


def write_manifest(
    path: str | Path,
    *,
    kind: str,
    sources: Iterable[str | Path],
    outputs: Iterable[str | Path],
    model: str,
    params: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``path`` (JSON): what was made (outputs + sha256) from what (sources + sha256), by which
    model and code commit, when, on which machine, with which parameters."""
    target = Path(path)
    manifest = {
        "v": MANIFEST_VERSION,
        "kind": kind,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": platform.node(),
        "model": model,
        "params": params,
        "sources": _describe(sources),
        "outputs": _describe(o for o in outputs if Path(o).resolve() != target.resolve()),
        **(extra or {}),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return target


def read_manifest(path: str | Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if data.get("v") != MANIFEST_VERSION:
        raise ValueError(f"{path}: manifest version {data.get('v')!r}, expected {MANIFEST_VERSION}")
    return data
