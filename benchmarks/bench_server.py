#!/usr/bin/env python3
"""`rollouts serve` over stdio: latency, throughput and a flood of pipelined requests.

    .venv/bin/python benchmarks/bench_server.py [--sessions 2000] [--postgres URL]

1. Builds (or reuses) a scaled corpus of N sessions (see bench_import.py) and imports
   it into a fresh SQLite file and, if a PostgreSQL URL is given (default: env
   ROLLOUTS_TEST_POSTGRES_URL), a fresh database rollouts_bench_srv_<pid>.
2. Starts `python -m cli.main serve` on it, as a client would, and measures:
   - latency: one request at a time, `thread/list` (page of 50) and `thread/read`
     (random thread, no turns): p50 / p99 / mean in ms, round trip through the pipe;
   - throughput: the same requests pipelined with 64 in flight: requests/s;
   - flood: --flood requests written at once without reading; every one must come
     back, as a result or as -32001 overloaded; reports both counts, the time, and
     the server's peak RSS (VmHWM) so that memory stays bounded.
3. Prints one block per database and a final one-line JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

from bench_import import DEFAULT_SHARED, ensure_corpus  # noqa: E402

from store import open_store  # noqa: E402


class Client:
    """The server subprocess; a thread reads stdout lines into a deque."""

    def __init__(self, url: str, home: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO), ROLLOUTS_LOG="warn")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--db", url, "--codex-home", str(home)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=REPO,
        )
        assert self.proc.stdin and self.proc.stdout
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.next_id = 0

    def send(self, msgs: list[dict[str, Any]]) -> None:
        self.stdin.write(b"".join(json.dumps(m).encode() + b"\n" for m in msgs))
        self.stdin.flush()

    def recv(self) -> dict[str, Any]:
        line = self.stdout.readline()
        if not line:
            raise SystemExit("the server closed stdout")
        return json.loads(line)  # type: ignore[no-any-return]

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        self.send([{"id": self.next_id, "method": method, "params": params}])
        return self.recv()

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
        return float("nan")

    def close(self) -> None:
        self.stdin.close()
        self.proc.wait(timeout=60)


def _requests(method: str, ids: list[str], n: int, rng: random.Random) -> list[dict[str, Any]]:
    if method == "thread/list":
        return [{"method": method, "params": {"limit": 50}} for _ in range(n)]
    return [{"method": method, "params": {"threadId": rng.choice(ids)}} for _ in range(n)]


def latency(c: Client, method: str, reqs: list[dict[str, Any]]) -> dict[str, float]:
    times = []
    for r in reqs[:20]:  # warm-up: imports, connections, caches
        c.call(r["method"], r["params"])
    for r in reqs:
        t0 = time.perf_counter()
        answer = c.call(r["method"], r["params"])
        times.append((time.perf_counter() - t0) * 1000)
        if "result" not in answer:
            raise SystemExit(f"{method} failed: {answer}")
    times.sort()
    return {
        "p50_ms": statistics.median(times),
        "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
        "mean_ms": statistics.fmean(times),
    }


def throughput(c: Client, reqs: list[dict[str, Any]], window: int = 64) -> float:
    pending: deque[int] = deque()
    t0 = time.perf_counter()
    it = iter(reqs)
    sent = done = 0
    while done < len(reqs):
        batch = []
        while len(pending) < window and sent < len(reqs):
            c.next_id += 1
            batch.append({"id": c.next_id, **next(it)})
            pending.append(c.next_id)
            sent += 1
        if batch:
            c.send(batch)
        answer = c.recv()
        if "result" not in answer:
            raise SystemExit(f"pipelined request failed: {answer}")
        pending.remove(answer["id"])
        done += 1
    return len(reqs) / (time.perf_counter() - t0)


def flood(c: Client, reqs: list[dict[str, Any]]) -> dict[str, Any]:
    """Write everything from a thread while reading here: no window at all."""
    first = c.next_id + 1
    msgs = [{"id": first + i, **r} for i, r in enumerate(reqs)]
    c.next_id += len(msgs)
    t0 = time.perf_counter()
    writer = threading.Thread(target=c.send, args=(msgs,))
    writer.start()
    ok = overloaded = other = 0
    seen = set()
    for _ in msgs:
        answer = c.recv()
        seen.add(answer["id"])
        if "result" in answer:
            ok += 1
        elif answer["error"]["code"] == -32001:
            overloaded += 1
        else:
            other += 1
    writer.join()
    elapsed = time.perf_counter() - t0
    if len(seen) != len(msgs):
        raise SystemExit(f"flood: {len(msgs) - len(seen)} requests answered twice or not at all")
    # Still responsive afterwards.
    t1 = time.perf_counter()
    assert "result" in c.call("thread/list", {"limit": 50})
    return {
        "requests": len(msgs),
        "ok": ok,
        "overloaded": overloaded,
        "other_errors": other,
        "seconds": elapsed,
        "after_flood_ms": (time.perf_counter() - t1) * 1000,
    }


def flood_report(c: Client, reqs: list[dict[str, Any]]) -> dict[str, Any]:
    """`flood` plus the server's peak RSS, printed: {"flood": ..., "server_peak_rss_mb": ...}."""
    f = flood(c, reqs)
    rss = c.peak_rss_mb()
    print(
        f"   flood of {f['requests']}: {f['ok']} answered, {f['overloaded']} overloaded "
        f"(-32001), {f['other_errors']} other errors, in {f['seconds']:.1f}s; next request "
        f"{f['after_flood_ms']:.1f} ms; server peak RSS {rss:.0f} MB",
        flush=True,
    )
    return {"flood": f, "server_peak_rss_mb": rss}


