"""An offline document corpus in SQLite FTS5 (BM25 ranking) and the ``search``/``browse`` tools.

Build it once (``quotaflow corpus build`` or :func:`build_corpus`) from HotpotQA files (the union
of their context paragraphs, one document per title) and from jsonl files of documents
(``{"title", "text"[, "url"]}``). Each document gets the address ``wiki://<title>`` unless its
line gives a ``url``. Budget units follow BATS: one per query string, one per URL.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from orchestrator.errors import BadInputError, ToolError
from orchestrator.tools.base import Tool, ToolResult, ToolSpec

__all__ = [
    "Corpus",
    "CorpusBuildReport",
    "CorpusConfig",
    "CorpusSource",
    "SearchHit",
    "browse_tool",
    "build_corpus",
    "fts_query",
    "search_tool",
]

SCHEMA_VERSION = 1
WIKI_SCHEME = "wiki://"
_MAX_PROBLEMS_KEPT = 100

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT NOT NULL UNIQUE, url TEXT NOT NULL UNIQUE,
                   text TEXT NOT NULL);
CREATE VIRTUAL TABLE docs_fts USING fts5(title, text, content='docs', content_rowid='id',
                                          tokenize='porter unicode61 remove_diacritics 2');
"""


@dataclass(frozen=True)
class CorpusSource:
    """One input file of a corpus build."""

    path: Path
    """The jsonl file."""
    kind: Literal["hotpotqa", "documents"]
    """``hotpotqa``: lines with ``context: [[title, [sentences]]]``; ``documents``: lines with
    ``title`` and ``text`` (and optionally ``url``)."""


@dataclass
class CorpusBuildReport:
    """What a build did."""

    db_path: Path
    """The database written."""
    num_docs: int = 0
    """Documents in the corpus."""
    num_duplicates: int = 0
    """Documents skipped because a document with the same title (or url) came first."""
    num_malformed: int = 0
    """Input lines skipped because they were not valid (see ``problems``)."""
    problems: list[str] = field(default_factory=list)
    """``path:line: reason`` for the first malformed lines."""


def _hotpotqa_docs(record: Any) -> list[tuple[str, str, str | None]]:
    context = record.get("context") if isinstance(record, dict) else None
    if not isinstance(context, list):
        raise TypeError("expected an object with a 'context' list of [title, [sentences]]")
    docs: list[tuple[str, str, str | None]] = []
    for i, para in enumerate(context):
        if (
            not isinstance(para, list)
            or len(para) != 2
            or not isinstance(para[0], str)
            or not isinstance(para[1], list)
            or not all(isinstance(s, str) for s in para[1])
        ):
            raise TypeError(f"context[{i}] is not [title, [sentences]]")
        docs.append((para[0], "".join(para[1]).strip(), None))
    return docs


def _document_docs(record: Any) -> list[tuple[str, str, str | None]]:
    if not isinstance(record, dict):
        raise TypeError("expected a JSON object with 'title' and 'text'")
    title, text, url = record.get("title"), record.get("text"), record.get("url")
    if not isinstance(title, str) or not title.strip():
        raise TypeError("'title' must be a non-empty string")
    if not isinstance(text, str):
        raise TypeError("'text' must be a string")
    if url is not None and not isinstance(url, str):
        raise TypeError("'url' must be a string when given")
    return [(title, text, url)]


_PARSERS: dict[str, Callable[[Any], list[tuple[str, str, str | None]]]] = {
    "hotpotqa": _hotpotqa_docs,
    "documents": _document_docs,
}


def _read_source(
    source: CorpusSource, report: CorpusBuildReport, on_progress: Callable[[int], None] | None
) -> Iterator[tuple[str, str, str | None]]:
    parse = _PARSERS[source.kind]
    try:
        handle = open(source.path, "rb")  # noqa: SIM115 - closed below, read incrementally
    except OSError as exc:
        raise BadInputError(
            f"corpus source {source.path}", "a readable jsonl file", str(exc)
        ) from exc
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            if on_progress is not None:
                on_progress(len(raw))
            if not raw.strip():
                continue
            try:
                docs = parse(json.loads(raw))
            except (ValueError, TypeError) as exc:
                report.num_malformed += 1
                if len(report.problems) < _MAX_PROBLEMS_KEPT:
                    report.problems.append(f"{source.path}:{lineno}: {exc}")
                continue
            yield from docs


