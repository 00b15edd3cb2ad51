"""Alembic environment: one linear history for SQLite and PostgreSQL.

The store runs migrations in code (store.sql.migrate), handing over an open
connection in `config.attributes["connection"]`; the `alembic` command line
(for `alembic revision --autogenerate`) uses ROLLOUTS_DB or alembic.ini's URL.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

import store.archive.tables  # noqa: F401  (registers the archive tables in `metadata`)
from store.search.schema import is_search_object
from store.sql.engine import make_engine, normalize_url
from store.sql.schema import metadata

config = context.config


def _include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    # The search index's tables, views and indexes are made by raw DDL.
    return not is_search_object(name)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite can only ALTER through table copies
        compare_type=True,
        include_object=_include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    url = os.environ.get("ROLLOUTS_DB") or config.get_main_option("sqlalchemy.url")
    context.configure(
        url=normalize_url(url or ""),
        target_metadata=metadata,
        render_as_batch=True,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = os.environ.get("ROLLOUTS_DB") or config.get_main_option("sqlalchemy.url")
    engine = make_engine(url or "sqlite:///rollouts.sqlite")
    with engine.connect() as conn:
        _configure(conn)
        conn.commit()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
