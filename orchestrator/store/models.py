"""SQLAlchemy 2 models of everything a run leaves behind.

Schema changes go through Alembic (orchestrator/store/migrations); ``SCHEMA_VERSION`` is stored
with each run so readers can tell payload formats apart. Text columns that can hold what a model or
tool returned are :class:`SafeText`/:class:`SafeJSON`: their strings are stored through the escape
of :mod:`orchestrator.store.safe_text` and read back exactly (same SQL types: no migration).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from orchestrator.store.safe_text import escape, map_strings, unescape

SCHEMA_VERSION = 1


class _EscapedString(TypeDecorator[str]):
    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else escape(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else unescape(value)


class SafeString(_EscapedString):
    """``String(length)`` whose value is stored escaped and read back exactly."""

    cache_ok = True


class SafeText(_EscapedString):
    """``Text`` whose value is stored escaped and read back exactly."""

    impl = Text
    cache_ok = True


class SafeJSON(TypeDecorator[Any]):
    """``JSON`` whose strings (keys too) are stored escaped and read back exactly."""

    impl = JSON
    cache_ok = True
    should_evaluate_none = True  # as JSON's: an unset attribute is SQL NULL, an explicit None JSON null

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return map_strings(value, escape)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return map_strings(value, unescape)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(when: datetime) -> datetime:
    """A stored time with its zone: times are stored in UTC, and SQLite hands them back naive."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: SafeJSON, list[Any]: SafeJSON}


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    parent_id: Mapped[str | None] = mapped_column(String(32), index=True)
    workflow: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    backend: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200), default="")
    task: Mapped[dict[str, Any]] = mapped_column(SafeJSON)
    options: Mapped[dict[str, Any]] = mapped_column(SafeJSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(SafeJSON)
    error: Mapped[str | None] = mapped_column(SafeText)
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    """The process executing the run (host:pid:instance); None when none is."""
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """The owner renews the lease while it runs; past this instant a dead owner's run is
    ``interrupted`` and another process may take it over."""
    worker: Mapped[str | None] = mapped_column(String(120))
    """The executor's worker that last started or resumed the run (``w0@host:pid`` on Ray); None:
    the process that asked for it (the local executor)."""
    v: Mapped[int] = mapped_column(Integer, default=SCHEMA_VERSION)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class StepRow(Base):
    __tablename__ = "steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    node: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(SafeJSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LLMCallRow(Base):
    __tablename__ = "llm_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    purpose: Mapped[str] = mapped_column(String(32), default="agent")
    model: Mapped[str] = mapped_column(SafeString(200), default="")
    endpoint: Mapped[str] = mapped_column(String(300), default="")
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_s: Mapped[float] = mapped_column(Float, default=0.0)
    finish_reason: Mapped[str] = mapped_column(SafeString(32), default="stop")
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    prompt: Mapped[list[Any]] = mapped_column(SafeJSON)
    response: Mapped[str] = mapped_column(SafeText)
    logprobs: Mapped[list[Any] | None] = mapped_column(SafeJSON, nullable=True)
    """``[[token, logprob, [[alternative, logprob], ...]], ...]`` when the call asked for them."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ToolCallRow(Base):
    __tablename__ = "tool_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    tool: Mapped[str] = mapped_column(String(64), index=True)
    arguments: Mapped[dict[str, Any]] = mapped_column(SafeJSON)
    result: Mapped[str] = mapped_column(SafeText)
    result_size: Mapped[int] = mapped_column(Integer, default=0)
    is_error: Mapped[bool] = mapped_column(Boolean, default=False)
    refused: Mapped[bool] = mapped_column(Boolean, default=False)
    units: Mapped[float] = mapped_column(Float, default=0.0)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ObservationRow(Base):
    """A nondeterministic input a node read (a budget view, a clock reading), journaled so that a
    resumed run reads the same (``orchestrator.journal``)."""

    __tablename__ = "observations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[Any] = mapped_column(SafeJSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RecordRow(Base):
    """A namespaced JSON record that a workflow keeps in the store (the core knows no method's
    tables): run-scoped ones (BatchPrompt's votes per round) carry ``run_id``, shared ones
    (PriorDynaFlow's Q-tables per task family) have ``run_id == ""``; every saved ``version``
    is kept. Not a foreign key, so that "" can stand for "no run" in the unique key."""

    __tablename__ = "records"
    __table_args__ = (UniqueConstraint("namespace", "key", "run_id", "version"),
                      Index("ix_records_lookup", "namespace", "key"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer, default=1)
    run_id: Mapped[str] = mapped_column(String(32), default="", index=True)
    data: Mapped[Any] = mapped_column(SafeJSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
