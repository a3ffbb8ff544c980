"""records: one namespaced table for workflow data; the ledger's tables unchanged

Q-tables (``qtables``) and BatchPrompt votes (``votes``) were method tables in the core schema;
their rows move into ``records`` (namespaces ``priordynaflow.qtable`` and ``batchprompt.votes``).

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

QTABLE_NS = "priordynaflow.qtable"
VOTES_NS = "batchprompt.votes"

_records = sa.table(
    "records",
    sa.column("namespace", sa.String), sa.column("key", sa.String), sa.column("version", sa.Integer),
    sa.column("run_id", sa.String), sa.column("data", sa.JSON), sa.column("created_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace", "key", "run_id", "version"),
    )
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.create_index("ix_records_lookup", ["namespace", "key"], unique=False)
        batch_op.create_index(batch_op.f("ix_records_run_id"), ["run_id"], unique=False)
    conn = op.get_bind()
    qtables = conn.execute(sa.text("SELECT family, version, data, frozen, created_at FROM qtables")).all()
    rows = [
        {"namespace": QTABLE_NS, "key": family, "version": version, "run_id": "",
         "data": {"table": _json(data), "frozen": bool(frozen)}, "created_at": created or datetime.now(UTC)}
        for family, version, data, frozen, created in qtables
    ]
    rounds: dict[tuple[str, int], dict[str, list[object]]] = defaultdict(dict)
    for run_id, item, rnd, answer, confident in conn.execute(
            sa.text("SELECT run_id, item_id, round, answer, confident FROM votes ORDER BY id")).all():
        rounds[(run_id, rnd)][item] = [answer, bool(confident)]
    rows += [
        {"namespace": VOTES_NS, "key": f"round-{rnd}", "version": 1, "run_id": run_id, "data": votes,
         "created_at": datetime.now(UTC)}
        for (run_id, rnd), votes in rounds.items()
    ]
    if rows:
        op.bulk_insert(_records, rows)
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_votes_run_id"))
    op.drop_table("votes")
    with op.batch_alter_table("qtables", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qtables_family"))
    op.drop_table("qtables")


def _json(value: object) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def downgrade() -> None:
    op.create_table(
        "qtables",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("family", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("frozen", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("family", "version"),
    )
    with op.batch_alter_table("qtables", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_qtables_family"), ["family"], unique=False)
    op.create_table(
        "votes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("item_id", sa.String(length=100), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("answer", sa.String(length=200), nullable=True),
        sa.Column("confident", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_votes_run_id"), ["run_id"], unique=False)
    conn = op.get_bind()
    qtable_rows = conn.execute(sa.text(
        "SELECT key, version, data, created_at FROM records WHERE namespace = :ns"), {"ns": QTABLE_NS}).all()
    if qtable_rows:
        op.bulk_insert(sa.table("qtables", sa.column("family"), sa.column("version"), sa.column("data", sa.JSON),
                                sa.column("frozen"), sa.column("created_at")), [
            {"family": key, "version": version, "data": _json(data)["table"], "frozen": _json(data)["frozen"],
             "created_at": created} for key, version, data, created in qtable_rows])
    vote_rows = conn.execute(sa.text(
        "SELECT run_id, key, data FROM records WHERE namespace = :ns"), {"ns": VOTES_NS}).all()
    now = datetime.now(UTC)
    flat = [{"run_id": run_id, "item_id": item, "round": int(key.removeprefix("round-")), "answer": answer,
             "confident": confident, "created_at": now}
            for run_id, key, data in vote_rows for item, (answer, confident) in _json(data).items()]
    if flat:
        op.bulk_insert(sa.table("votes", sa.column("run_id"), sa.column("item_id"), sa.column("round"),
                                sa.column("answer"), sa.column("confident"), sa.column("created_at")), flat)
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_records_run_id"))
        batch_op.drop_index("ix_records_lookup")
    op.drop_table("records")
