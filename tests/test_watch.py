"""Live watch: Codex-like file operations on a copy of a real corpus are followed.

Each step changes the CODEX_HOME the way Codex does (create, append, a torn
last line, archive and unarchive moves, compression to .zst, a revert segment,
delete with the name index rewritten, a name change) and then waits, at most
five seconds, until the store shows it. At the end the database must equal a
fresh import of the final folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import zstandard
from sqlalchemy import select

from store import SqlThreadStore, open_store
from store.sql import schema as s
from store.sql.engine import make_engine
from store.watch import WatchBatch, start_in_thread
from tests.conftest import CORPUS, copy_home
from tests.helpers import EVERY_THREAD

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 5.0
DAY = "sessions/2026/11/21"
# A thread Codex "writes" during the test: a real 0.150 rollout, new to the 0.169 home.
NEW_SRC = (
    CORPUS
    / "codex-0.150.0/sessions/2026/11/21"
    / "rollout-2026-11-21T15-36-00-01a1fec0-0a9d-7f11-ad4d-5e76e348713b.jsonl"
)
NEW_ID = "01a1fec0-0a9d-7f11-ad4d-5e76e348713b"
NEW_NAME = f"rollout-2026-11-22T10-00-00-{NEW_ID}.jsonl"
# The real revert segment of an archived 0.169 thread, taken out before the watch starts.
SEGMENTED_ID = "01a1fec0-6348-77f3-be1f-61fa47783037"
SEGMENT = (
    "archived_sessions/rollout-2026-11-21T15-36-25-01a1fec0-6348-77f3-be1f-61fa47783037"
    "_01a1fec0-68c5-7391-b553-b9b1685e626e.jsonl"
)
DELETED_ID = "01a1fec0-63df-7f00-8c26-54f1cff07366"  # a named reference fork
RENAMED_ID = "01a1fec0-5a19-7490-b9a2-120cb357a1d5"


# -- what the store shows ---------------------------------------------------------------


class LibraryView:
    """The store as the library reads it."""

    def __init__(self, st: SqlThreadStore) -> None:
        self.st = st

    def threads(self) -> dict[str, dict[str, Any]]:
        page = self.st.list_threads(limit=100, **EVERY_THREAD)
        return {t["id"]: t for t in page["data"]}

    def items(self, tid: str) -> int:
        turns = self.st.get_thread(tid, include_turns=True)["turns"]
        return sum(len(t["items"]) for t in turns)

    def truncated(self, tid: str) -> bool:
        return any("truncated" in r["reason"] for r in self.st.skipped_lines(tid))


class CliView(LibraryView):
    """The store as `rollouts list/show --json` print it (real subprocesses)."""

    def __init__(self, url: str, home: Path) -> None:
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "ROLLOUTS_DB": url}
        self.env["CODEX_HOME"] = str(home)

    def _cli(self, *args: str) -> Any:
        out = subprocess.run(
            [sys.executable, "-m", "cli.main", *args, "--json"],
            env=self.env,
            capture_output=True,
            check=True,
            timeout=30,
        )
        return json.loads(out.stdout)

    def threads(self) -> dict[str, dict[str, Any]]:
        return {t["id"]: t for t in self._cli("list", "--all", "--limit", "100")["data"]}

    def items(self, tid: str) -> int:
        return sum(len(t["items"]) for t in self._cli("show", tid)["turns"])


def wait_for(what: str, check: Callable[[], bool], timeout: float = TIMEOUT) -> float:
    """Seconds until `check()` holds; fails the test after `timeout`."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            pytest.fail(f"the store did not show {what} within {timeout} s")
        time.sleep(0.02)


# -- the Codex-like script --------------------------------------------------------------


def prepare_home(tmp_path: Path) -> tuple[Path, bytes]:
    """A copy of the real 0.169 corpus without its revert segment (returned)."""
    home = copy_home(CORPUS / "codex-0.169.0", tmp_path / "home")
    segment = (home / SEGMENT).read_bytes()
    (home / SEGMENT).unlink()
    return home, segment


def _write(path: Path, data: bytes) -> None:
    with path.open("ab") as fh:
        fh.write(data)
        fh.flush()


