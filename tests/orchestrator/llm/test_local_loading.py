"""Loading the local model ahead of the first call (slow: the real SmolLM2-135M weights)."""

from __future__ import annotations

import asyncio
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

    def timed_build(*args: Any) -> Any:
        started = time.perf_counter()
        try:
            return build(*args)
        finally:
            built_s.append(time.perf_counter() - started)

    monkeypatch.setattr(local, "_build_model", timed_build)
    request = LLMRequest(messages=(Message("user", "Hi"),), sampling=SamplingOptions(max_tokens=1))
    started = time.perf_counter()
    response = asyncio.run(cold.complete(request))  # loads the model, then generates one token
    wall_s = time.perf_counter() - started
    assert len(built_s) == 1 and response.latency_s is not None
    assert response.latency_s + built_s[0] <= wall_s, (response.latency_s, built_s, wall_s)
