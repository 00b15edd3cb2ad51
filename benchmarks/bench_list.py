#!/usr/bin/env python3
"""`thread/list` on 100,000 threads: p50/p99 in the library and over stdio JSON-RPC.

    .venv/bin/python benchmarks/bench_list.py [--threads 100000] [--postgres URL]

1. Builds a database of N threads with `make_threads` (below): the real
   sessions of ../shared/corpus are imported once into a template store, and
   their `threads` and `rollout_files` rows are copied N times with fresh ids
   and a realistic spread: 4 model providers (one of them NULL, the default),
   7 sources (cli, vscode, exec, sub-agents, custom), 60 working directories,
   creation times over a year with same-second ties, ~10% archived, ~5% named.
   Generated threads have no turns or items (thread/list never reads them).
   100k threads take ~15 s on SQLite instead of ~15 min through scale_corpus.py
   and `rollouts import`. The SQLite file is cached in /tmp.
2. Library: `list_threads` with the thread/list defaults (page of 50), first
   pages of each sortKey in both directions, deep pages (random cursors), and
   filtered pages (cwd, provider, searchTerm): p50 / p99 in ms.
3. JSON-RPC: `rollouts serve` over stdio (benchmarks/bench_server.py's client),
   one `thread/list` at a time: p50 / p99 round trip; then a flood of 10,000
   pipelined requests: every one must be answered (result or -32001), with the
   server's peak RSS.
Prints one block per database and a final one-line JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

from bench_import import DEFAULT_SHARED  # noqa: E402
from bench_server import Client, flood_report, latency, scratch_postgres  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from store import open_store  # noqa: E402
from store.sql import schema as s  # noqa: E402
from store.sql.engine import make_engine  # noqa: E402

PROVIDERS = [None, None, "openai", "openai", "openai", "mock", "azure"]
SOURCES = [
    ("vscode", '"vscode"'),
    ("vscode", '"vscode"'),
    ("cli", '"cli"'),
    ("cli", '"cli"'),
    ("exec", '"exec"'),
    ("subAgentReview", '{"subagent":"review"}'),
    ("custom", '{"custom":"chatgpt"}'),
]
CWDS = [f"/home/dev/src/project-{i:02d}" for i in range(60)]
YEAR_MS = 365 * 86_400_000
START_MS = 1_735_689_600_000  # 2025-01-01


def _uuid7(ms: int, rng: random.Random) -> str:
    b = bytearray(ms.to_bytes(6, "big") + rng.getrandbits(80).to_bytes(10, "big"))
    b[6] = (b[6] & 0x0F) | 0x70
    b[8] = (b[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(b)))


def _templates(shared: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Thread and file rows of the real corpus sessions, imported into a scratch store."""
    with tempfile.TemporaryDirectory(prefix="rollouts-bench-list-tpl-") as tmp:
        url = f"sqlite:///{tmp}/tpl.sqlite"
        homes = sorted(p for p in (shared / "corpus").iterdir() if (p / "sessions").is_dir())
        with open_store(url, auto_upgrade=True, codex_home=Path(tmp)) as st:
            st.ingest(homes)
            with st.engine.connect() as conn:
                threads = [dict(r) for r in conn.execute(select(s.threads)).mappings()]
                files = {r["id"]: dict(r) for r in conn.execute(select(s.rollout_files)).mappings()}
    pairs = [(t, files[t["live_file_id"]]) for t in threads if t["live_file_id"] in files]
    return [t for t, _ in pairs], [f for _, f in pairs]


