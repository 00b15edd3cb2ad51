#!/usr/bin/env python3
"""Live watch latency: write -> visible in the database, with ~1,000 active rollouts.

    .venv/bin/python benchmarks/bench_watch.py [--sessions 1111] [--writes 200] [--postgres URL]

1. Builds (or reuses) the scaled corpus of bench_import.py (/tmp/rollouts-bench-corpus-N,
   about 90 % of it under sessions/, i.e. ~1,000 active files for the default 1,111)
   and copies it to a scratch CODEX_HOME, since the benchmark appends to its files.
2. For SQLite (a fresh temp file) and, if a PostgreSQL URL is given (default: env
   ROLLOUTS_TEST_POSTGRES_URL), a fresh database rollouts_bench_watch_<pid>: starts a real
   `rollouts watch HOME --json` subprocess (inotify, then `--poll`), waits for its start-up
   import, then appends one complete line (a copy of the file's own last line) to a random
   active file, `--writes` times, one after another. Latency is the time from the end of
   the write until the file's indexed offset in `rollout_files` reaches the new size,
   polled every 2 ms from this process (what `rollouts list/show` read).
3. Prints p50/p99/max per database and mode, and a final one-line JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from bench_import import DEFAULT_SHARED, ensure_corpus  # noqa: E402
from sqlalchemy import Engine, select  # noqa: E402

from store import open_store  # noqa: E402
from store.sql import schema as s  # noqa: E402
from store.sql.engine import make_engine  # noqa: E402

VISIBLE_TIMEOUT = 10.0


def active_files(home: Path) -> list[Path]:
    return sorted((home / "sessions").rglob("rollout-*.jsonl"))


def last_line(path: Path) -> bytes:
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - (1 << 20)))
        lines = fh.read().splitlines(keepends=True)
    return lines[-1]


def indexed_offset(engine: Engine, rel: str) -> int:
    with engine.connect() as conn:
        value = conn.execute(
            select(s.rollout_files.c.offset).where(s.rollout_files.c.rel_path == rel)
        ).scalar()
    return int(value or 0)


def measure(url: str, home: Path, writes: int, poll: bool, seed: int) -> dict[str, float]:
    """Start `rollouts watch`, write, and time each write until it is indexed."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "ROLLOUTS_DB": url}
    cmd = [sys.executable, "-m", "cli.main", "watch", str(home), "--json"]
    if poll:
        cmd.append("--poll")
    t0 = time.perf_counter()
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        startup = json.loads(proc.stdout.readline())
        startup_s = time.perf_counter() - t0
        engine = make_engine(url)
        rng = random.Random(seed)
        files = active_files(home)
        lat: list[float] = []
        try:
            for _ in range(writes):
                path = rng.choice(files)
                rel = path.relative_to(home).as_posix()
                line = last_line(path)
                with path.open("ab") as fh:
                    fh.write(line)
                written = time.perf_counter()
                size = path.stat().st_size
                while indexed_offset(engine, rel) < size:
                    if time.perf_counter() - written > VISIBLE_TIMEOUT:
                        raise SystemExit(f"{rel} not indexed after {VISIBLE_TIMEOUT} s")
                    time.sleep(0.002)
                lat.append(time.perf_counter() - written)
                time.sleep(rng.uniform(0.01, 0.05))
        finally:
            engine.dispose()
            proc.terminate()
            proc.wait(30)
    lat.sort()
    return {
        "files": len(files),
        "writes": len(lat),
        "startup_s": startup_s,
        "startup_threads": startup["threads"],
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "max_ms": 1000 * lat[-1],
        "mean_ms": 1000 * statistics.fmean(lat),
    }


def bench(name: str, url: str, corpus: Path, writes: int, seed: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="rollouts-bench-watch-") as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(corpus, home)
        with open_store(url, auto_upgrade=True, codex_home=home) as st:
            st.ingest([home])  # the watch then starts from an indexed home, as on a restart
        for poll in (False, True):
            mode = "poll" if poll else "inotify"
            print(f"\n== {name} / {mode}: {writes} writes ...", flush=True)
            r = measure(url, home, writes, poll, seed)
            print(
                f"  {r['files']} active files; start-up {r['startup_s']:.2f} s\n"
                f"  write -> visible  p50 {r['p50_ms']:.0f} ms   p99 {r['p99_ms']:.0f} ms   "
                f"max {r['max_ms']:.0f} ms   mean {r['mean_ms']:.0f} ms"
            )
            out.append({"db": name, "mode": mode, **r})
    return out


def pg_database(admin: str) -> tuple[str, str]:
    import psycopg

    name = f"rollouts_bench_watch_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conninfo = admin.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return conninfo, f"{conninfo.rsplit('/', 1)[0]}/{name}"


def drop_pg(conninfo: str, url: str) -> None:
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sessions", type=int, default=1111, help="corpus size (~90%% active)")
    ap.add_argument("--writes", type=int, default=200)
    ap.add_argument("--postgres", default=os.environ.get("ROLLOUTS_TEST_POSTGRES_URL"))
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    corpus = ensure_corpus(a.shared, a.sessions, a.shared / "corpus", a.seed)
    results = []
    with tempfile.TemporaryDirectory(prefix="rollouts-bench-watch-db-") as tmp:
        results += bench("sqlite", f"sqlite:///{tmp}/bench.sqlite", corpus, a.writes, a.seed)
    if a.postgres:
        conninfo, url = pg_database(a.postgres)
        try:
            results += bench("postgresql", url, corpus, a.writes, a.seed)
        finally:
            drop_pg(conninfo, url)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
