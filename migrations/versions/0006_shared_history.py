"""shared history: a fork reads its parent's turns and items instead of copying them

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 20:30:00.000000

Three columns on `threads` (see store.sql.history): `history_parent_id` (a
foreign key to the thread whose rows hold this thread's first turns),
`history_turns` (how many turn positions come from there) and
`history_line_shift`. Existing forks keep their own copies (parent NULL) until
they are next imported in full.

SQLite adds the columns with ALTER TABLE ADD COLUMN, which accepts a
REFERENCES clause for a nullable column: no table copy, so the raw-DDL
indexes on `threads` (search lookup) stay as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK_NAME = "fk_threads_history_parent_id_threads"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE threads ADD COLUMN history_parent_id VARCHAR(36)"
            f" CONSTRAINT {FK_NAME} REFERENCES threads (id)"
        )
    else:
        op.add_column("threads", sa.Column("history_parent_id", sa.String(36), nullable=True))
        op.create_foreign_key(FK_NAME, "threads", "threads", ["history_parent_id"], ["id"])
    op.add_column(
        "threads", sa.Column("history_turns", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column(
        "threads",
        sa.Column("history_line_shift", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_index("ix_threads_history_parent_id", "threads", ["history_parent_id"])


def downgrade() -> None:
    op.drop_index("ix_threads_history_parent_id", table_name="threads")
    # Give every sharing thread its own rows back first, so nothing is lost.
    from store.sql.history import detach_all

    detach_all(op.get_bind())
    if op.get_bind().dialect.name == "sqlite":
        # SQLite 3.35+ drops a column unless a constraint uses it: the foreign key
        # does, so this one column goes through a table copy.
        with op.batch_alter_table("threads", schema=None) as batch_op:
            batch_op.drop_column("history_line_shift")
            batch_op.drop_column("history_turns")
            batch_op.drop_column("history_parent_id")
    else:
        op.drop_constraint(FK_NAME, "threads", type_="foreignkey")
        op.drop_column("threads", "history_line_shift")
        op.drop_column("threads", "history_turns")
        op.drop_column("threads", "history_parent_id")
