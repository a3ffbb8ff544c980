"""The built-in tools in one registry."""

from __future__ import annotations

from pathlib import Path

from orchestrator.tools.calculator import calculator_tool
from orchestrator.tools.corpus import Corpus, CorpusConfig, browse_tool, search_tool
from orchestrator.tools.registry import ToolRegistry
from orchestrator.tools.sandbox import SandboxLimits, python_tool

__all__ = ["default_registry"]


def default_registry(
    corpus_path: str | Path | None = None,
    *,
    corpus_config: CorpusConfig | None = None,
    sandbox_limits: SandboxLimits | None = None,
) -> ToolRegistry:
    """``search`` and ``browse`` (when a built corpus is given), ``python`` and ``calculator``.

    A corpus path that does not exist raises BadInputError telling how to build one.
    """
    registry = ToolRegistry()
    if corpus_path is not None:
        corpus = Corpus(corpus_path, corpus_config)
        registry.register(search_tool(corpus))
        registry.register(browse_tool(corpus))
    registry.register(python_tool(sandbox_limits))
    registry.register(calculator_tool())
    return registry
