"""Archive benchmark: compress and vault throughput (MB/s), space saved, dedup, peak RSS.

  python benchmarks/bench_archive.py [--sessions 10000] [--corpus DIR] [--big-mb 0]

Makes a scaled corpus with shared/tools/scale_corpus.py (real rollouts from
shared/corpus), imports it into a SQLite store, archives half the
threads with --compress and vaults the other half, and prints the figures.
With --corpus DIR it measures the vault dedup ratio of an existing CODEX_HOME
(e.g. the shared corpora) instead. --big-mb N also vaults one N MB rollout
made of repeated real lines to show peak RSS stays flat.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from store import open_store  # noqa: E402
from store.archive import policy, service  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(home: Path, db: str) -> None:
    with open_store(db, auto_upgrade=True) as st:
        t0 = time.perf_counter()
        st.ingest([home])
        print(f"import: {time.perf_counter() - t0:.1f}s")
        ids = service.select_threads_all(st)
        half = len(ids) // 2
        t0 = time.perf_counter()
        rep = service.archive_threads(st, ids[:half], compress=True)
        dt = time.perf_counter() - t0
        mb = rep.bytes_before / 1e6
        print(
            f"archive --compress: {rep.threads} threads, {mb:.1f} MB in {dt:.1f}s = "
            f"{mb / dt:.1f} MB/s, {rep.bytes_before:,} -> {rep.bytes_after:,} bytes "
            f"({100 * (1 - rep.bytes_after / max(1, rep.bytes_before)):.1f}% saved)"
        )
        t0 = time.perf_counter()
        rep = service.archive_threads(st, ids[half:], vault=True)
        dt = time.perf_counter() - t0
        mb = rep.bytes_before / 1e6
        v = policy.stats(st)["vault"]
        print(
            f"archive --vault: {rep.threads} threads, {mb:.1f} MB in {dt:.1f}s = "
            f"{mb / dt:.1f} MB/s; vault logical {v['logical']:,} B, unique chunks "
            f"{v['uniqueRaw']:,} B, stored {v['stored']:,} B: dedup "
            f"{v['logical'] / max(1, v['uniqueRaw']):.2f}x, total "
            f"{v['logical'] / max(1, v['stored']):.1f}x"
        )
        print(f"skipped: {len(rep.skipped)}; peak RSS {rss_mb():.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--corpus", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        if args.corpus:
            subprocess.run(["cp", "-r", str(args.corpus), str(home)], check=True)
        else:
            subprocess.run(
                [
                    sys.executable,
                    str(SHARED / "tools/scale_corpus.py"),
                    str(SHARED / "corpus"),
                    str(home),
                    "--sessions",
                    str(args.sessions),
                    "--archived-fraction",
                    "0",
                ],
                check=True,
            )
        run(home, f"sqlite:///{tmp}/bench.sqlite")


if __name__ == "__main__":
    main()
