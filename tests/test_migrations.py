"""Schema migrations on both dialects: empty -> head -> base -> head, no drift
between the Alembic history and store.sql.schema, and who upgrades when."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.util.exc import CommandError
from sqlalchemy import inspect, text

from store import SchemaOutOfDate, open_store
from store.sql import migrate
from store.sql import schema as s
from store.sql.engine import make_engine
from tests.cli_run import assert_clean_failure, rollouts
from tests.conftest import CORPUS, copy_home

MODEL_TABLES = {t.name for t in s.metadata.sorted_tables}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        names = set(inspect(engine).get_table_names()) - {"alembic_version"}
        # The search index's FTS5 tables and shadow tables are not in the models
        # (they are created by migration 0003 with raw DDL).
        return {n for n in names if not n.startswith("search_")}
    finally:
        engine.dispose()


def _revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        return migrate.current_revision(engine)
    finally:
        engine.dispose()


def test_empty_to_head_to_base_to_head(db_url: str, tmp_path: Path) -> None:
    home = copy_home(CORPUS / "codex-0.45.0", tmp_path / "home")
    engine = make_engine(db_url)
    try:
        assert migrate.current_revision(engine) is None
        assert _tables(db_url) == set()
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert _tables(db_url) == MODEL_TABLES
        migrate.check(engine)
        with open_store(db_url, codex_home=home) as st:
            first = st.ingest([home])
            assert first.threads > 0 and first.errors == 0
            counts = st.counts()
        migrate.downgrade(engine, "base")
        assert migrate.current_revision(engine) is None
        assert _tables(db_url) == set()
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        migrate.check(engine)
        # The schema is whole again: a fresh import fills it as before.
        with open_store(db_url, codex_home=home) as st:
            assert st.ingest([home]).threads == first.threads
            assert st.counts() == counts
    finally:
        engine.dispose()


def test_check_sees_drift(db_url: str) -> None:
    """`alembic check` passes on a migrated database and fails once it differs."""
    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine)
        migrate.check(engine)
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE threads ADD COLUMN stray INTEGER"))
        with pytest.raises(CommandError, match="New upgrade operations detected"):
            migrate.check(engine)
    finally:
        engine.dispose()


def test_out_of_date_database_is_refused(db_url: str, tmp_path: Path) -> None:
    with pytest.raises(SchemaOutOfDate, match=r"has no rollouts schema.*`rollouts db upgrade`"):
        open_store(db_url, codex_home=tmp_path)
    assert _tables(db_url) == set()  # refused means untouched
    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    finally:
        engine.dispose()
    with pytest.raises(SchemaOutOfDate, match=r"revision 0000.*`rollouts db upgrade`"):
        open_store(db_url, codex_home=tmp_path)


def test_embedded_default_upgrades_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROLLOUTS_DB", raising=False)
    home = copy_home(CORPUS / "codex-0.45.0", tmp_path / "home")
    default = f"sqlite:///{home / 'rollouts.sqlite'}"
    with open_store(codex_home=home) as st:
        assert st.url == default
        assert st.ingest([home]).errors == 0
    assert _revision(default) == migrate.head_revision()
    # The same file named explicitly is "another database": not upgraded.
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    with pytest.raises(SchemaOutOfDate):
        open_store(other, codex_home=home)


def test_db_commands(db_url: str, tmp_path: Path) -> None:
    home = copy_home(CORPUS / "codex-0.45.0", tmp_path / "home")
    head = migrate.head_revision()
    current = rollouts(home, db_url, "db", "current")
    assert (current.returncode, current.stdout) == (0, f"(empty) (head is {head})\n")
    check = rollouts(home, db_url, "db", "check")
    assert check.returncode == 1 and "out of date" in check.stderr, check.stderr
    assert_clean_failure(rollouts(home, db_url, "list"), "rollouts db upgrade")
    assert_clean_failure(rollouts(home, db_url, "import"), "rollouts db upgrade")
    upgrade = rollouts(home, db_url, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    assert f"schema at {head} (head)" in upgrade.stderr
    assert rollouts(home, db_url, "db", "current").stdout == f"{head} (head)\n"
    check = rollouts(home, db_url, "db", "check")
    assert (check.returncode, check.stderr) == (0, "schema up to date, no drift\n")
    again = rollouts(home, db_url, "db", "upgrade")  # idempotent
    assert again.returncode == 0, again.stderr
    assert rollouts(home, db_url, "import").returncode == 0
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE items ADD COLUMN stray INTEGER"))
    finally:
        engine.dispose()
    drift = rollouts(home, db_url, "db", "check")
    assert drift.returncode == 1 and "drift" in drift.stderr, drift.stderr
    assert "Traceback" not in drift.stderr


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("postgresql://nobody@127.0.0.1:1/none", "database: connection failed"),
        ("mysql://x@localhost/db", "'mysql'"),
        ("not a url", "'not a url'"),
    ],
)
@pytest.mark.parametrize("command", [("db", "current"), ("db", "upgrade"), ("list",)])
def test_unusable_database_url(
    tmp_path: Path, url: str, needle: str, command: tuple[str, ...]
) -> None:
    proc = rollouts(tmp_path, url, *command)
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr
    assert needle in proc.stderr, proc.stderr