def build_corpus(
    db_path: str | Path,
    sources: Sequence[CorpusSource],
    *,
    on_progress: Callable[[int], None] | None = None,
) -> CorpusBuildReport:
    """Build (or replace) the corpus database at ``db_path`` from ``sources``.

    Documents are deduplicated by title (and url): the first occurrence wins. Malformed lines are
    counted and reported with their line numbers, never fatal. ``on_progress`` receives the number
    of bytes read after each line. The database is written to a temporary file and moved into
    place, so a failed build leaves an existing corpus intact.
    """
    db_path = Path(db_path)
    report = CorpusBuildReport(db_path=db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=db_path.name + ".", suffix=".tmp", dir=db_path.parent)
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp_name)
        try:
            conn.executescript(_SCHEMA)
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            seen_titles: set[str] = set()
            seen_urls: set[str] = set()
            for source in sources:
                for title, text, url in _read_source(source, report, on_progress):
                    title = title.strip()
                    url = url or WIKI_SCHEME + title
                    if title in seen_titles or url in seen_urls:
                        report.num_duplicates += 1
                        continue
                    seen_titles.add(title)
                    seen_urls.add(url)
                    conn.execute(
                        "INSERT INTO docs(title, url, text) VALUES (?, ?, ?)", (title, url, text)
                    )
            conn.execute("INSERT INTO docs_fts(docs_fts) VALUES ('rebuild')")
            conn.execute("INSERT INTO docs_fts(docs_fts) VALUES ('optimize')")
            report.num_docs = conn.execute("SELECT count(*) FROM docs").fetchone()[0]
            conn.commit()
        finally:
            conn.close()
        os.replace(tmp_name, db_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return report


_TOKEN = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str | None:
    """An FTS5 MATCH expression for free text: every word becomes a quoted term, joined by OR.

    User text never reaches FTS5's query syntax (operators, column filters, quotes), so any
    input is safe; BM25 ranks documents that match more and rarer words first. None when the
    text has no word at all.
    """
    terms = dict.fromkeys(t.lower() for t in _TOKEN.findall(text))
    if not terms:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


@dataclass(frozen=True)
class SearchHit:
    """One ranked search result."""

    title: str
    url: str
    snippet: str
    score: float
    """BM25 score as FTS5 reports it (more negative is better)."""


@dataclass(frozen=True)
class CorpusConfig:
    """How the search and browse tools read the corpus."""

    max_results: int = 5
    """Results per query string when the agent does not ask for a number."""
    max_results_limit: int = 20
    """The most results per query string an agent may ask for."""
    snippet_tokens: int = 40
    """Length of a result snippet, in tokens around the matches."""
    max_page_chars: int = 150_000
    """Browse output is cut to this many characters (BATS's default), with a note."""
    title_weight: float = 2.0
    """BM25 weight of a title match relative to a body match."""
    timeout_s: float = 10.0
    """Timeout of one search/browse call."""


class Corpus:
    """Read access to a built corpus database (safe to share between coroutines)."""

    def __init__(self, db_path: str | Path, config: CorpusConfig | None = None) -> None:
        self.db_path = Path(db_path)
        self.config = config or CorpusConfig()
        if not self.db_path.is_file():
            raise BadInputError(
                f"corpus {self.db_path}",
                "a corpus database",
                "it does not exist; build one with `quotaflow corpus build --out PATH`",
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)

    def num_docs(self) -> int:
        with self._connect() as conn:
            return int(conn.execute("SELECT count(*) FROM docs").fetchone()[0])

    def search(self, query: str, k: int | None = None) -> list[SearchHit]:
        """The top ``k`` documents for ``query`` by BM25."""
        match = fts_query(query)
        if match is None:
            return []
        k = min(k or self.config.max_results, self.config.max_results_limit)
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT d.title, d.url, snippet(docs_fts, 1, '', '', ' ... ', ?),"
                " bm25(docs_fts, ?, 1.0) AS score"
                " FROM docs_fts JOIN docs d ON d.id = docs_fts.rowid"
                " WHERE docs_fts MATCH ? ORDER BY score LIMIT ?",
                (self.config.snippet_tokens, self.config.title_weight, match, k),
            ).fetchall()
        finally:
            conn.close()
        return [SearchHit(title=t, url=u, snippet=s, score=sc) for t, u, s, sc in rows]

    def page(self, url: str) -> tuple[str, str] | None:
        """(title, text) of the document at ``url``; a bare title is accepted too."""
        conn = self._connect()
        try:
            row = conn.execute(
                "SELECT title, text FROM docs WHERE url = ? OR title = ? LIMIT 1",
                (url, url.removeprefix(WIKI_SCHEME)),
            ).fetchone()
        finally:
            conn.close()
        return None if row is None else (row[0], row[1])


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _string_or_list(what: str) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "string", "minLength": 1},
            {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
        ],
        "description": what,
    }


