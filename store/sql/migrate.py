"""Schema migrations driven from Python (no alembic.ini needed at run time)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

import migrations
from store.errors import SchemaOutOfDate


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


# pg_advisory_xact_lock key that serializes schema upgrades (not the writers' key).
SCHEMA_LOCK_KEY = 7319045120332


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """A write connection for migrations, inside one locked transaction.

    Two processes opening a fresh database at once must not both migrate it
    (they did: "duplicate column name: created_at_s"). So the whole upgrade is
    one transaction begun here, before Alembic reads the current revision:
    SQLite begins it with BEGIN IMMEDIATE (the write lock), PostgreSQL takes an
    advisory lock first thing in it. Alembic, handed a connection already in a
    transaction, runs every step in it and reads the revision under the lock,
    so the second process waits, then finds the schema current and does nothing.
    SQLite's DDL is transactional too; a failed upgrade leaves the old schema.

    On SQLite, foreign keys are switched off first: a batch migration copies a
    table and drops the original, and with foreign keys on, that DROP would
    cascade-delete every row referring to it (turns, items, files). The
    PRAGMA only works outside a transaction, so it goes to the driver
    connection before SQLAlchemy begins one; the result is checked with
    `PRAGMA foreign_key_check` before the commit.
    """
    with engine.connect().execution_options(write=True) as conn:
        raw = conn.connection.dbapi_connection if engine.dialect.name == "sqlite" else None
        if raw is not None:
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            conn.begin()
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")
            yield conn
            if raw is not None:
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    conn.rollback()
                    raise SchemaOutOfDate(f"migration left broken references: {broken[:5]}")
            conn.commit()
        finally:
            if raw is not None:
                conn.rollback()
                raw.execute("PRAGMA foreign_keys=ON")


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = _config()
    with _migrating(engine) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    cfg = _config()
    with _migrating(engine) as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def check(engine: Engine) -> None:
    """Raise if the models and the migrated database differ (autogenerate diff)."""
    cfg = _config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.check(cfg)


def ensure_current(engine: Engine, *, auto_upgrade: bool, url_for_message: str) -> None:
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if auto_upgrade:
        upgrade(engine)
        return
    if current is None:
        state = "has no rollouts schema"
    else:
        state = f"is at schema revision {current}, this version needs {head}"
    raise SchemaOutOfDate(
        f"the database {url_for_message} {state}. Run `rollouts db upgrade` "
        f"(with ROLLOUTS_DB or --db set to it) first."
    )