def run_codex_script(home: Path, segment: bytes, view: LibraryView, url: str) -> None:
    """Codex-like operations, each awaited in the store through `view`."""

    def rel(path: Path) -> str:
        return path.relative_to(home).as_posix()

    lines = NEW_SRC.read_bytes().splitlines(keepends=True)
    live = home / "sessions/2026/11/22" / NEW_NAME

    # create: a new day folder and a new rollout holding its first turns
    live.parent.mkdir(parents=True)
    _write(live, b"".join(lines[:20]))
    wait_for("a new thread", lambda: NEW_ID in view.threads())
    first = view.items(NEW_ID)

    # append: more complete lines
    _write(live, b"".join(lines[20:40]))
    wait_for("appended items", lambda: view.items(NEW_ID) > first)

    # a torn last line waits; its completion is indexed
    done = view.items(NEW_ID)
    cut = len(lines[40]) // 2
    _write(live, lines[40][:cut])
    wait_for("the torn line recorded as waiting", lambda: view.truncated(NEW_ID))
    assert view.items(NEW_ID) == done
    _write(live, lines[40][cut:] + b"".join(lines[41:]))
    wait_for("the completed line", lambda: not view.truncated(NEW_ID))
    wait_for("the rest of the file", lambda: view.items(NEW_ID) > done)

    # archive: Codex moves the file to the flat archived_sessions/
    archived = home / "archived_sessions" / NEW_NAME
    os.rename(live, archived)
    wait_for("the archive move", lambda: _path(view, NEW_ID) == str(archived))
    assert view.threads()[NEW_ID]["status"] is not None

    # unarchive: back to sessions/YYYY/MM/DD of the file name
    os.rename(archived, live)
    wait_for("the unarchive move", lambda: _path(view, NEW_ID) == str(live))

    # compression: .jsonl.zst written next to the plain file, same mtime, plain removed.
    # The Thread's path stays the plain name (as Codex shows it); the file row changes.
    _compress(live)
    zst = live.with_name(live.name + ".zst")
    wait_for("the compressed file", lambda: stored_files(url, NEW_ID) == [rel(zst)])
    assert _path(view, NEW_ID) == str(live)

    # revert segment: a second, newer file of an archived thread becomes its live file
    (home / SEGMENT).write_bytes(segment)
    wait_for("the revert segment", lambda: _path(view, SEGMENTED_ID) == str(home / SEGMENT))

    # delete: the file goes and the name index is rewritten without the thread
    deleted = next((home / DAY).glob(f"*{DELETED_ID}.jsonl"))
    deleted.unlink()
    _rewrite_index_without(home, DELETED_ID)
    wait_for("the delete", lambda: DELETED_ID not in view.threads())

    # name change: Codex appends a line to session_index.jsonl
    line = {"id": RENAMED_ID, "thread_name": "watch: renamed", "updated_at": "2026-11-22T10:00Z"}
    _write(home / "session_index.jsonl", (json.dumps(line) + "\n").encode())
    wait_for("the new name", lambda: view.threads()[RENAMED_ID]["name"] == "watch: renamed")


def _path(view: LibraryView, tid: str) -> str | None:
    thread = view.threads().get(tid)
    return None if thread is None else thread["path"]


def stored_files(url: str, tid: str) -> list[str]:
    """The files the database holds for a thread, by path relative to their root."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rf = s.rollout_files
            q = select(rf.c.rel_path).where(rf.c.thread_id == tid).order_by(rf.c.rel_path)
            return list(conn.execute(q).scalars())
    finally:
        engine.dispose()


def _compress(plain: Path) -> None:
    """What Codex's compression worker does: temp file, rename, keep mtime, drop plain."""
    target = plain.with_name(plain.name + ".zst")
    tmp = plain.with_name(plain.name + ".zst.tmp")
    tmp.write_bytes(zstandard.ZstdCompressor(level=3).compress(plain.read_bytes()))
    st = plain.stat()
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.rename(tmp, target)
    plain.unlink()


def _rewrite_index_without(home: Path, tid: str) -> None:
    index = home / "session_index.jsonl"
    kept = [ln for ln in index.read_bytes().splitlines(keepends=True) if tid.encode() not in ln]
    tmp = index.with_name("session_index.jsonl.tmp")
    tmp.write_bytes(b"".join(kept))
    os.replace(tmp, index)


# -- comparing databases ----------------------------------------------------------------


