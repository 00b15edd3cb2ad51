"""cwd listing index: thread/list filtered by one cwd reads its page in order

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21 20:45:00.000000

`thread/list` with a `cwd` filter used the plain index on `threads.cwd`,
then sorted every thread of that folder to find the newest page (9-12 ms on
100,000 threads over 60 folders). The index on (cwd, archived, created_at_s,
id) hands the rows over in the default sort order instead, so a page stops
after its 51st row. It replaces the plain one (same leading column), so an
import maintains no more indexes than before.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "ix_threads_cwd"
NEW = "ix_threads_cwd_archived_created_at_s_id"


def upgrade() -> None:
    op.create_index(NEW, "threads", ["cwd", "archived", "created_at_s", "id"])
    op.drop_index(OLD, table_name="threads")


def downgrade() -> None:
    op.create_index(OLD, "threads", ["cwd"])
    op.drop_index(NEW, table_name="threads")
