"""Two `rollouts import` processes started at once on one database.

Both must succeed (no "database is locked", no unique-key violation) and leave
exactly the database a single import leaves. The home is a real 0.169.0
CODEX_HOME (forks, revert segments, archived threads, names) plus a few
hundred copies of real 0.100.0/0.150.0/0.169.0 sessions under fresh ids, so
that both importers are still writing when the other one starts.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from store import open_store
from store.sql import migrate
from store.sql import schema as s
from store.sql.engine import make_engine
from tests.cli_run import cli_argv, cli_env, rollouts
from tests.conftest import CORPUS, copy_home
from tests.helpers import json_lines, rollout_files

COPIES = 12  # of each self-contained session: ~250 threads, ~12 MB
ROUNDS = 3

# Columns that legitimately differ between two equal imports: surrogate keys
# (replaced by the rows they point at) and wall-clock times of the import.
VOLATILE = {
    "roots": {"id", "added_at_ms"},
    "rollout_files": {"id", "root_id", "indexed_at_ms"},
    "threads": {"live_file_id"},
    "items": {"id"},
    "skipped_lines": {"file_id"},
    "thread_names": {"root_id"},
}


def _self_contained(path: Path) -> bool:
    """A whole session: not a revert segment, not a fork of another."""
    meta = json_lines(path)[0].get("payload", {})
    return "_" not in path.name and not meta.get("forked_from_id") and not meta.get("history_base")


def _big_home(tmp_path: Path) -> Path:
    home = copy_home(CORPUS / "codex-0.169.0", tmp_path / "home")
    rng = random.Random(11)
    out = home / "sessions" / "2027" / "01" / "01"
    out.mkdir(parents=True)
    for version in ("codex-0.100.0", "codex-0.150.0", "codex-0.169.0"):
        for src in rollout_files(CORPUS / version / "sessions"):
            if not _self_contained(src):
                continue
            old = json_lines(src)[0]["payload"]["id"]
            data = src.read_bytes()
            for _ in range(COPIES):
                new = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                (out / src.name.replace(old, new)).write_bytes(
                    data.replace(old.encode(), new.encode())
                )
    return home


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, surrogate keys replaced by what they point at."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            files = dict(
                conn.execute(select(s.rollout_files.c.id, s.rollout_files.c.rel_path)).all()
            )
            out: dict[str, list[tuple[Any, ...]]] = {}
            for table in s.metadata.sorted_tables:
                drop = VOLATILE.get(table.name, set())
                cols = [c for c in table.c if c.name not in drop]
                rows = []
                for row in conn.execute(select(*table.c)).mappings():
                    kept = tuple(row[c.name] for c in cols)
                    refs = tuple(files.get(row[k]) for k in ("live_file_id", "file_id") if k in row)
                    rows.append(kept + refs)
                out[table.name] = sorted(rows, key=repr)
    finally:
        engine.dispose()
    return out


def _start_import(home: Path, url: str) -> subprocess.Popen[str]:
    return _start(cli_env(home, url), "import", "--json")


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli_argv(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _race(home: Path, url: str) -> list[dict[str, Any]]:
    """Start two importers at once; both must exit 0 with a clean summary."""
    procs = [_start_import(home, url) for _ in range(2)]
    summaries = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert "locked" not in err and "Traceback" not in err, err
        summary = json.loads(out)
        assert summary["errors"] == 0, summary["error_details"]
        summaries.append(summary)
    return summaries


def _single_run(tmp_path: Path, home: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    url = f"sqlite:///{tmp_path / 'single.sqlite'}"
    assert rollouts(home, url, "db", "upgrade").returncode == 0
    proc = rollouts(home, url, "import", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), _dump(url)


def _fresh_schema(db_url: str, home: Path) -> None:
    """Empty the database and bring it to head, as `rollouts db upgrade` does."""
    engine = make_engine(db_url)
    try:
        if migrate.current_revision(engine) is not None:
            migrate.downgrade(engine, "base")  # also drops the search index's raw DDL
        s.metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    finally:
        engine.dispose()
    assert rollouts(home, db_url, "db", "upgrade").returncode == 0


def test_two_importers_at_once_equal_one(db_url: str, tmp_path: Path) -> None:
    home = _big_home(tmp_path)
    single, want = _single_run(tmp_path, home)
    n_threads = single["threads"]
    assert n_threads == len(want["threads"]) > 200
    for _ in range(ROUNDS):
        _fresh_schema(db_url, home)
        summaries = _race(home, db_url)
        # Together they wrote every thread once: what one wrote, the other
        # found done and counted unchanged.
        for x in summaries:
            assert x["files"] == single["files"]
            assert x["threads"] + x["unchanged"] == n_threads, x
        assert sum(x["threads"] for x in summaries) == n_threads
        got = _dump(db_url)
        assert {k: len(v) for k, v in got.items()} == {k: len(v) for k, v in want.items()}
        assert got == want
        # And a third import afterwards finds nothing to do.
        again = rollouts(home, db_url, "import", "--json")
        assert json.loads(again.stdout)["unchanged"] == n_threads


@pytest.mark.parametrize("round_", range(2))
def test_two_first_imports_into_the_default_database(tmp_path: Path, round_: int) -> None:
    """The embedded default creates its schema itself: two first runs race on that too."""
    home = _big_home(tmp_path)
    default = f"sqlite:///{home / 'rollouts.sqlite'}"
    env_home = cli_env(home, "")
    del env_home["ROLLOUTS_DB"]
    procs = [_start(env_home, "import", "--json") for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert json.loads(out)["errors"] == 0
    _single, want = _single_run(tmp_path, home)
    assert _dump(default) == want


def test_schema_upgrades_at_once_migrate_once(db_url: str, tmp_path: Path) -> None:
    """Three `rollouts db upgrade` on an empty database at once: one migrates, the others wait.

    Without the schema lock two of them ran the same migration ("duplicate column
    name: created_at_s" on SQLite; on PostgreSQL a duplicate key in pg_type or
    "relation already exists", every time). With it, each waits for the lock,
    re-reads the revision and finds nothing to do.
    """
    home = tmp_path / "home"
    home.mkdir()
    for round_ in range(2):
        if round_:
            _empty(db_url)
        procs = [_start(cli_env(home, db_url), "db", "upgrade") for _ in range(3)]
        for proc in procs:
            _out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            assert "Traceback" not in err, err
        engine = make_engine(db_url)
        try:
            assert migrate.current_revision(engine) == migrate.head_revision()
        finally:
            engine.dispose()
        # The schema works: an import into it succeeds.
        imported = rollouts(home, db_url, "import", "--json")
        assert imported.returncode == 0, imported.stderr


def _empty(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate.downgrade(engine, "base")
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    finally:
        engine.dispose()


def test_a_forked_child_never_uses_its_parents_connections(db_url: str, tmp_path: Path) -> None:
    """Pooled connections stay with the process that opened them (ingest forks its workers)."""
    with open_store(db_url, auto_upgrade=True, codex_home=tmp_path) as st:
        st.counts()
        parent_pool = st.engine.pool
        assert parent_pool.checkedin() >= 1  # a pooled, open connection
        pid = os.fork()
        if pid == 0:  # the child: a new, empty pool, and queries on connections of its own
            code = 1
            try:
                fresh = st.engine.pool is not parent_pool and st.engine.pool.checkedin() == 0
                code = 0 if fresh and st.counts()["threads"] == 0 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert st.engine.pool is parent_pool
        home = copy_home(CORPUS / "codex-0.169.0", tmp_path / "h")
        summary = st.ingest([home], workers=2)  # forked workers parse and write
        assert summary.errors == 0 and summary.threads == 9
