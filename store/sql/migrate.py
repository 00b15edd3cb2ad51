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


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """A write connection for migrations.

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
