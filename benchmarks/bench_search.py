#!/usr/bin/env python3
"""Search benchmark: a 10,000-session corpus, p50/p99 per query kind, index size.

    .venv/bin/python benchmarks/bench_search.py [--sessions 10000] [--postgres URL] [--runs 40]

1. Reuses or builds /tmp/rollouts-bench-corpus-<N>/ (bench_import.ensure_corpus,
   ../shared/tools/scale_corpus.py).
2. Per database (a fresh SQLite file; with a PostgreSQL URL, default env
   ROLLOUTS_TEST_POSTGRES_URL, a fresh database): imports the corpus once with
   the search index dropped (then rebuilds it with `reindex`, timed) and once
   with it in place, so the import cost of indexing is the difference.
3. Times `store.search()` (query, ranking, page of 25 hits with snippets) for
   word, phrase, prefix and substring queries, each without and with filters
   (active threads, last 180 days, user and agent messages), over a rotation
   of terms; prints p50/p99 in ms, the index size and its ratio to the corpus.
   `cpu p50` is the median CPU time of this process's thread per search: on
   SQLite that is the query's own work, and it is far less disturbed than the
   wall time when the machine is shared (on PostgreSQL the server's work is
   not in it).

--skip-import-cost: import once, with the index (no second import without it).
--db URL: only time the queries, on an existing store.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_import import DEFAULT_SHARED, corpus_stats, ensure_corpus, sqlite_size  # noqa: E402

from store import SqlThreadStore, open_store  # noqa: E402
from store.search import SearchFilters  # noqa: E402
from store.search import schema as search_schema  # noqa: E402
from store.search.when import parse_when  # noqa: E402
from store.sql.engine import write_tx  # noqa: E402

MB = 1_000_000
QUERIES: dict[str, tuple[bool, list[str]]] = {
    "word": (False, ["pagination", "deadlock", "kubernetes", "alembic", "profiler", "segfault"]),
    "phrase": (False, ['"memory leak"', '"please look"', '"bulk inserts"', '"retry logic"']),
    "prefix": (False, ["pagin*", "kube*", "regress*", "throughp*"]),
    "substring": (True, ["agination", "ocker", "emory lea", "_15.md", "compacti"]),
}


def _filters() -> SearchFilters:
    return SearchFilters(
        archived=False,
        since_ms=parse_when("180d"),
        item_types=("userMessage", "agentMessage"),
    )


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def time_queries(url: str, runs: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    with SqlThreadStore(url) as st:
        for kind, (substring, terms) in QUERIES.items():
            for label, filters in (("", SearchFilters()), (" +filters", _filters())):
                for t in terms:  # warm-up
                    st.search(t, substring=substring, filters=filters)
                times, cpu, hits = [], [], 0
                for n in range(runs):
                    t0, c0 = time.perf_counter(), time.thread_time()
                    page = st.search(terms[n % len(terms)], substring=substring, filters=filters)
                    times.append((time.perf_counter() - t0) * 1000)
                    cpu.append((time.thread_time() - c0) * 1000)
                    hits += len(page.hits)
                out[kind + label] = {
                    "p50_ms": statistics.median(times),
                    "p99_ms": _pct(times, 0.99),
                    "cpu_p50_ms": statistics.median(cpu),
                    "avg_hits": hits / runs,
                }
    return out


def import_timed(url: str, home: Path, *, with_index: bool) -> dict[str, float]:
    st = open_store(url, auto_upgrade=True)
    try:
        if not with_index:
            with write_tx(st.engine) as conn:
                for stmt in search_schema.drop_statements(conn.dialect.name):
                    conn.exec_driver_sql(stmt)
        t0 = time.perf_counter()
        st.ingest([home])
        out = {"ingest_s": time.perf_counter() - t0}
        if not with_index:
            t0 = time.perf_counter()
            st.reindex()
            out["reindex_s"] = time.perf_counter() - t0
        return out
    finally:
        st.close()


def pg_index_bytes(url: str) -> int:
    from sqlalchemy import text

    with open_store(url) as st, st.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT pg_total_relation_size('search_words')"
                    " + pg_relation_size('search_items_trgm')"
                )
            ).scalar_one()
        )


def sqlite_index_bytes(path: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        try:
            rows = conn.execute(
                "SELECT count(*) FROM dbstat WHERE name LIKE 'search\\_%' ESCAPE '\\'"
            ).fetchone()
            return int(rows[0]) * int(page)
        except sqlite3.OperationalError:  # no dbstat: compare with a copy without it
            return -1
    finally:
        conn.close()


def _import_modes(skip_import_cost: bool) -> tuple[bool, ...]:
    return (True,) if skip_import_cost else (False, True)


def report(
    name: str, size: int, imports: dict[str, Any], index_bytes: int, q: dict[str, Any]
) -> None:
    print(f"\n== {name}")
    if "without_index" in imports:
        cost = imports["with_index"]["ingest_s"] - imports["without_index"]["ingest_s"]
        print(
            f"import without index {imports['without_index']['ingest_s']:.2f} s, "
            f"with index {imports['with_index']['ingest_s']:.2f} s (+{cost:.2f} s, "
            f"{100 * cost / imports['without_index']['ingest_s']:.0f}%), "
            f"reindex {imports['without_index']['reindex_s']:.2f} s"
        )
    else:
        print(f"import with index {imports['with_index']['ingest_s']:.2f} s")
    if index_bytes >= 0:
        print(
            f"index {index_bytes / MB:.1f} MB = {index_bytes / size:.2f} x corpus ({size / MB:.1f} MB)"
        )
    report_queries("", q)


def report_queries(title: str, q: dict[str, Any]) -> None:
    if title:
        print(f"\n== {title}")
    print(f"{'query':22} {'p50 ms':>8} {'p99 ms':>8} {'cpu p50':>8} {'hits':>6}")
    for kind, v in q.items():
        print(
            f"{kind:22} {v['p50_ms']:8.2f} {v['p99_ms']:8.2f} {v['cpu_p50_ms']:8.2f}"
            f" {v['avg_hits']:6.1f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--postgres", default=os.environ.get("ROLLOUTS_TEST_POSTGRES_URL"))
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-import-cost", action="store_true", help="import once, with the index")
    ap.add_argument(
        "--db",
        help="time the queries on this existing store only (no corpus, no import), "
        "e.g. to repeat runs or compare two versions on the same data",
    )
    a = ap.parse_args()
    if a.db:
        report_queries(f"queries on {a.db}", time_queries(a.db, a.runs))
        return
    home = ensure_corpus(a.shared, a.sessions, a.shared / "corpus", a.seed)
    files, size = corpus_stats(home)
    print(f"corpus: {files} files, {size / MB:.1f} MB")
    with tempfile.TemporaryDirectory(prefix="rollouts-bench-search-") as tmp:
        imports: dict[str, Any] = {}
        for with_index in _import_modes(a.skip_import_cost):
            path = Path(tmp) / f"{'idx' if with_index else 'noidx'}.sqlite"
            key = "with_index" if with_index else "without_index"
            imports[key] = import_timed(f"sqlite:///{path}", home, with_index=with_index)
        path = Path(tmp) / "idx.sqlite"
        q = time_queries(f"sqlite:///{path}", a.runs)
        report("SQLite", size, imports, sqlite_index_bytes(path), q)
        print(f"(database file {sqlite_size(path) / MB:.1f} MB)")
    if a.postgres:
        import psycopg

        admin = a.postgres.replace("postgresql+psycopg://", "postgresql://")
        base = admin.rsplit("/", 1)[0]
        imports = {}
        names = []
        try:
            for with_index in _import_modes(a.skip_import_cost):
                name = f"rollouts_bench_search_{uuid.uuid4().hex[:8]}"
                names.append(name)
                with psycopg.connect(admin, autocommit=True) as c:
                    c.execute(f'CREATE DATABASE "{name}"')
                key = "with_index" if with_index else "without_index"
                imports[key] = import_timed(f"{base}/{name}", home, with_index=with_index)
            url = f"{base}/{names[-1]}"
            q = time_queries(url, a.runs)
            report("PostgreSQL", size, imports, pg_index_bytes(url), q)
        finally:
            with psycopg.connect(admin, autocommit=True) as c:
                for name in names:
                    c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
