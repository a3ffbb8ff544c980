"""LLM clients behind one interface (:class:`~orchestrator.llm.base.LLMClient`).

    client = create_client("openai", base_urls=["http://gpu:8000/v1"], model="Qwen/Qwen2.5-0.5B-Instruct")
    client = create_client("local")                      # SmolLM2-135M-Instruct on CPU, no server
    client = create_client("scripted", responses=["Final Answer: 42"])

Backends are imported when first created, so ``import orchestrator.llm`` needs neither torch nor
transformers.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.llm.base import LLMClient

__all__ = ["LLMClient", "create_client", "known_backends"]


@dataclass(frozen=True)
class _Backend:
    module: str
    client: str
    config: str


_BACKENDS: dict[str, _Backend] = {
    "openai": _Backend("orchestrator.llm.openai", "OpenAIClient", "OpenAIConfig"),
    "local": _Backend("orchestrator.llm.local", "LocalClient", "LocalConfig"),
    "scripted": _Backend("orchestrator.llm.scripted", "ScriptedClient", "ScriptedConfig"),
}


def known_backends() -> list[str]:
    """Names :func:`create_client` accepts."""
    return sorted(_BACKENDS)


def create_client(backend: str, **options: Any) -> LLMClient:
    """A client for ``backend``; ``options`` are the fields of that backend's config dataclass.

    Raises :class:`~orchestrator.errors.ConfigError` for an unknown backend or option.
    """
    spec = _BACKENDS.get(backend)
    if spec is None:
        raise ConfigError(f"unknown LLM backend {backend!r}; known backends: {', '.join(known_backends())}")
    module = importlib.import_module(spec.module)
    config_cls = getattr(module, spec.config)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for LLM backend {backend!r}; "
                          f"known options: {', '.join(sorted(fields))}")
    client: LLMClient = getattr(module, spec.client)(config_cls(**options))
    return client
