#!/usr/bin/env python3
"""End-to-end import benchmark: a synthetic CODEX_HOME of N sessions into SQLite/PostgreSQL.

    .venv/bin/python benchmarks/bench_import.py [--sessions 10000] [--postgres URL]

1. Builds (or reuses) a corpus under /tmp/rollouts-bench-corpus-<N>/ with
   ../shared/tools/scale_corpus.py from the real rollouts in ../shared/corpus.
2. For SQLite (fresh temp file) and, if a PostgreSQL URL is given (default: env
   ROLLOUTS_TEST_POSTGRES_URL), a fresh database rollouts_bench_<pid>, runs a full
   import in a subprocess, then a second import with nothing changed in another one.
   Only the `ingest()` call is timed (schema creation is not). Peak RSS is reported
   from getrusage() in the importing process (RUSAGE_SELF) and for its worker
   processes (RUSAGE_CHILDREN: the largest single child), plus the largest sum of RSS
   over the whole process tree, sampled from /proc every 50 ms by this script.
3. Prints one block per database and a final one-line JSON summary.

MB here means 10**6 bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TREE = REPO  # the source tree that imports (--tree: compare with another checkout)
DEFAULT_SHARED = REPO.parent / "shared"
MB = 1_000_000

# --- the importing child ----------------------------------------------------------------

CHILD_CODE = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from store import open_store
url, home, workers = sys.argv[2], sys.argv[3], sys.argv[4]
workers = None if workers == "auto" else int(workers)
t0 = time.perf_counter()
st = open_store(url, auto_upgrade=True)
t1 = time.perf_counter()
summary = st.ingest([home], workers=workers)
t2 = time.perf_counter()
st.close()
out = summary.to_json()
details = out.pop("error_details", [])
out["error_details_head"] = details[:5]
me = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
print("BENCH_RESULT " + json.dumps({
    "open_s": t1 - t0, "ingest_s": t2 - t1, "summary": out,
    "rss_self_mb": me.ru_maxrss * 1024 / 1e6, "rss_children_mb": kids.ru_maxrss * 1024 / 1e6,
    "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
}), flush=True)
"""


class ImportFailed(RuntimeError):
    pass


