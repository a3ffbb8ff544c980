"""Fetch vLLM 0.26.0's own scheduler tests from its source release on PyPI (for the CPU lane).

    python scripts/fetch_vllm_tests.py DEST

Downloads ``vllm-0.26.0.tar.gz`` from PyPI's simple index, checks its sha256 against the one the
index publishes, and unpacks only the test modules that build a scheduler (and their helpers)
into ``DEST/tests`` (with vLLM's LICENSE). ``tests/serving_patch/test_vllm_upstream.py`` runs
them with QuotaFlow's runner configuration. Nothing of vLLM is kept in this repository.
Idempotent: an existing complete ``DEST`` is left as it is.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

VERSION = "0.26.0"
INDEX = "https://pypi.org/simple/vllm/"
MEMBERS = (
    "tests/__init__.py",
    "tests/v1/__init__.py",
    "tests/v1/core/__init__.py",
    "tests/v1/core/test_async_scheduler.py",
    "tests/v1/core/test_deferred_block_free.py",
    "tests/v1/core/test_priority_scheduler_random.py",
    "tests/v1/core/test_scheduler.py",
    "tests/v1/core/test_swa_inflight_window_free.py",
    "tests/v1/core/test_worker_slot_overflow.py",
    "tests/v1/core/utils.py",
    "tests/v1/kv_connector/__init__.py",
    "tests/v1/kv_connector/unit/__init__.py",
    "tests/v1/kv_connector/unit/utils.py",
    "tests/v1/kv_connector/unit/offloading_connector/__init__.py",
    "tests/v1/kv_connector/unit/offloading_connector/conftest.py",
    "tests/v1/kv_connector/unit/offloading_connector/test_scheduler.py",
    "tests/v1/kv_connector/unit/offloading_connector/utils.py",
    "LICENSE",
)
STAMP = ".complete"


def sdist_url() -> tuple[str, str]:
    """(URL, sha256) of the release's source archive, from the simple index."""
    with urllib.request.urlopen(INDEX, timeout=120) as response:
        page = response.read().decode()
    for href in re.findall(r'href="([^"]+)"', page):
        url, _, digest = href.partition("#sha256=")
        if url.split("/")[-1] == f"vllm-{VERSION}.tar.gz" and digest:
            return url, digest
    raise SystemExit(f"vllm-{VERSION}.tar.gz not found on {INDEX}")


MEMBER_LIST = "\n".join(MEMBERS) + "\n"
"""What the stamp records after the archive's URL: a new member list fetches again."""


def fetch(dest: Path) -> None:
    stamp = dest / STAMP
    if stamp.exists() and stamp.read_text().partition("\n")[2] == MEMBER_LIST:
        return
    url, digest = sdist_url()
    with urllib.request.urlopen(url, timeout=600) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != digest:
        raise SystemExit(f"{url}: sha256 does not match the index's")
    shutil.rmtree(dest, ignore_errors=True)
    prefix = f"vllm-{VERSION}/"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in MEMBERS:
            source = archive.extractfile(prefix + member)
            if source is None:
                raise SystemExit(f"{member} missing from the sdist")
            target = dest / member
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())
    stamp.write_text(url + "\n" + MEMBER_LIST)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    fetch(Path(sys.argv[1]))
