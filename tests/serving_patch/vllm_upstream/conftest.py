"""Runs vLLM 0.26.0's own scheduler tests (vendored under ``tests/``) offline on CPU.

Driven by ``tests/serving_patch/test_vllm_upstream.py``, which runs this directory twice in a
subprocess; it can also be run by hand from this directory::

    QUOTAFLOW_UPSTREAM_SCHEDULER=plugin PYTHONPATH=../.. ../bin/python -m pytest -q tests   (in .venv/vllm-upstream)

Environment:

- ``QUOTAFLOW_UPSTREAM_SCHEDULER``: ``stock`` (default) or ``plugin``. With ``plugin``, every
  test module's ``Scheduler``/``AsyncScheduler`` name (what ``create_scheduler`` and the tests
  construct) is replaced by ``ContinuumScheduler``/``ContinuumAsyncScheduler``.
- ``QUOTAFLOW_UPSTREAM_REPORT``: a path; each test's outcome (and skip reason) is written there
  as JSON, with the number of plugin schedulers it built (and their total).

The CPU offloading connector's tests (``tests/v1/kv_connector/unit/offloading_connector``) build
their config with the hybrid KV cache manager on; for them the CPU is declared capable of it.

Set-up, as the upstream tests expect it from their CI: ``facebook/opt-125m`` resolves from an
offline Hugging Face cache holding only its ``config.json`` (written here), and the device is
the CPU. The multimodal tests are skipped, with the reason, at the model config they build.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

SCHEDULER_ENV = "QUOTAFLOW_UPSTREAM_SCHEDULER"
REPORT_ENV = "QUOTAFLOW_UPSTREAM_REPORT"

OPT_125M_CONFIG = {
    "_name_or_path": "facebook/opt-125m",
    "activation_dropout": 0.0,
    "activation_function": "relu",
    "architectures": ["OPTForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 2,
    "do_layer_norm_before": True,
    "dropout": 0.1,
    "eos_token_id": 2,
    "ffn_dim": 3072,
    "hidden_size": 768,
    "init_std": 0.02,
    "layerdrop": 0.0,
    "max_position_embeddings": 2048,
    "model_type": "opt",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "prefix": "</s>",
    "torch_dtype": "float16",
    "transformers_version": "4.21.0.dev0",
    "use_cache": True,
    "vocab_size": 50272,
    "word_embed_proj_dim": 768,
}
"""``facebook/opt-125m``'s config.json (the scheduler tests need its architecture and sizes)."""

MULTIMODAL_SKIP_REASON = (
    "multimodal model {model}: vLLM 0.26 inspects its model class, which imports torchvision "
    "(not in the CPU test lane), and its config is not in the offline cache"
)
MULTIMODAL_MODELS = frozenset({"llava-hf/llava-1.5-7b-hf", "Qwen/Qwen2.5-VL-3B-Instruct"})
"""Models of the upstream tests that cannot be built offline here."""


def _write_offline_hf_home(root: Path) -> None:
    revision = "0" * 40
    repo = root / "hub" / "models--facebook--opt-125m"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(OPT_125M_CONFIG))


# Hugging Face reads HF_HOME when first imported: set it before anything imports vLLM.
_HF_HOME = Path(tempfile.mkdtemp(prefix="vllm-upstream-hf-"))
_write_offline_hf_home(_HF_HOME)
os.environ["HF_HOME"] = str(_HF_HOME)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

_outcomes: dict[str, dict[str, str]] = {}
_num_plugin_schedulers = 0


def pytest_configure(config: pytest.Config) -> None:
    from vllm.platforms import current_platform

    # A CUDA build of vLLM on a machine without a GPU detects no platform; the tests build
    # VllmConfig without a device, so name the CPU as vLLM's CPU build would.
    if not current_platform.device_type:
        current_platform.device_type = "cpu"


def pytest_unconfigure(config: pytest.Config) -> None:
    report = os.environ.get(REPORT_ENV)
    if report:
        Path(report).write_text(
            json.dumps(
                {
                    "scheduler": os.environ.get(SCHEDULER_ENV, "stock"),
                    "num_plugin_schedulers": _num_plugin_schedulers,
                    "tests": _outcomes,
                },
                indent=1,
                sort_keys=True,
            )
        )
    shutil.rmtree(_HF_HOME, ignore_errors=True)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _outcomes.setdefault(report.nodeid, {"outcome": "passed"})
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        entry.update(outcome="skipped", reason=reason.removeprefix("Skipped: "))
    elif report.failed:
        entry["outcome"] = "failed"


@pytest.fixture(autouse=True)
def _offline_models(monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm.config import ModelConfig

    def model_config(*args: Any, **kwargs: Any) -> ModelConfig:
        model = kwargs.get("model")
        if model in MULTIMODAL_MODELS:
            pytest.skip(MULTIMODAL_SKIP_REASON.format(model=model))
        return ModelConfig(*args, **kwargs)

    for module in _upstream_modules():
        if getattr(module, "ModelConfig", None) is ModelConfig:
            monkeypatch.setattr(module, "ModelConfig", model_config)


@pytest.fixture(autouse=True)
def _hybrid_kv_cache_manager(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The offloading connector's tests build their config with the hybrid KV cache manager
    explicitly on, which vLLM refuses on a platform without hybrid KV-cache support (the CPU);
    vLLM's CI runs them on a GPU. The scheduler side they test runs no kernel, so the CPU is
    declared capable for them (and only them)."""
    if "offloading_connector" not in request.node.nodeid:
        return
    from vllm.platforms import current_platform

    monkeypatch.setattr(type(current_platform), "support_hybrid_kv_cache", classmethod(lambda cls: True))


@pytest.fixture(autouse=True)
def _scheduler_under_test(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    mode = os.environ.get(SCHEDULER_ENV, "stock")
    if mode == "stock":
        return
    if mode != "plugin":
        raise pytest.UsageError(f"{SCHEDULER_ENV} must be 'stock' or 'plugin', not {mode!r}")
    from serving_patch.vllm_adapter import (
        ContinuumAsyncScheduler,
        ContinuumMixin,
        ContinuumScheduler,
    )
    from vllm.v1.core.sched.async_scheduler import AsyncScheduler
    from vllm.v1.core.sched.scheduler import Scheduler

    substitutes = {Scheduler: ContinuumScheduler, AsyncScheduler: ContinuumAsyncScheduler}
    for module in _upstream_modules():
        for name in ("Scheduler", "AsyncScheduler"):
            original = getattr(module, name, None)
            if original in substitutes:
                monkeypatch.setattr(module, name, substitutes[original])

    init = ContinuumMixin.__init__
    entry = _outcomes.setdefault(request.node.nodeid, {"outcome": "passed"})

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        global _num_plugin_schedulers
        _num_plugin_schedulers += 1
        entry["plugin_schedulers"] = entry.get("plugin_schedulers", 0) + 1  # type: ignore[assignment, operator]
        init(self, *args, **kwargs)

    monkeypatch.setattr(ContinuumMixin, "__init__", counting_init)


def _upstream_modules() -> list[Any]:
    return [m for name, m in list(sys.modules.items()) if name.startswith("tests.v1.")]
