"""default_registry: the built-ins with and without a corpus."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from orchestrator.errors import BadInputError
from orchestrator.tools.builtins import default_registry
from orchestrator.tools.corpus import CorpusSource, build_corpus


def test_builtins_without_and_with_a_corpus(tmp_path: Path) -> None:
    assert default_registry().names() == ["python", "calculator"]
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"title": "Dijon", "text": "Dijon is a city in France."}) + "\n")
    build_corpus(tmp_path / "c.db", [CorpusSource(docs, "documents")])
    reg = default_registry(tmp_path / "c.db")
    assert reg.names() == ["search", "browse", "python", "calculator"]
    assert [s.unit for s in reg.specs()] == ["query", "url", "run", "call"]
    hit = asyncio.run(reg.invoke("search", "city in France"))
    assert "1. Dijon <wiki://Dijon>" in hit.content
    with pytest.raises(BadInputError, match="quotaflow corpus build"):
        default_registry(tmp_path / "missing.db")
