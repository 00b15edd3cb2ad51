"""Shared fixtures: a store URL on SQLite and on PostgreSQL, corpora on disk.

PostgreSQL tests take their server from ROLLOUTS_TEST_POSTGRES_URL and create
and drop a database of their own. Without that variable they are skipped,
except under CI=true, where a missing or unreachable server is an error.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
CORPUS = FIXTURES / "corpus"
SHARED = Path(__file__).resolve().parents[2] / "shared"
PG_ENV = "ROLLOUTS_TEST_POSTGRES_URL"


def copy_home(src: Path, dst: Path) -> Path:
    """Copy a corpus CODEX_HOME and restore the file times Codex left."""
    shutil.copytree(src, dst)
    mt = dst / "mtimes.json"
    if mt.exists():
        for rel, ns in json.loads(mt.read_text()).items():
            p = dst / rel
            if p.exists():
                os.utime(p, ns=(ns, ns))
    return dst


def _pg_admin_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"CI=true but {PG_ENV} is not set: PostgreSQL tests must run in CI")
        return None
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.sqlite'}"
        return
    yield from _pg_database()


def _pg_database() -> Iterator[str]:
    admin = _pg_admin_url()
    if admin is None:
        pytest.skip(
            f"PostgreSQL tests need {PG_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test)"
        )
    import psycopg

    name = f"rollouts_t_{uuid.uuid4().hex[:12]}"
    conninfo = admin.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL at {PG_ENV} not reachable: {exc}")
    base = conninfo.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _pg_database()


@pytest.fixture
def home169(tmp_path: Path) -> Path:
    return copy_home(CORPUS / "codex-0.169.0", tmp_path / "home169")