def search_tool(corpus: Corpus) -> Tool:
    """``search``: ranked titles, urls and snippets for one query string or a list of them."""
    config = corpus.config

    def run(queries: list[str], k: int | None) -> str:
        blocks = []
        for query in queries:
            hits = corpus.search(query, k)
            lines = [f"Results for {query!r}:"]
            if not hits:
                lines.append("  (no documents match; try other words)")
            for rank, hit in enumerate(hits, start=1):
                lines.append(f"  {rank}. {hit.title} <{hit.url}>\n     {hit.snippet}")
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)

    async def call(args: dict[str, Any]) -> ToolResult:
        queries = _as_list(args["query"])
        content = await asyncio.to_thread(run, queries, args.get("k"))
        return ToolResult(content=content, metadata={"num_queries": len(queries)})

    spec = ToolSpec(
        name="search",
        description="Search the offline encyclopedia; returns titles, urls and snippets.",
        parameters={
            "type": "object",
            "properties": {
                "query": _string_or_list(
                    "a query string, or a list of query strings (one unit each)"
                ),
                "k": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": config.max_results_limit,
                    "description": f"results per query (default {config.max_results})",
                },
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        unit="query",
        units=lambda args: len(_as_list(args["query"])),
        timeout_s=config.timeout_s,
    )
    return Tool(spec=spec, fn=call)


def browse_tool(corpus: Corpus) -> Tool:
    """``browse``: the text of one page (or several), by url from a search result."""
    max_chars = corpus.config.max_page_chars

    def run(urls: list[str]) -> tuple[str, int]:
        blocks, num_missing = [], 0
        for url in urls:
            found = corpus.page(url)
            if found is None:
                num_missing += 1
                blocks.append(f"No page at {url!r}. Use a url exactly as a search result gives it.")
                continue
            title, text = found
            if len(text) > max_chars:
                text = (
                    text[:max_chars]
                    + f"\n[truncated: showing {max_chars} of {len(text)} characters]"
                )
            blocks.append(f"# {title}\n{text}")
        return "\n\n".join(blocks), num_missing

    async def call(args: dict[str, Any]) -> ToolResult:
        urls = _as_list(args["url"])
        content, num_missing = await asyncio.to_thread(run, urls)
        if num_missing == len(urls):
            raise ToolError(content)
        return ToolResult(
            content=content, metadata={"num_urls": len(urls), "num_missing": num_missing}
        )

    spec = ToolSpec(
        name="browse",
        description="Read a page of the offline encyclopedia by its url (from search results).",
        parameters={
            "type": "object",
            "properties": {"url": _string_or_list("a url, or a list of urls (one unit each)")},
            "required": ["url"],
            "additionalProperties": False,
        },
        unit="url",
        units=lambda args: len(_as_list(args["url"])),
        timeout_s=corpus.config.timeout_s,
    )
    return Tool(spec=spec, fn=call)
