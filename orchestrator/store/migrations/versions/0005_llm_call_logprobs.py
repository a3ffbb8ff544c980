"""the log-probabilities of an LLM reply

``llm_calls.logprobs``: the reply's tokens with their log-probabilities, as
``[[token, logprob, [[alternative, logprob], ...]], ...]``, when the call asked for them; NULL
otherwise. A resumed run replays them with the reply, so a workflow that scores by them takes
the path it took.

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("llm_calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("logprobs", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("llm_calls", schema=None) as batch_op:
        batch_op.drop_column("logprobs")
