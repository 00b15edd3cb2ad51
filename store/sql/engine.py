"""Engines for SQLite and PostgreSQL, with every dialect difference named here.

SQLite PRAGMAs (set on every new connection):
- journal_mode=WAL: readers never block the writer and vice versa;
- synchronous=NORMAL: durable at checkpoints, safe against corruption in WAL mode,
  and several times faster than FULL for bulk ingest;
- busy_timeout: a second process waits for the write lock instead of failing
  with "database is locked";
- foreign_keys=ON: SQLite leaves them off by default; we rely on cascades.
Write transactions on SQLite start with BEGIN IMMEDIATE (the `write` execution
option) so that two writers queue on the lock at BEGIN rather than failing
with SQLITE_BUSY when one upgrades a read lock mid-transaction.

Connections are pooled on both databases (a new SQLite connection and its
PRAGMAs cost more than a whole thread/list page). A forked child (ingest's
parser workers) must never use a connection its parent opened: every engine
made here forgets its pool in the child at fork time, without closing the
parent's connections (`Engine.dispose(close=False)`).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from store import codec
from store.errors import InvalidInput

SQLITE_BUSY_TIMEOUT_MS = 120_000

_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _forget_pools_in_child() -> None:
    for engine in list(_ENGINES):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_pools_in_child)


def normalize_url(url: str) -> str:
    """Accept `postgres://` and `postgresql://` (psycopg 3 is our driver)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def dialect_of(url: str) -> str:
    try:
        return make_url(normalize_url(url)).get_backend_name()
    except ArgumentError as exc:
        raise InvalidInput(f"not a database URL: {url!r} ({exc})") from None


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidInput(f"not a database URL: {url!r} ({exc})") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = _sqlite_engine(url, parsed.database)
    elif backend == "postgresql":
        engine = create_engine(
            url,
            json_serializer=codec.dumps,
            json_deserializer=codec.loads,
            # No pre-ping (a round trip per checkout, more than a page of
            # thread/list costs): a connection the server dropped fails its
            # statement once, and SQLAlchemy then discards the whole pool.
        )
    else:
        raise InvalidInput(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")
    _ENGINES.add(engine)
    return engine


def _sqlite_engine(url: str, database: str | None) -> Engine:
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        json_serializer=codec.dumps,
        json_deserializer=codec.loads,
        # SQLAlchemy's default pool: a QueuePool for a file (a connection is
        # used by one thread at a time, hence check_same_thread=False), a
        # SingletonThreadPool for :memory:.
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        # Larger page cache for bulk ingest (negative = KiB).
        cur.execute("PRAGMA cache_size=-65536")
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A write transaction; on PostgreSQL serialized by an advisory lock.

    Writers of both dialects queue here, so two importers never interleave
    their check-then-write steps (see store.ingest).
    """
    with engine.connect() as conn, write_tx_on(conn) as wconn:
        yield wconn


@contextmanager
def write_tx_on(conn: Connection) -> Iterator[Connection]:
    """A write transaction on a connection the caller keeps (a long-lived writer)."""
    conn = conn.execution_options(write=True)
    with conn.begin():
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7319045120331)")
        yield conn


def read_connection(engine: Engine) -> Connection:
    """A connection for one read statement: on PostgreSQL in autocommit mode.

    A single SELECT sees one snapshot either way; autocommit saves the BEGIN
    and ROLLBACK round trips around it (two of the three per thread/list page).
    """
    conn = engine.connect()
    if engine.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
    return conn


def snapshot_connection(engine: Engine) -> Connection:
    """A connection whose statements, until it commits or closes, all read one snapshot.

    For reads of a thread's history in several statements (store.sql.history:
    where the rows are, then the rows): a parent's rows handed to its forks by
    a concurrent writer must not be missed in between. SQLite's read
    transaction is one snapshot already (WAL); PostgreSQL's default (READ
    COMMITTED) takes one per statement, so it reads in REPEATABLE READ.
    """
    conn = engine.connect()
    if engine.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


def default_sqlite_url(codex_home: Path) -> str:
    return f"sqlite:///{codex_home / 'rollouts.sqlite'}"