def make_threads(url: str, n: int, shared: Path, seed: int = 1) -> None:
    """Fill an empty, upgraded store at `url` with `n` generated threads."""
    tpl_threads, tpl_files = _templates(shared)
    rng = random.Random(seed)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            root_id = conn.execute(
                insert(s.roots).values(path="/bench/codex-home", added_at_ms=START_MS)
            ).inserted_primary_key[0]
            made = 0
            while made < n:
                threads, files, names = [], [], []
                for _ in range(min(5000, n - made)):
                    i = rng.randrange(len(tpl_threads))
                    t, f = dict(tpl_threads[i]), dict(tpl_files[i])
                    created = START_MS + rng.randrange(YEAR_MS)
                    if made and rng.random() < 0.05:  # same-second ties with an earlier thread
                        created = threads[-1]["created_at_ms"] if threads else created
                    tid = _uuid7(created, rng)
                    updated = created + rng.randrange(3_600_000)
                    kind, source = rng.choice(SOURCES)
                    archived = rng.random() < 0.1
                    day = time.strftime("%Y/%m/%d", time.gmtime(created / 1000))
                    stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime(created / 1000))
                    folder = "archived_sessions" if archived else f"sessions/{day}"
                    made += 1
                    fid = made
                    t.update(
                        id=tid,
                        session_id=None,
                        forked_from_id=None,
                        parent_thread_id=None,
                        history_parent_id=None,  # generated threads have no history
                        history_turns=0,
                        history_line_shift=0,
                        model_provider=rng.choice(PROVIDERS),
                        source=source,
                        source_kind=kind,
                        cwd=rng.choice(CWDS),
                        created_at_ms=created,
                        created_at_s=created // 1000,
                        updated_at_ms=updated,
                        recency_at_ms=max(updated, created + rng.randrange(7_200_000)),
                        archived=archived,
                        archived_at_ms=updated if archived else None,
                        live_file_id=fid,
                        preview=f"{t['preview'][:200]} #{made}" if t["preview"] else "",
                    )
                    f.update(
                        id=fid,
                        root_id=root_id,
                        rel_path=f"{folder}/rollout-{stamp}-{tid}.jsonl",
                        thread_id=tid,
                        rollout_id=tid,
                        archived=archived,
                    )
                    threads.append(t)
                    files.append(f)
                    if rng.random() < 0.05:
                        names.append({"thread_id": tid, "name": f"named thread {made}"})
                conn.execute(insert(s.threads), threads)
                conn.execute(insert(s.rollout_files), files)
                if names:
                    conn.execute(insert(s.thread_names), names)
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("ANALYZE")
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()


