"""The ledger's tables (SQLAlchemy 2 models on the budget package's own metadata).

The runtime's migrations (``orchestrator/store/migrations``) create them beside its own tables;
the budget package owns their shape.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BudgetBase(DeclarativeBase):
    """Declarative base of the ledger's tables (``BudgetBase.metadata``)."""


class BudgetAccountRow(BudgetBase):
    """One resource in one scope: its limit (None: unlimited, still counted), what is reserved
    by calls in flight and what was spent."""

    __tablename__ = "budget_accounts"
    __table_args__ = (UniqueConstraint("scope", "resource"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(200))
    resource: Mapped[str] = mapped_column(String(100))
    limit_amount: Mapped[float | None] = mapped_column(Float)
    reserved: Mapped[float] = mapped_column(Float, default=0.0)
    spent: Mapped[float] = mapped_column(Float, default=0.0)


class LedgerEntryRow(BudgetBase):
    """One reservation against one account, and how it was settled."""

    __tablename__ = "ledger_entries"
    __table_args__ = (UniqueConstraint("key", "account_id"), Index("ix_ledger_run", "run_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200))
    account_id: Mapped[int] = mapped_column(ForeignKey("budget_accounts.id", ondelete="CASCADE"))
    run_id: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # reserved | settled | released
    reserved_amount: Mapped[float] = mapped_column(Float)
    settled_amount: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