def bench(name: str, url: str, home: Path, args: argparse.Namespace) -> dict[str, Any]:
    print(f"\n== {name}: importing {home} ...", flush=True)
    with open_store(url, auto_upgrade=True, codex_home=home) as st:
        t0 = time.perf_counter()
        summary = st.ingest([home])
        print(f"   {summary.threads} threads in {time.perf_counter() - t0:.1f}s", flush=True)
    ids = []
    with open_store(url, codex_home=home) as st:
        cursor = None
        while True:
            page = st.list_threads(limit=100, cursor=cursor, archived=False)
            ids += [t["id"] for t in page["data"]]
            cursor = page["nextCursor"]
            if not cursor:
                break
    rng = random.Random(1)
    c = Client(url, home)
    try:
        init = {"clientInfo": {"name": "bench", "version": "1"}}
        assert "result" in c.call("initialize", init)
        out: dict[str, Any] = {"threads": len(ids)}
        for method in ("thread/list", "thread/read"):
            reqs = _requests(method, ids, args.requests, rng)
            out[method] = latency(c, method, reqs)
            out[method]["req_per_s_pipelined"] = throughput(c, reqs)
            m = out[method]
            print(
                f"   {method:12} p50 {m['p50_ms']:.2f} ms  p99 {m['p99_ms']:.2f} ms  "
                f"mean {m['mean_ms']:.2f} ms  pipelined {m['req_per_s_pipelined']:.0f} req/s",
                flush=True,
            )
        out.update(flood_report(c, _requests("thread/list", ids, args.flood, rng)))
    finally:
        c.close()
    return out


@contextmanager
def scratch_postgres(admin_url: str, prefix: str) -> Iterator[str]:
    """A fresh database `<prefix>_<pid>` on the server of `admin_url`, dropped afterwards."""
    import psycopg

    name = f"{prefix}_{os.getpid()}"
    admin = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--requests", type=int, default=1000, help="per method and measure")
    ap.add_argument("--flood", type=int, default=10_000)
    ap.add_argument("--postgres", default=os.environ.get("ROLLOUTS_TEST_POSTGRES_URL"))
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    args = ap.parse_args()
    home = ensure_corpus(args.shared, args.sessions, args.shared / "corpus", seed=1)
    results = {}
    with tempfile.TemporaryDirectory(prefix="rollouts-bench-srv-") as tmp:
        results["sqlite"] = bench("SQLite", f"sqlite:///{tmp}/bench.sqlite", home, args)
    if args.postgres:
        with scratch_postgres(args.postgres, "rollouts_bench_srv") as url:
            results["postgresql"] = bench("PostgreSQL", url, home, args)
    print("\nBENCH_SERVER " + json.dumps({"sessions": args.sessions, **results}))


if __name__ == "__main__":
    main()