def _pct(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {
        "p50_ms": statistics.median(times),
        "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
    }


def explain(url: str, home: Path) -> dict[str, list[str]]:
    """The query plan of a first and a later page for each sortKey and direction.

    Prints the line that reads `threads`: it must name the keyset index of the
    sort key (and, with a cursor, start the scan at the cursor).
    """
    from store.sql import listing
    from store.sql.backend import _THREAD_PAGE
    from store.sql.listing import ListQuery

    plans: dict[str, list[str]] = {}
    with open_store(url, codex_home=home) as st:
        dialect = st.engine.dialect.name
        for key in ("created_at", "updated_at", "recency_at"):
            for d in ("desc", "asc"):
                page = st.list_threads(limit=100, sort_key=key, sort_direction=d)
                for cursor in (None, page["nextCursor"]):
                    q = ListQuery(cursor=cursor, sort_key=key, sort_direction=d)
                    q.default_provider = st.default_provider
                    stmt, values = listing.page_statement(q, dialect, _THREAD_PAGE, 51)
                    sql = stmt.params(values).compile(
                        st.engine, compile_kwargs={"literal_binds": True}
                    )
                    pre = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "
                    with st.engine.connect() as conn:
                        rows = [str(r[-1]) for r in conn.exec_driver_sql(pre + str(sql))]
                    label = f"{key} {d}" + (" (cursor)" if cursor else "")
                    plans[label] = rows
                    scan = next((r.strip() for r in rows if "threads" in r), rows[0].strip())
                    print(f"   plan {label:28} {scan}", flush=True)
    return plans


def library(url: str, home: Path, requests: int) -> dict[str, Any]:
    rng = random.Random(2)
    out: dict[str, Any] = {}
    with open_store(url, codex_home=home) as st:
        cwds = CWDS[:5]

        def run(label: str, make: Any) -> None:
            for _ in range(20):
                st.list_threads(**make())
            times = []
            for _ in range(requests):
                params = make()
                t0 = time.perf_counter()
                page = st.list_threads(**params)
                times.append((time.perf_counter() - t0) * 1000)
                assert page["data"] or params.get("cursor") or params.get("search_term"), label
            out[label] = _pct(times)
            m = out[label]
            print(f"   {label:34} p50 {m['p50_ms']:6.2f} ms  p99 {m['p99_ms']:6.2f} ms", flush=True)

        run("default (created_at desc)", lambda: {"limit": 50})
        for key in ("created_at", "updated_at", "recency_at"):
            for d in ("desc", "asc"):
                run(
                    f"{key} {d}",
                    lambda k=key, d=d: {"limit": 50, "sort_key": k, "sort_direction": d},
                )
        # Deep pages: cursors taken from a walk over the default listing.
        cursors = []
        cursor = None
        for _ in range(200):
            page = st.list_threads(limit=100, cursor=cursor)
            cursor = page["nextCursor"]
            if cursor is None:
                break
            cursors.append(cursor)
        run("deep page (random cursor)", lambda: {"limit": 50, "cursor": rng.choice(cursors)})
        run("cwd filter", lambda: {"limit": 50, "cwd": rng.choice(cwds)})
        run(
            "modelProviders [mock, azure]",
            lambda: {"limit": 50, "model_providers": ["mock", "azure"]},
        )
        requests = max(20, requests // 10)  # a substring search reads every row
        run("searchTerm (rare)", lambda: {"limit": 50, "search_term": f"#{rng.randrange(99999)}7"})
        with st.engine.connect() as conn:
            out["threads"] = conn.execute(select(func.count()).select_from(s.threads)).scalar_one()
    return out


def rpc(url: str, home: Path, requests: int, flood_n: int) -> dict[str, Any]:
    c = Client(url, home)
    try:
        assert "result" in c.call("initialize", {"clientInfo": {"name": "bench", "version": "1"}})
        reqs = [{"method": "thread/list", "params": {"limit": 50}} for _ in range(requests)]
        out: dict[str, Any] = {"thread/list": latency(c, "thread/list", reqs)}
        m = out["thread/list"]
        print(
            f"   {'JSON-RPC thread/list (page of 50)':34} p50 {m['p50_ms']:6.2f} ms  "
            f"p99 {m['p99_ms']:6.2f} ms",
            flush=True,
        )
        out.update(flood_report(c, [reqs[0]] * flood_n))
    finally:
        c.close()
    return out


def bench(name: str, url: str, home: Path, args: argparse.Namespace, build: bool) -> dict[str, Any]:
    if build:
        print(f"\n== {name}: generating {args.threads} threads ...", flush=True)
        open_store(url, auto_upgrade=True, codex_home=home).close()
        t0 = time.perf_counter()
        make_threads(url, args.threads, args.shared)
        print(f"   generated in {time.perf_counter() - t0:.1f}s", flush=True)
    else:
        print(f"\n== {name}: reusing {url}", flush=True)
    if args.explain:
        explain(url, home)  # printed, not in the JSON summary
    out = library(url, home, args.requests)
    out["rpc"] = rpc(url, home, args.requests, args.flood)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=1000, help="per measure")
    ap.add_argument("--flood", type=int, default=10_000)
    ap.add_argument("--postgres", default=os.environ.get("ROLLOUTS_TEST_POSTGRES_URL"))
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    ap.add_argument("--explain", action="store_true", help="print the query plans first")
    args = ap.parse_args()
    home = Path(tempfile.gettempdir()) / "rollouts-bench-list-home"
    home.mkdir(exist_ok=True)  # an empty CODEX_HOME: default provider "openai"
    results: dict[str, Any] = {}
    db = Path(tempfile.gettempdir()) / f"rollouts-bench-list-{args.threads}.sqlite"
    marker = db.with_suffix(".complete")
    if not marker.exists():
        for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            p.unlink(missing_ok=True)
    else:  # a cached database from an older version: bring its schema up to date
        with open_store(f"sqlite:///{db}", auto_upgrade=True, codex_home=home):
            pass
    results["sqlite"] = bench("SQLite", f"sqlite:///{db}", home, args, not marker.exists())
    marker.touch()
    if args.postgres:
        with scratch_postgres(args.postgres, "rollouts_bench_list") as url:
            results["postgresql"] = bench("PostgreSQL", url, home, args, True)
    print("\nBENCH_LIST " + json.dumps({"threads": args.threads, **results}))


if __name__ == "__main__":
    main()
