"""search index: FTS5 (SQLite) or tsvector + pg_trgm (PostgreSQL)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 10:00:00.000000

The objects are dialect specific and invisible to SQLAlchemy's metadata
(virtual tables, triggers, expression indexes), so they are created from
store.search.schema, and migrations/env.py leaves `search_*` names out of the
autogenerate comparison. Existing items are indexed here.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from store.search import schema

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for stmt in schema.create_statements(dialect) + schema.rebuild_statements(dialect):
        op.execute(stmt)


def downgrade() -> None:
    for stmt in schema.drop_statements(op.get_bind().dialect.name):
        op.execute(stmt)
