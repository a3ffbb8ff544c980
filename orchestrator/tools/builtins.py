"""The built-in tools in one registry."""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import BadInputError
from orchestrator.tools.calculator import calculator_tool
from orchestrator.tools.corpus import Corpus, CorpusConfig, browse_tool, search_tool
from orchestrator.tools.registry import ToolRegistry
from orchestrator.tools.sandbox import SandboxLimits, python_tool

__all__ = ["RunTools", "default_registry"]


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


class RunTools:
    """Where runs draw their tools from: the caller's registry, or the built-ins. With no search
    corpus built yet, the built-ins leave out ``search`` and ``browse``; a run that names them
    gets the error that says how to build one."""

    def __init__(self, registry: ToolRegistry | None, corpus_path: str | Path | None) -> None:
        self._registry = registry
        self._corpus_path = corpus_path
        self._corpus_error: BadInputError | None = None

    @property
    def registry(self) -> ToolRegistry:
        if self._registry is None:
            try:
                self._registry = default_registry(corpus_path=self._corpus_path)
            except BadInputError as exc:
                if self._corpus_path is None or Path(self._corpus_path).exists():  # exists but does not open
                    raise
                self._corpus_error = exc
                self._registry = default_registry(corpus_path=None)
        return self._registry

    def for_run(self, names: list[str]) -> ToolRegistry:
        """The tools a run may call: the named ones, or every registered tool when it names none."""
        registry = self.registry
        if self._corpus_error is not None and {"search", "browse"} & (set(names) - set(registry.names())):
            raise self._corpus_error
        return registry.subset(names) if names else registry
