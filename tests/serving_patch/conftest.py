"""The vendored vLLM tests run only through test_vllm_upstream.py, in their own pytest process."""

from __future__ import annotations

from pathlib import Path

import pytest

collect_ignore = ["vllm_upstream"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama config (no weights) the real vLLM scheduler tests build their engine config from."""
    from tests.serving_patch.vllm_harness import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny-llama"))