def dump(url: str) -> dict[str, list[str]]:
    """Every row of the store, with surrogate ids and indexing times replaced."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            roots = {r.id: r.path for r in conn.execute(select(s.roots))}
            files = {r.id: r.rel_path for r in conn.execute(select(s.rollout_files))}
            out: dict[str, list[str]] = {}
            for table in s.metadata.sorted_tables:
                rows = []
                for row in conn.execute(select(table)).mappings():
                    rows.append(json.dumps(_normal(table.name, dict(row), roots, files)))
                out[table.name] = sorted(rows)
            return out
    finally:
        engine.dispose()


def _normal(
    table: str, row: dict[str, Any], roots: dict[int, str], files: dict[int, str]
) -> dict[str, Any]:
    if table == "roots":
        row.pop("id")
        row.pop("added_at_ms")
    if table == "rollout_files":
        row.pop("id")
        row.pop("indexed_at_ms")
    if table == "items":
        row.pop("id")
    if "root_id" in row:
        row["root_id"] = roots.get(row["root_id"])
    if "live_file_id" in row:
        row["live_file_id"] = files.get(row["live_file_id"])
    if "file_id" in row:
        row["file_id"] = files.get(row["file_id"])
    return row


def assert_equals_fresh_import(url: str, home: Path, tmp_path: Path) -> None:
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    with open_store(fresh, auto_upgrade=True, codex_home=home) as st:
        assert st.ingest([home]).errors == 0
    got, want = dump(url), dump(fresh)
    for table in want:
        assert got[table] == want[table], table


# -- the watcher in a thread ------------------------------------------------------------


@contextmanager
def watching(st: SqlThreadStore, home: Path, *, poll: bool = False) -> Iterator[list[WatchBatch]]:
    batches: list[WatchBatch] = []
    errors: list[Exception] = []
    started = threading.Event()

    def on_batch(batch: WatchBatch) -> None:
        batches.append(batch)
        started.set()

    thread, stop = start_in_thread(
        st.engine, home, poll=poll, poll_interval=0.1, on_batch=on_batch, on_error=errors.append
    )
    assert started.wait(30), "the start-up import did not finish"
    try:
        yield batches
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive(), "the watcher did not stop"
    assert errors == []


def _follow_codex_operations(db_url: str, tmp_path: Path, *, poll: bool) -> None:
    home, segment = prepare_home(tmp_path)
    with open_store(db_url, auto_upgrade=True, codex_home=home) as st:
        with watching(st, home, poll=poll) as batches:
            assert batches[0].startup and batches[0].summary.threads == 9
            run_codex_script(home, segment, LibraryView(st), db_url)
        # Rounds after start-up re-read only what changed.
        assert all(b.summary.unchanged <= 3 for b in batches[1:])
    assert_equals_fresh_import(db_url, home, tmp_path)


def test_watch_follows_codex_operations(db_url: str, tmp_path: Path) -> None:
    _follow_codex_operations(db_url, tmp_path, poll=False)


def test_polling_watch_follows_codex_operations(tmp_path: Path) -> None:
    # Polling only changes how events are found; the pipeline after it is the
    # one the inotify test runs on both databases, so once on SQLite is enough.
    _follow_codex_operations(f"sqlite:///{tmp_path / 'poll.sqlite'}", tmp_path, poll=True)


def test_restart_resumes_where_it_stopped(db_url: str, tmp_path: Path) -> None:
    home, _segment = prepare_home(tmp_path)
    target = next((home / DAY).glob("*.jsonl"))
    lines = target.read_bytes().splitlines(keepends=True)
    half = len(lines) // 2
    target.write_bytes(b"".join(lines[:half]))
    with open_store(db_url, auto_upgrade=True, codex_home=home) as st:
        with watching(st, home):
            pass
        # While nobody watches: the file grows, another thread is deleted.
        _write(target, b"".join(lines[half:]))
        gone = next(p for p in (home / DAY).glob("*.jsonl") if p != target)
        gone.unlink()
        with watching(st, home) as batches:
            start = batches[0].summary
            assert start.bytes == len(b"".join(lines[half:]))
            assert start.removed == 1
            assert start.threads == 1
    assert_equals_fresh_import(db_url, home, tmp_path)


def test_many_files_in_one_round(db_url: str, tmp_path: Path) -> None:
    """A burst larger than a targeted round (a folder moved in) is one whole ingest."""
    home, _segment = prepare_home(tmp_path)
    with open_store(db_url, auto_upgrade=True, codex_home=home) as st, watching(st, home):
        staging = tmp_path / "staging"
        staging.mkdir()
        src = NEW_SRC.read_bytes()
        ids = []
        for i in range(60):
            tid = f"01a1fec0-0a9d-7f11-ad4d-{i:012x}"
            ids.append(tid)
            data = src.replace(NEW_ID.encode(), tid.encode())
            (staging / f"rollout-2026-11-23T10-00-00-{tid}.jsonl").write_bytes(data)
        os.rename(staging, home / "sessions/2026/11/23")
        view = LibraryView(st)
        wait_for("60 new threads", lambda: set(ids) <= set(view.threads()))
    assert_equals_fresh_import(db_url, home, tmp_path)


# -- the real command -------------------------------------------------------------------


@contextmanager
def rollouts_watch(url: str, home: Path, *extra: str) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "ROLLOUTS_DB": url}
    with subprocess.Popen(
        [sys.executable, "-m", "cli.main", "watch", str(home), "--json", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            first = json.loads(proc.stdout.readline())
            assert first["startup"] is True
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_rollouts_watch_command(db_url: str, tmp_path: Path, sig: signal.Signals) -> None:
    home, segment = prepare_home(tmp_path)
    with open_store(db_url, auto_upgrade=True, codex_home=home):
        pass  # the schema; a non-default database is upgraded explicitly
    extra = ("--poll",) if sig == signal.SIGTERM else ()
    with rollouts_watch(db_url, home, *extra) as proc, open_store(db_url) as st:
        # Each step is awaited through the library (a CLI call costs a second of start-up
        # on a busy machine); the CLI then shows the final state.
        run_codex_script(home, segment, LibraryView(st), db_url)
        cli = CliView(db_url, home)
        assert cli.threads() == LibraryView(st).threads()
        assert cli.items(NEW_ID) == LibraryView(st).items(NEW_ID) > 0
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert "stopped" in err
    assert_equals_fresh_import(db_url, home, tmp_path)


def test_rollouts_watch_bad_home(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    missing = tmp_path / "nope"
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "watch", str(missing)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "not a folder" in out.stderr
