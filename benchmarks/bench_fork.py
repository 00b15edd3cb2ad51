#!/usr/bin/env python3
"""Fork time for a 10,000-item thread: a reference fork and a copy fork, SQLite and PostgreSQL.

    .venv/bin/python benchmarks/bench_fork.py [--items 10000] [--repeat 3] [--postgres URL]

1. Builds two long threads in a scratch CODEX_HOME by repeating the turns of a real
   Codex thread: a paginated 0.169.0 thread (forks of it are reference forks:
   `history_base`, nothing copied) and a legacy 0.150.0 thread (forks are copy forks:
   the history is copied byte for byte). Each repeat gets fresh turn and item ids and,
   in the paginated file, continuing ordinals, so the store reads `--items` distinct
   items (the count is printed).
2. For SQLite (a fresh temp file) and, if a PostgreSQL URL is given (default: env
   ROLLOUTS_TEST_POSTGRES_URL), a fresh database: imports the home, then times
   `store.fork()` (write the new rollout, index it; what `rollouts fork` and
   thread/fork do) `--repeat` times for each kind, at the middle turn and of the whole
   thread. Prints best / median / worst per case and a final one-line JSON summary.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from bench_watch import drop_pg, pg_database  # noqa: E402

from store import open_store  # noqa: E402

CORPUS = REPO / "tests" / "fixtures" / "corpus"
# Six-turn threads of the fixture corpora: one paginated, one legacy.
TEMPLATES = {
    "reference": CORPUS
    / "codex-0.169.0/sessions/2026/11/21"
    / "rollout-2026-11-21T15-36-23-01a1fec0-620f-7352-a438-43c08a0c79fc.jsonl",
    "copy": CORPUS
    / "codex-0.150.0/sessions/2026/11/21"
    / "rollout-2026-11-21T15-36-05-01a1fec0-1c69-7e10-b266-2bedf8b4aefd.jsonl",
}
UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SHORT_ID = re.compile(rb"\b(rs|msg|call|ctc|ctco|fc|ws|lsh)_(\d+)\b")
ORDINAL = re.compile(rb'^(\{"timestamp":"[^"]*","ordinal":)(\d+)')


def _template_items(template: Path) -> int:
    with (
        tempfile.TemporaryDirectory() as tmp,
        open_store(f"sqlite:///{tmp}/t.sqlite", auto_upgrade=True, codex_home=tmp) as st,
    ):
        st.ingest([template])
        return int(st.counts()["items"])


def make_thread(template: Path, home: Path, items: int) -> tuple[str, Path]:
    """A new thread of about `items` items: the template's turns over and over."""
    lines = template.read_bytes().splitlines(keepends=True)
    old_id = UUID.search(lines[0])
    assert old_id is not None
    src_id = old_id.group(0)
    new_id = str(uuid.uuid4()).encode()
    cycles = math.ceil(items / _template_items(template))
    name = template.name.replace(src_id.decode(), new_id.decode())
    out = home / "sessions" / "2026" / "11" / "21" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    ordinal = 0

    def renumber(line: bytes) -> bytes:
        nonlocal ordinal
        line, n = ORDINAL.subn(lambda m: m.group(1) + str(ordinal).encode(), line, count=1)
        ordinal += n
        return line

    with out.open("wb") as fh:
        fh.write(renumber(lines[0].replace(src_id, new_id)))
        for k in range(cycles):
            fresh: dict[bytes, bytes] = {src_id: new_id}

            def swap(m: re.Match[bytes], fresh: dict[bytes, bytes] = fresh) -> bytes:
                return fresh.setdefault(m.group(0), str(uuid.uuid4()).encode())

            for line in lines[1:]:
                line = UUID.sub(swap, line)
                line = SHORT_ID.sub(lambda m, k=k: b"%s_%d_%s" % (m.group(1), k, m.group(2)), line)
                fh.write(renumber(line))
    return new_id.decode(), out


def bench(
    name: str, url: str, home: Path, threads: dict[str, str], repeat: int
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with open_store(url, auto_upgrade=True, codex_home=home) as st:
        t0 = time.perf_counter()
        summary = st.ingest([home], workers=1)
        assert summary.errors == 0, summary.error_details
        print(f"\n== {name}: import {time.perf_counter() - t0:.2f} s", flush=True)
        for kind, tid in threads.items():
            turns = st.list_turns(tid)
            items = sum(len(t["items"]) for t in turns)
            for where, turn in (("middle turn", turns[len(turns) // 2]["id"]), ("whole", None)):
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    fork = st.fork(tid, last_turn_id=turn)
                    times.append(time.perf_counter() - t0)
                size = Path(fork["path"]).stat().st_size
                r = {
                    "db": name,
                    "fork": kind,
                    "at": where,
                    "source_items": items,
                    "source_turns": len(turns),
                    "fork_file_bytes": size,
                    "best_ms": 1000 * min(times),
                    "median_ms": 1000 * statistics.median(times),
                    "worst_ms": 1000 * max(times),
                }
                print(
                    f"  {kind:9} fork at {where:11} of {items} items / {len(turns)} turns: "
                    f"best {r['best_ms']:.0f} ms  median {r['median_ms']:.0f} ms  "
                    f"worst {r['worst_ms']:.0f} ms  (new file {size / 1e6:.2f} MB)",
                    flush=True,
                )
                out.append(r)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--postgres", default=os.environ.get("ROLLOUTS_TEST_POSTGRES_URL"))
    a = ap.parse_args()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rollouts-bench-fork-") as tmp:
        base = Path(tmp)

        def fresh_home(label: str) -> tuple[Path, dict[str, str]]:
            home = base / label
            threads = {k: make_thread(t, home, a.items)[0] for k, t in TEMPLATES.items()}
            return home, threads

        home, threads = fresh_home("sqlite")
        results += bench("sqlite", f"sqlite:///{base}/bench.sqlite", home, threads, a.repeat)
        if a.postgres:
            home, threads = fresh_home("postgresql")
            conninfo, url = pg_database(a.postgres)
            try:
                results += bench("postgresql", url, home, threads, a.repeat)
            finally:
                drop_pg(conninfo, url)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
