"""A big first import (the bulk paths of store.ingest and store.search.schema).

It parses and writes in worker processes, writes set-based, fills the
search index once per batch (SQLite) and, on PostgreSQL, builds the trigram
index once at the end. What it stores must be exactly what a rebuild from
`items` gives, checked with benchmarks/db_digest.py (every row of every table
and every token of the search index).
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import text

from store import open_store
from store.ingest import PARALLEL_MIN_BYTES
from store.sql.engine import make_engine
from tests.cli_run import REPO, cli_argv, cli_env, rollouts
from tests.conftest import CORPUS, SHARED, copy_home


def _digest_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("db_digest", REPO / "benchmarks" / "db_digest.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _big_home(tmp_path: Path, sessions: int = 700) -> Path:
    tool = SHARED / "tools" / "scale_corpus.py"
    if not tool.exists():
        pytest.skip(f"{tool} is missing")
    home = tmp_path / "home"
    subprocess.run(
        [sys.executable, str(tool), str(SHARED / "corpus"), str(home), "--sessions", str(sessions)],
        check=True,
        capture_output=True,
    )
    size = sum(p.stat().st_size for p in home.rglob("*.jsonl"))
    assert size >= PARALLEL_MIN_BYTES, size  # big enough for the parallel, deferred path
    return home


def _trigram_index_present(url: str) -> bool:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return bool(
                conn.execute(text("SELECT to_regclass('search_items_trgm') IS NOT NULL")).scalar()
            )
    finally:
        engine.dispose()


def test_big_first_import_stores_what_a_rebuild_gives(db_url: str, tmp_path: Path) -> None:
    home = _big_home(tmp_path)
    with open_store(db_url, auto_upgrade=True) as st:
        summary = st.ingest([home])
        assert summary.errors == 0 and summary.threads == 700
    if db_url.startswith("postgresql"):
        assert _trigram_index_present(db_url)
    digest = _digest_module().digest
    after_import = digest(db_url)
    # `rollouts db reindex` drops the index and fills it again from `items` in one pass.
    proc = rollouts(home, db_url, "db", "reindex")
    assert proc.returncode == 0, proc.stderr
    assert digest(db_url) == after_import
    # A second import of the same files changes nothing.
    with open_store(db_url) as st:
        again = st.ingest([home])
    assert again.unchanged == 700 and again.threads == 0
    assert digest(db_url) == after_import


def test_an_import_rebuilds_a_missing_trigram_index(pg_url: str, tmp_path: Path) -> None:
    """A big import that died between dropping and rebuilding the index is repaired by the next."""
    home = copy_home(CORPUS / "codex-0.169.0", tmp_path / "home")
    with open_store(pg_url, auto_upgrade=True) as st:
        st.ingest([home])
        with st.engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX search_items_trgm")
        assert not _trigram_index_present(pg_url)
        st.ingest([home])
    assert _trigram_index_present(pg_url)


def _count_threads(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM threads")).scalar_one())
    except Exception:  # the schema is not there yet
        return 0
    finally:
        engine.dispose()


def _interrupted(home: Path, url: str, *args: str) -> tuple[int, str, str]:
    """Run `rollouts ARGS` on a fresh schema; Ctrl-C it once it has written a thread."""
    assert rollouts(home, url, "db", "upgrade").returncode == 0
    proc = subprocess.Popen(
        cli_argv(*args),
        env=cli_env(home, url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while _count_threads(url) == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, errors = proc.communicate(timeout=120)
    return proc.returncode, out, errors


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_stops_an_import_cleanly_and_the_next_one_finishes_it(
    workers: str, tmp_path: Path
) -> None:
    """SIGINT mid-import: exit 130 with whole threads written; a re-run ends where one run would."""
    home, url = _big_home(tmp_path, sessions=2500), f"sqlite:///{tmp_path / 'db.sqlite'}"
    code, out, errors = _interrupted(home, url, "import", "--json", "--workers", workers)
    assert code == 130, (code, errors)
    assert "Traceback" not in errors and "interrupted after" in errors, errors
    assert 0 < json.loads(out)["threads"] < 2500
    partial = _count_threads(url)
    assert 0 < partial < 2500
    proc2 = rollouts(home, url, "import", "--json")
    assert proc2.returncode == 0, proc2.stderr
    assert json.loads(proc2.stdout)["threads"] == 2500 - partial
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    with open_store(fresh, auto_upgrade=True) as st:
        assert st.ingest([home]).threads == 2500
    digest = _digest_module().digest
    assert digest(url) == digest(fresh)


def test_ctrl_c_stops_the_watch_start_up_import(tmp_path: Path) -> None:
    """`rollouts watch` on a big new home: Ctrl-C during its first import ends it early, exit 0."""
    home, url = _big_home(tmp_path, sessions=2500), f"sqlite:///{tmp_path / 'db.sqlite'}"
    code, out, errors = _interrupted(home, url, "watch", str(home), "--json", "--poll")
    assert code == 0, errors
    assert "Traceback" not in errors and "stopped" in errors, errors
    startup = json.loads(out.splitlines()[0])
    assert startup["startup"] is True and 0 < startup["threads"] < 2500
    assert _count_threads(url) == startup["threads"]
