"""Fixtures of the CLI tests: a home with a two-document corpus and a scripted agent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.tools.corpus import CorpusSource, build_corpus


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps(d) for d in [
        {"title": "Paris", "text": "Paris is the capital of France."},
        {"title": "Berlin", "text": "Berlin is the capital of Germany."},
    ]))
    corpus = tmp_path / "corpus.db"
    build_corpus(corpus, [CorpusSource(docs, "documents")])
    monkeypatch.setenv("QUOTAFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("QUOTAFLOW_CORPUS", str(corpus))
    script = tmp_path / "script.json"
    script.write_text(json.dumps(["search: capital of France", "answer: Paris", "Paris"]))  # the last: the reading call
    return {"home": tmp_path, "script": script}
