"""Loading the local model ahead of the first call (slow: the real SmolLM2-135M weights)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.llm import local
from orchestrator.llm.local import LocalClient, LocalConfig, default_gguf_path
from orchestrator.types import LLMRequest, Message, SamplingOptions
from tests import extras


def _cache_copy(target: Path) -> Path:
    """A cache directory holding the default cache's converted models (links): the same weights
    load without conversion, under a key this process has not loaded yet."""
    LocalClient().load()  # converts once into the default cache if it is not there yet
    target.mkdir()
    default = Path(str(LocalConfig().cache_dir)).expanduser()
    for entry in default.iterdir():
        (target / entry.name).symlink_to(entry)
    return target


@pytest.mark.slow
def test_load_says_what_it_does_once_per_process(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason=extras.LOCAL)
    cache = _cache_copy(tmp_path / "cache")
    phases: list[str] = []
    client = LocalClient(LocalConfig(cache_dir=str(cache)))
    client.load(phases.append)
    assert phases == [f"loading {default_gguf_path().stem} from {cache}"]
    LocalClient(LocalConfig(cache_dir=str(cache))).load(phases.append)
    assert len(phases) == 1  # the process has the model: nothing to do, nothing said


@pytest.mark.slow
def test_a_first_call_that_loads_the_model_reports_generation_time_only(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers", reason=extras.LOCAL)
    cold = LocalClient(LocalConfig(cache_dir=str(_cache_copy(tmp_path / "cache"))))
    build = local._build_model
    built_s: list[float] = []

    def timed_build(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return build(*args, **kwargs)
        finally:
            built_s.append(time.perf_counter() - started)

    monkeypatch.setattr(local, "_build_model", timed_build)
    request = LLMRequest(messages=(Message("user", "Hi"),), sampling=SamplingOptions(max_tokens=1))
    started = time.perf_counter()
    response = asyncio.run(cold.complete(request))  # loads the model, then generates one token
    wall_s = time.perf_counter() - started
    assert len(built_s) == 1 and response.latency_s is not None
    assert response.latency_s + built_s[0] <= wall_s, (response.latency_s, built_s, wall_s)


@pytest.mark.slow
def test_a_copy_of_the_gguf_elsewhere_loads_from_the_same_cache_entry(tmp_path: Path) -> None:
    # Every virtual environment holds its own copy of the package's GGUF: the converted model is
    # found by the file's content, so a second environment does not convert (and store) it again.
    pytest.importorskip("transformers", reason=extras.LOCAL)
    cache = _cache_copy(tmp_path / "cache")
    entries = sorted(p.name for p in cache.iterdir())
    copy = tmp_path / "other-venv" / default_gguf_path().name
    copy.parent.mkdir()
    copy.write_bytes(default_gguf_path().read_bytes())
    phases: list[str] = []
    LocalClient(LocalConfig(gguf_path=str(copy), cache_dir=str(cache))).load(phases.append)
    assert phases == [f"loading {copy.stem} from {cache}"]
    assert sorted(p.name for p in cache.iterdir() if p.name != ".digests") == [e for e in entries if e != ".digests"]


def test_saving_a_converted_model_removes_the_least_recently_loaded_unused_ones(tmp_path: Path) -> None:
    cache = tmp_path / "models"
    now = time.time()

    def entry(name: str, age_s: float, *, model: bool = True) -> Path:
        path = cache / name
        path.mkdir(parents=True)
        if model:
            (path / "config.json").write_text("{}")
        os.utime(path, (now - age_s, now - age_s))
        return path

    current = entry("m-new", 0)
    recent = entry("m-recent", 600)  # loaded 10 minutes ago: in use, kept whatever its rank
    old = [entry(f"m-old{i}", 7200 + i * 60) for i in range(4)]  # unused for 2 hours and more
    half_written = entry(".m-x.abc", 7200, model=False)  # a conversion that died
    writing = entry(".m-y.def", 30, model=False)  # a conversion in progress
    outside = tmp_path / "outside"
    outside.mkdir()
    linked = cache / "m-linked"
    linked.symlink_to(outside, target_is_directory=True)
    os.utime(linked, (now - 9000, now - 9000), follow_symlinks=False)
    memo_dir = cache / ".digests"
    memo_dir.mkdir()
    (memo_dir / "fresh").write_text("0" * 64)
    (memo_dir / "stale").write_text("0" * 64)
    os.utime(memo_dir / "stale", (now - 40 * 86400, now - 40 * 86400))

    local._prune_converted(cache, keep=3, current=current)
    left = {p.name for p in cache.iterdir()}
    # keep=3: the new one, the recent one and the youngest unused one; older unused ones go.
    assert {current.name, recent.name, old[0].name} <= left
    assert not any(p.name in left for p in old[1:])
    assert half_written.name not in left and writing.name in left
    assert linked.name in left and outside.is_dir()  # links are the user's: left alone
    assert {p.name for p in memo_dir.iterdir()} == {"fresh"}


def test_cache_keep_must_be_positive() -> None:
    with pytest.raises(local.ConfigError, match="cache_keep"):
        LocalConfig(cache_keep=0)