def _tree_rss_bytes(root: int) -> tuple[int, int]:
    """Sums of RSS and of PSS over `root` and all its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        parents[int(d)] = int(fields[1])
        rss[int(d)] = int(fields[21]) * page
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == p and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(rss.get(p, 0) for p in tree), sum(_pss_bytes(p) for p in tree)


def _pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages (a forked worker's copy of the parent) split."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_import(url: str, home: Path, workers: str) -> dict:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_CODE, str(TREE), url, str(home), workers],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = peak_pss = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak, peak_pss
        while not stop.is_set():
            with contextlib.suppress(OSError):
                rss, pss = _tree_rss_bytes(proc.pid)
                peak, peak_pss = max(peak, rss), max(peak_pss, pss)
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    if Path("/proc/self/stat").exists():
        sampler.start()
    t0 = time.perf_counter()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    if sampler.is_alive():
        sampler.join()
    lines = [ln for ln in out.splitlines() if ln.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(err)
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise ImportFailed(f"import failed (exit {proc.returncode}): {last}")
    res = json.loads(lines[-1][len("BENCH_RESULT ") :])
    res["process_wall_s"] = wall
    res["rss_tree_sampled_mb"] = peak / MB
    res["pss_tree_sampled_mb"] = peak_pss / MB
    res["rss_peak_mb"] = max(res["rss_self_mb"], res["rss_children_mb"])
    if err.strip():
        res["stderr_tail"] = err.strip().splitlines()[-5:]
    return res


# --- corpus -----------------------------------------------------------------------------


def corpus_stats(home: Path) -> tuple[int, int]:
    n = size = 0
    for dirpath, _dirs, files in os.walk(home):
        for f in files:
            if f.endswith(".jsonl"):
                n += 1
                size += os.path.getsize(os.path.join(dirpath, f))
    return n, size


def ensure_corpus(shared: Path, sessions: int, templates: Path, seed: int) -> Path:
    tool = shared / "tools" / "scale_corpus.py"
    name = f"rollouts-bench-corpus-{sessions}"
    if templates.resolve() != (shared / "corpus").resolve() or seed != 1:
        key = hashlib.sha256(f"{templates.resolve()}|{seed}".encode()).hexdigest()[:8]
        name += f"-{key}"  # another corpus: its own cache
    home = Path(tempfile.gettempdir()) / name
    marker = home / ".bench-complete"
    if marker.exists():
        print(f"corpus: reusing {home}")
        return home
    if not tool.exists() or not templates.is_dir():
        raise SystemExit(
            f"cannot build the corpus: need {tool} and template rollouts in {templates}.\n"
            f"The shared folder ({shared}) is missing or incomplete; pass --shared DIR."
        )
    tmp = home.with_name(home.name + f".building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"corpus: building {sessions} sessions from {templates} ...", flush=True)
    t0 = time.perf_counter()
    res = subprocess.run(
        [
            sys.executable,
            str(tool),
            str(templates),
            str(tmp),
            "--sessions",
            str(sessions),
            "--seed",
            str(seed),
        ],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SystemExit(f"scale_corpus.py failed:\n{res.stderr}")
    (tmp / ".bench-complete").write_text(res.stdout)
    shutil.rmtree(home, ignore_errors=True)
    tmp.rename(home)
    print(f"corpus: built in {time.perf_counter() - t0:.1f}s -> {home}")
    return home


# --- databases --------------------------------------------------------------------------


def sqlite_size(path: Path) -> int:
    return sum(
        p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
    )


def bench_db(name: str, url: str, home: Path, files: int, size: int, workers: str, db_size) -> dict:
    print(f"\n== {name}: first import ...", flush=True)
    try:
        first = run_import(url, home, workers)
        print(f"== {name}: second import (nothing changed) ...", flush=True)
        second = run_import(url, home, workers)
    except ImportFailed as exc:
        print(f"  FAILED: {exc}")
        return {"db": name, "error": str(exc)}
    s = first["summary"]
    r = {
        "db": name,
        "mb_per_s": size / MB / first["ingest_s"],
        "sessions_per_s": files / first["ingest_s"],
        "ingest_s": first["ingest_s"],
        "open_s": first["open_s"],
        "second_run_s": second["ingest_s"],
        "cpu_s": first["cpu_s"],
        "rss_self_mb": first["rss_self_mb"],
        "rss_children_mb": first["rss_children_mb"],
        "rss_peak_mb": first["rss_peak_mb"],
        "rss_tree_sampled_mb": first["rss_tree_sampled_mb"],
        "pss_tree_sampled_mb": first["pss_tree_sampled_mb"],
        "second_rss_peak_mb": second["rss_peak_mb"],
        "threads": s["threads"],
        "turns": s["turns"],
        "items": s["items"],
        "files": s["files"],
        "bytes": s["bytes"],
        "skipped_lines": s["skipped_lines"],
        "errors": s["errors"],
        "second_summary": {
            k: second["summary"][k] for k in ("files", "threads", "unchanged", "errors")
        },
        "db_size_mb": db_size() / MB,
    }
    print(
        f"  ingest            {r['ingest_s']:8.2f} s   (open/schema {r['open_s']:.2f} s, not timed)"
    )
    print(f"  throughput        {r['mb_per_s']:8.1f} MB/s   {r['sessions_per_s']:8.0f} sessions/s")
    print(f"  CPU time          {r['cpu_s']:8.2f} s   (user+sys, importer and its workers)")
    print(f"  second run        {r['second_run_s']:8.2f} s   {r['second_summary']}")
    print(
        f"  peak RSS          {r['rss_peak_mb']:8.1f} MB   (self {r['rss_self_mb']:.1f}, "
        f"largest child {r['rss_children_mb']:.1f}, tree sum sampled "
        f"{r['rss_tree_sampled_mb']:.1f}, tree PSS sampled {r['pss_tree_sampled_mb']:.1f})"
    )
    print(
        f"  counts            threads {r['threads']}  turns {r['turns']}  items {r['items']}  "
        f"files {r['files']}"
    )
    print(f"  skipped / errors  {r['skipped_lines']} / {r['errors']}")
    if s["errors"]:
        print(f"  first errors      {s['error_details_head']}")
    print(f"  database size     {r['db_size_mb']:8.1f} MB")
    return r


def bench_postgres(base_url: str, home: Path, files: int, size: int, workers: str) -> dict:
    import psycopg
    from psycopg import sql

    dbname = f"rollouts_bench_{os.getpid()}"
    admin_url = base_url.rsplit("/", 1)[0] + "/postgres"
    url = base_url.rsplit("/", 1)[0] + "/" + dbname
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    try:

        def db_size() -> int:
            with psycopg.connect(admin_url, autocommit=True) as c:
                return c.execute("SELECT pg_database_size(%s)", (dbname,)).fetchone()[0]

        return bench_db("postgresql", url, home, files, size, workers, db_size)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument(
        "--postgres",
        default=os.environ.get("ROLLOUTS_TEST_POSTGRES_URL"),
        help="server URL, e.g. postgresql://postgres@127.0.0.1:5432/test "
        "(default: $ROLLOUTS_TEST_POSTGRES_URL); a fresh database is created",
    )
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument(
        "--workers", default="auto", help="ingest(workers=...); default: store's choice"
    )
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    ap.add_argument(
        "--templates",
        type=Path,
        default=None,
        help="template rollouts for scale_corpus.py (default: SHARED/corpus)",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--tree",
        type=Path,
        default=REPO,
        help="source tree whose `store` imports (default: this one; e.g. a main checkout)",
    )
    a = ap.parse_args()
    global TREE
    TREE = a.tree.resolve()
    if not a.shared.is_dir():
        raise SystemExit(
            f"{a.shared} is missing: it holds tools/scale_corpus.py and the template "
            f"rollouts needed to build the benchmark corpus (pass --shared DIR)."
        )
    templates = a.templates or a.shared / "corpus"
    home = ensure_corpus(a.shared, a.sessions, templates, a.seed)
    files, size = corpus_stats(home)
    print(
        f"corpus: {home}  {files} files  {size / MB:.1f} MB  (cpus: {os.cpu_count()}, "
        f"workers: {a.workers})"
    )

    results = []
    if not a.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="rollouts-bench-") as d:
            db = Path(d) / "bench.sqlite"
            results.append(
                bench_db(
                    "sqlite",
                    f"sqlite:///{db}",
                    home,
                    files,
                    size,
                    a.workers,
                    lambda: sqlite_size(db),
                )
            )
    if a.postgres:
        results.append(bench_postgres(a.postgres, home, files, size, a.workers))
    else:
        print("\n(postgresql skipped: pass --postgres URL or set ROLLOUTS_TEST_POSTGRES_URL)")

    def rnd(v):
        return round(v, 2) if isinstance(v, float) else v

    failed = [r["db"] for r in results if "error" in r]
    print(
        "\n"
        + json.dumps(
            {
                "sessions": a.sessions,
                "files": files,
                "corpus_mb": round(size / MB, 1),
                "results": [
                    {k: rnd(v) for k, v in r.items() if k != "second_summary"} for r in results
                ],
            }
        )
    )
    if failed:
        raise SystemExit(f"import failed for: {', '.join(failed)}")


if __name__ == "__main__":
    main()
