"""Archive benchmark: archive, compress and vault throughput, space saved, dedup, peak RSS.

  python benchmarks/bench_archive.py [--sessions 10000] [--corpus DIR ...] [--big-mb 2048]

Default: makes a scaled corpus with shared/tools/scale_corpus.py (real
rollouts from shared/corpus, cached in /tmp/rollouts-bench-archive-<N>),
imports it into a fresh SQLite store and archives a third of the threads
(plain move), compresses a third (--compress) and vaults a third (--vault),
each as one batch command, then restores the vaulted third. Each operation
runs in its own process; MB/s is rollout bytes / wall seconds, peak RSS is
that process's ru_maxrss.

--corpus DIR (repeatable): vaults every thread of these CODEX_HOMEs (e.g.
each folder of shared/corpus, all versions, forks included) into one store
and prints the dedup ratio instead.

--big-mb N: also one generated rollout of N MB (a real 0.169 session plus
lines carrying 1.3 MB base64 images, a few distinct ones repeated, as a
compaction or a fork would repeat them), imported, vaulted, restored and
compressed, each in its own process, to show that peak
RSS stays flat (target: <= 200 MB at 2 GB).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

# One operation, run in a child process: prints JSON with seconds, report and peak RSS.
CHILD = r"""
import json, resource, sys, time
from store import open_store
from store.archive import policy, service
db, op, ids_file = sys.argv[1], sys.argv[2], sys.argv[3]
ids = json.load(open(ids_file)) if ids_file != "-" else None
with open_store(db, auto_upgrade=True) as st:
    t0 = time.perf_counter()
    if op == "import":
        s = st.ingest(json.load(open(sys.argv[4])))
        out = {"bytes": s.bytes, "threads": s.threads}
    else:
        if ids is None:
            ids = service.select_threads_all(st)
        fn = {
            "archive": lambda: service.archive_threads(st, ids),
            "compress": lambda: service.archive_threads(st, ids, compress=True),
            "vault": lambda: service.archive_threads(st, ids, vault=True),
            "restore": lambda: service.restore_threads(st, ids),
            "unarchive": lambda: service.unarchive_threads(st, ids),
        }[op]
        rep = fn()
        out = {k: v for k, v in rep.to_json().items() if k != "items"}
    dt = time.perf_counter() - t0
    vault = policy.stats(st)["vault"]
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": dt, "rss_mb": rss, "vault": vault, **out}))
"""


def child(
    db: str, op: str, ids: list[str] | None, tmp: Path, paths: list[Path] | None = None
) -> dict:
    ids_file = "-"
    if ids is not None:
        ids_file = str(tmp / f"{op}.ids.json")
        Path(ids_file).write_text(json.dumps(ids))
    argv = [sys.executable, "-c", CHILD, db, op, ids_file]
    if paths is not None:
        (tmp / "paths.json").write_text(json.dumps([str(p) for p in paths]))
        argv.append(str(tmp / "paths.json"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{op} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def line(name: str, r: dict) -> None:
    """MB = rollout bytes handled (on disk before; for a restore, written)."""
    mb = (r["bytesBefore"] or r["bytesAfter"]) / 1e6
    saved = ""
    if r["bytesBefore"]:
        saved = f" ({100 * (1 - r['bytesAfter'] / r['bytesBefore']):.1f}% saved)"
    print(
        f"{name:<22} {r['threads']:>6} threads {mb:>9.1f} MB {r['seconds']:>7.1f} s "
        f"{mb / r['seconds']:>7.1f} MB/s  on disk {r['bytesBefore']:,} -> {r['bytesAfter']:,}"
        f"{saved}  skipped {len(r['skipped'])}  peak RSS {r['rss_mb']:.0f} MB"
    )


def vault_line(v: dict) -> str:
    return (
        f"vault: logical {v['logical']:,} B, unique chunks {v['uniqueRaw']:,} B, stored "
        f"{v['stored']:,} B: dedup {v['logical'] / max(1, v['uniqueRaw']):.2f}x, "
        f"with zstd {v['logical'] / max(1, v['stored']):.1f}x"
    )


def scaled(tmp: Path, sessions: int) -> None:
    cache = Path(f"/tmp/rollouts-bench-archive-{sessions}")
    if not cache.exists():
        part = cache.with_name(cache.name + f".building-{os.getpid()}")
        subprocess.run(
            [
                sys.executable,
                str(SHARED / "tools/scale_corpus.py"),
                str(SHARED / "corpus"),
                str(part),
                "--sessions",
                str(sessions),
                "--archived-fraction",
                "0",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        part.rename(cache)
    home = tmp / "home"
    shutil.copytree(cache, home, copy_function=shutil.copy2)
    db = f"sqlite:///{tmp}/bench.sqlite"
    imp = child(db, "import", None, tmp, [home])
    print(
        f"import: {imp['threads']} threads, {imp['bytes'] / 1e6:.1f} MB in {imp['seconds']:.1f} s"
    )
    from store import open_store
    from store.archive import service

    with open_store(db) as st:
        ids = service.select_threads_all(st)
    thirds = [ids[0::3], ids[1::3], ids[2::3]]
    for op, part_ids in zip(("archive", "compress", "vault"), thirds, strict=True):
        r = child(db, op, part_ids, tmp)
        line(f"archive --{op}" if op != "archive" else "archive (move)", r)
        if op == "vault":
            print(vault_line(r["vault"]))
    line("restore (from vault)", child(db, "restore", thirds[2], tmp))


def corpora(tmp: Path, dirs: list[Path]) -> None:
    homes = []
    for i, d in enumerate(dirs):
        home = tmp / f"home{i}"
        shutil.copytree(d, home)
        homes.append(home)
    db = f"sqlite:///{tmp}/bench.sqlite"
    child(db, "import", None, tmp, homes)
    r = child(db, "vault", None, tmp)
    line(f"vault {len(dirs)} corpora", r)
    print(vault_line(r["vault"]))


def big_rollout(path: Path, mb: int) -> None:
    """A real session followed by image lines until the file has `mb` MB."""
    template = SHARED / "corpus/codex-0.169.0/sessions/2026/11/21"
    src = sorted(template.glob("rollout-*.jsonl"))[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(7)
    images = [base64.b64encode(rnd.randbytes(1 << 20)).decode() for _ in range(8)]
    target = mb * 1_000_000
    with open(path, "wb") as out:
        head = src.read_bytes()
        out.write(head)
        size, n = len(head), 0
        while size < target:
            n += 1
            rec = {
                "timestamp": f"2026-11-21T16:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
                "type": "response_item",
                "payload": {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": f"screenshot {n}"},
                        {
                            "type": "input_image",
                            "image_url": "data:image/png;base64," + images[n % len(images)],
                        },
                    ],
                },
            }
            data = json.dumps(rec).encode() + b"\n"
            out.write(data)
            size += len(data)


def big(tmp: Path, mb: int) -> None:
    home = tmp / "bighome"
    name = "rollout-2026-11-21T15-36-20-01a1fec0-566f-71f3-977a-87eb2e369f2c.jsonl"
    t0 = time.perf_counter()
    big_rollout(home / "sessions/2026/11/21" / name, mb)
    print(f"big rollout: {mb} MB generated in {time.perf_counter() - t0:.0f} s")
    db = f"sqlite:///{tmp}/big.sqlite"
    imp = child(db, "import", None, tmp, [home])
    print(f"big import: {imp['seconds']:.1f} s, peak RSS {imp['rss_mb']:.0f} MB")
    r = child(db, "vault", None, tmp)
    line("big --vault", r)
    print(vault_line(r["vault"]))
    line("big restore", child(db, "restore", None, tmp))
    line("big --compress", child(db, "compress", None, tmp))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--corpus", type=Path, action="append")
    ap.add_argument("--big-mb", type=int, default=0)
    ap.add_argument("--skip-scaled", action="store_true", help="only --big-mb")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        if args.corpus:
            corpora(tmp, args.corpus)
        elif not args.skip_scaled:
            scaled(tmp, args.sessions)
        if args.big_mb:
            big(tmp, args.big_mb)


if __name__ == "__main__":
    main()
