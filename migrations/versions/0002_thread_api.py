"""Thread API: threads.created_at_s (Codex's created_at order) and thread_overrides.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("threads", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("created_at_s", sa.BigInteger(), nullable=False, server_default="0")
        )
    # Integer division on both SQLite and PostgreSQL (BIGINT / INTEGER).
    op.execute("UPDATE threads SET created_at_s = created_at_ms / 1000")
    with op.batch_alter_table("threads", schema=None) as batch_op:
        batch_op.alter_column("created_at_s", server_default=None)
        batch_op.drop_index(batch_op.f("ix_threads_archived_created_at_ms_id"))
        batch_op.create_index(
            batch_op.f("ix_threads_archived_created_at_s_id"),
            ["archived", "created_at_s", "id"],
            unique=False,
        )
    op.create_table(
        "thread_overrides",
        sa.Column("thread_id", sa.String(length=36), nullable=False),
        sa.Column("git_sha", sa.Text(), nullable=True),
        sa.Column("git_branch", sa.Text(), nullable=True),
        sa.Column("git_origin_url", sa.Text(), nullable=True),
        sa.Column("git_sha_set", sa.Boolean(), nullable=False),
        sa.Column("git_branch_set", sa.Boolean(), nullable=False),
        sa.Column("git_origin_url_set", sa.Boolean(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["thread_id"],
            ["threads.id"],
            name=op.f("fk_thread_overrides_thread_id_threads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("thread_id", name=op.f("pk_thread_overrides")),
    )


def downgrade() -> None:
    op.drop_table("thread_overrides")
    with op.batch_alter_table("threads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_threads_archived_created_at_s_id"))
        batch_op.create_index(
            batch_op.f("ix_threads_archived_created_at_ms_id"),
            ["archived", "created_at_ms", "id"],
            unique=False,
        )
        batch_op.drop_column("created_at_s")
