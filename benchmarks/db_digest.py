#!/usr/bin/env python3
"""A digest of everything an import stores, to prove two imports stored the same data.

    .venv/bin/python benchmarks/db_digest.py URL [URL ...]

Prints one sha256 per table and one for the whole database; with several URLs,
says whether they all agree (exit 1 if not). Rows are hashed in a stable order,
with surrogate keys replaced by what they point at (a file id by its root path and
rel_path, an item id by its thread and position) and the wall-clock times of the
import left out (`roots.added_at_ms`, `rollout_files.indexed_at_ms`), so two
imports of one corpus agree whatever order they wrote threads in.

The search index is part of the digest: on SQLite every token instance of both
FTS5 tables (term, item, column, offset; read through fts5vocab), after FTS5's
own `integrity-check` against `items`; on PostgreSQL every `search_words` tsvector.
Everything streams: no table is held in memory.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Connection, text

import store.archive.tables  # noqa: F401  (registers the archive tables)
from store.sql.engine import make_engine
from store.sql.schema import metadata

VOLATILE = {"added_at_ms", "indexed_at_ms", "vaulted_at_ms"}
# Per table: the SELECT list (surrogate keys replaced) and the stable ORDER BY.
# Tables not listed are hashed with every column but their surrogate `id`.
_FILE = "(SELECT r.path || '/' || f.rel_path FROM rollout_files f JOIN roots r ON r.id = f.root_id WHERE f.id = {col})"
SPECIAL: dict[str, tuple[str, str]] = {
    "roots": ("path, index_offset, index_head", "path"),
    "rollout_files": (
        "(SELECT path FROM roots WHERE roots.id = root_id) AS root, rel_path, thread_id, "
        "rollout_id, is_segment, compressed, archived, size, mtime_ns, head_len, head_hash, "
        '"offset", line_count, last_ordinal, skipped_lines, base_rollout_id, base_end_offset, '
        "line_kinds",
        "root, rel_path",
    ),
    "threads": ("*", "id"),
    "skipped_lines": (
        f"{_FILE.format(col='file_id')} AS file, line, byte_offset, length, reason",
        "file, line",
    ),
    "turns": ("*", "thread_id, position"),
    "items": (
        "thread_id, turn_position, position, item_id, item_type, line, created_at_ms, data, "
        "search_text",
        "thread_id, position",
    ),
    "thread_names": (
        "thread_id, name, updated_at, (SELECT path FROM roots WHERE roots.id = root_id)",
        "thread_id",
    ),
}


def _rows_hash(rows: Iterable[Any]) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    for row in rows:
        h.update(repr(tuple(row)).encode())
        h.update(b"\n")
        n += 1
    return h.hexdigest(), n


def _stream(conn: Connection, sql: str) -> Iterator[Any]:
    yield from conn.execution_options(stream_results=True, yield_per=2000).execute(text(sql))


def _table_sql(conn: Connection, name: str) -> str:
    if name in SPECIAL:
        cols, order = SPECIAL[name]
        if name == "threads":
            cols = (
                ", ".join(c.name for c in metadata.tables[name].c if c.name != "live_file_id")
                + ", "
                + _FILE.format(col="live_file_id")
                + " AS live_file"
            )
        return f"SELECT {cols} FROM {name} ORDER BY {order}"
    table = metadata.tables[name]
    cols = [c.name for c in table.c if c.name not in VOLATILE and c.name != "id"]
    quoted = ", ".join(f'"{c}"' for c in cols)
    return f"SELECT {quoted} FROM {name} ORDER BY {quoted}"


def _search_parts(conn: Connection) -> Iterator[tuple[str, str]]:
    if conn.dialect.name == "sqlite":
        for fts in ("search_words", "search_trigrams"):
            # Raises if the index and `items` disagree (rank 1: check the content too).
            conn.exec_driver_sql(f"INSERT INTO {fts}({fts}, rank) VALUES ('integrity-check', 1)")
            conn.exec_driver_sql(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.digest_{fts} "
                f"USING fts5vocab(main, {fts}, instance)"
            )
            yield (
                fts,
                f'SELECT i.thread_id, i.position, v.term, v.col, v."offset" '
                f"FROM temp.digest_{fts} v JOIN items i ON i.id = v.doc "
                f'ORDER BY i.thread_id, i.position, v."offset", v.term',
            )
    else:
        yield (
            "search_words",
            "SELECT i.thread_id, i.position, w.tsv::text FROM search_words w "
            "JOIN items i ON i.id = w.id ORDER BY i.thread_id, i.position",
        )
        yield (
            "search_words_orphans",
            "SELECT count(*) FROM search_words w "
            "WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.id = w.id)",
        )


def digest(url: str) -> dict[str, tuple[str, int]]:
    engine = make_engine(url)
    out: dict[str, tuple[str, int]] = {}
    try:
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                out[table.name] = _rows_hash(_stream(conn, _table_sql(conn, table.name)))
            for name, sql in _search_parts(conn):
                out[name] = _rows_hash(_stream(conn, sql))
            conn.rollback()
    finally:
        engine.dispose()
    return out


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    results = []
    for url in argv:
        d = digest(url)
        whole = hashlib.sha256("".join(h for h, _ in d.values()).encode()).hexdigest()
        results.append(whole)
        print(f"{url}")
        for name, (h, n) in d.items():
            print(f"  {name:24s} {n:10d} rows  {h[:16]}")
        print(f"  {'database':24s} {'':10s}       {whole}")
    if len(results) > 1:
        same = len(set(results)) == 1
        print("SAME" if same else "DIFFERENT")
        return 0 if same else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
