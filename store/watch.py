"""Live indexing: keep the store in step with a CODEX_HOME that Codex is writing.

Why it is built this way:
- the rollout files are the truth and ingest is incremental and idempotent, so
  the watcher only decides *which* files to hand to ingest; a missed, doubled
  or out-of-order event costs a re-check, never a wrong row;
- restarting is a plain incremental ingest of the whole home: the progress kept
  in `rollout_files` is exactly where the last run stopped. It runs once the
  file watch is in place, so nothing written during start-up is lost;
- events are batched (step 50 ms, at most 200 ms) and widened to whole
  threads: ingest must see every file of a thread (main file, revert segments,
  a `.jsonl.zst` twin) to pick the live one, and a stored file of those threads
  that is gone is removed in the same run. Archive, unarchive, compression and
  deletes are all "a file appeared / a file went" and need no special case;
- a batch that touches many files (a compression run, a folder moved in) is
  cheaper as one incremental ingest of the whole home;
- a half-written last line is left for later by ingest itself; the write
  that completes it is the next event.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, or_, select
from sqlalchemy.exc import SQLAlchemyError

from store.codex_home import (
    ARCHIVED,
    SESSION_INDEX,
    SESSIONS,
    RootScan,
    rel_path,
)
from store.errors import InvalidInput
from store.ingest import IngestSummary, ingest
from store.rollout.naming import is_rollout_file, parse_name
from store.sql import schema as s

# Batching of file events: wait for `STEP_MS` of quiet, at most `DEBOUNCE_MS`.
STEP_MS = 50
DEBOUNCE_MS = 200
# How often the watcher wakes without events (to retry a failed batch, to stop).
TICK_MS = 200
DEFAULT_POLL_INTERVAL = 0.25
RETRY_SECONDS = 1.0  # pause after a round failed on the database
# Above this many changed paths, one incremental ingest of the home is cheaper.
TARGETED_MAX_PATHS = 500


@dataclass
class WatchBatch:
    """What one round of the watcher did."""

    paths: int  # changed paths that were looked at (0 for the start-up ingest)
    summary: IngestSummary
    seconds: float
    startup: bool = False


BatchFn = Callable[[WatchBatch], None]
ErrorFn = Callable[[Exception], None]


def resolve_home(home: str | os.PathLike[str]) -> Path:
    """The absolute, link-free CODEX_HOME, refused when it is not a folder."""
    path = Path(home).expanduser()
    if not path.is_dir():
        raise InvalidInput(f"CODEX_HOME is not a folder: {path}")
    return Path(os.path.realpath(path))


def watch(
    engine: Engine,
    home: str | os.PathLike[str],
    *,
    stop: threading.Event,
    poll: bool = False,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    on_batch: BatchFn | None = None,
    on_error: ErrorFn | None = None,
) -> None:
    """Follow `home` until `stop` is set; each round is reported to `on_batch`.

    `poll=True` compares (size, mtime) snapshots every `poll_interval` seconds
    instead of using inotify (network file systems, containers without inotify).
    A round that fails on the database (a lost connection, a lock timeout) is
    reported to `on_error` and retried with the next round; without `on_error`
    the error is raised.
    """
    root = resolve_home(home)
    # The engine's pool keeps its SQLite connection open between rounds, so
    # the WAL is not checkpointed away and recreated on every round.
    _follow(engine, root, stop, poll, poll_interval, on_batch, on_error)


def _follow(
    engine: Engine,
    root: Path,
    stop: threading.Event,
    poll: bool,
    poll_interval: float,
    on_batch: BatchFn | None,
    on_error: ErrorFn | None,
) -> None:
    changes = _poll_changes(root, stop, poll_interval) if poll else _notify_changes(root, stop)
    started = False  # the start-up ingest of the whole home has run
    pending: set[Path] = set()
    for changed in changes:
        pending |= changed
        if not started or pending:
            ok = _run_round(
                engine, root, pending if started else None, on_batch, on_error, stop
            )
            if ok:
                started, pending = True, set()  # a whole ingest covers what was pending
            else:
                stop.wait(RETRY_SECONDS)


def _run_round(
    engine: Engine,
    root: Path,
    changed: set[Path] | None,
    on_batch: BatchFn | None,
    on_error: ErrorFn | None,
    stop: threading.Event,
) -> bool:
    """One ingest round; False when it failed and must be retried.

    The start-up round (a whole import, long on a new store) stops early when
    `stop` is set; a round of changes is short and always completes.
    """
    start = time.perf_counter()
    try:
        if changed is None:
            summary = ingest(engine, [root], stop=stop.is_set)
        else:
            summary = sync_changes(engine, root, changed)
    except (SQLAlchemyError, OSError) as exc:
        if on_error is None:
            raise
        on_error(exc)
        return False
    if on_batch is not None:
        on_batch(
            WatchBatch(
                paths=len(changed or ()),
                summary=summary,
                seconds=time.perf_counter() - start,
                startup=changed is None,
            )
        )
    return True


# -- turning changed paths into an ingest -----------------------------------------------


def sync_changes(engine: Engine, home: Path, changed: Iterable[Path]) -> IngestSummary:
    """Bring the store in step with `changed` paths of `home` (resolved).

    The paths may be files or folders that appeared, changed or went; anything
    outside `sessions/`, `archived_sessions/` and `session_index.jsonl` is
    ignored.
    """
    rels: set[str] = set()
    index_changed = False
    for path in changed:
        rel = relevant_rel(home, path)
        if rel == SESSION_INDEX:
            index_changed = True
        elif rel is not None:
            rels.add(rel)
    if not rels and not index_changed:
        return IngestSummary()
    root_id = _root_id(engine, home)
    if root_id is None or len(rels) > TARGETED_MAX_PATHS:
        return ingest(engine, [home])
    files = _expand_folders(home, rels)
    if files is None or _folder_went(engine, root_id, home, rels):
        return ingest(engine, [home])
    scan = _thread_scan(engine, home, root_id, rels, files)
    index = home / SESSION_INDEX
    scan.index_file = index if index_changed and index.is_file() else None
    return ingest(engine, [scan])


def relevant_rel(home: Path, path: Path) -> str | None:
    """`path` relative to `home` when the watcher cares about it, else None."""
    try:
        rel = rel_path(home, path)
    except ValueError:
        return None
    if rel == SESSION_INDEX:
        return rel
    top = rel.split("/", 1)[0]
    return rel if top in (SESSIONS, ARCHIVED) and rel != top else None


def _root_id(engine: Engine, home: Path) -> int | None:
    with engine.connect() as conn:
        row = conn.execute(select(s.roots.c.id).where(s.roots.c.path == str(home))).first()
    return None if row is None else int(row[0])


def _folder_went(engine: Engine, root_id: int, home: Path, rels: set[str]) -> bool:
    """Whether a path that went was a folder holding indexed files.

    A removed folder cannot be listed any more (its files may or may not have
    had events of their own), so that rare case falls back to a whole ingest.
    """
    went = [r for r in rels if not is_rollout_file(r) and not (home / r).exists()]
    if not went:
        return False
    rf = s.rollout_files
    with engine.connect() as conn:
        hit = conn.execute(
            select(rf.c.id)
            .where(
                rf.c.root_id == root_id,
                or_(*(rf.c.rel_path.startswith(r + "/", autoescape=True) for r in went)),
            )
            .limit(1)
        ).first()
    return hit is not None


def _expand_folders(home: Path, rels: set[str]) -> dict[str, Path] | None:
    """Rollout files on disk among `rels`, folders walked; None when too many."""
    files: dict[str, Path] = {}
    for rel in rels:
        path = home / rel
        if path.is_dir() and not path.is_symlink():
            for f in _walk_files(path):
                files[rel_path(home, f)] = f
            if len(files) > TARGETED_MAX_PATHS:
                return None
        elif is_rollout_file(path.name) and path.is_file():
            files[rel] = path
    return files


def _walk_files(folder: Path) -> Iterator[Path]:
    """Rollout files below `folder`, links not followed."""
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            p = Path(dirpath) / name
            if is_rollout_file(name) and not p.is_symlink():
                yield p


def _thread_scan(
    engine: Engine, home: Path, root_id: int, rels: set[str], files: dict[str, Path]
) -> RootScan:
    """A scan of every file of the threads that `rels` touch, plus what went.

    The scan lists the files on disk; its prefixes are the stored files of
    those threads that are gone, so that ingest removes exactly those.
    """
    rf = s.rollout_files
    with engine.connect() as conn:
        named: dict[str, str] = {
            rel: tid
            for rel, tid in conn.execute(
                select(rf.c.rel_path, rf.c.thread_id).where(
                    rf.c.root_id == root_id, rf.c.rel_path.in_(sorted(rels))
                )
            )
        }
    thread_ids = set(named.values())
    for rel, path in files.items():
        tid = named.get(rel) or parse_name(path.name).thread_id
        if tid is not None:
            thread_ids.add(tid)
    on_disk = dict(files)
    folders = {path.parent for path in files.values()} | {
        (home / rel).parent for rel in rels if (home / rel).parent.is_dir()
    }
    for folder in folders:
        for f in _siblings(folder, thread_ids):
            on_disk.setdefault(rel_path(home, f), f)
    gone: list[str] = []
    if thread_ids:
        with engine.connect() as conn:
            stored = conn.execute(
                select(rf.c.rel_path).where(
                    rf.c.root_id == root_id, rf.c.thread_id.in_(sorted(thread_ids))
                )
            ).scalars()
            for rel in stored:
                path = home / rel
                if path.is_file():
                    on_disk.setdefault(rel, path)
                else:
                    gone.append(rel)
    return RootScan(root=home, files=sorted(on_disk.values()), complete=False, prefixes=tuple(gone))


def _siblings(folder: Path, thread_ids: set[str]) -> Iterator[Path]:
    """Rollout files in `folder` whose name carries one of `thread_ids`."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if not is_rollout_file(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        if parse_name(entry.name).thread_id in thread_ids:
            yield Path(entry.path)


# -- sources of changed paths -----------------------------------------------------------


def _notify_changes(root: Path, stop: threading.Event) -> Iterator[set[Path]]:
    """Batches of changed paths from inotify (or the platform's equivalent).

    Yields an empty set at least every TICK_MS; the first yield comes once the
    watch is in place.
    """
    import watchfiles

    def relevant(_change: watchfiles.Change, path: str) -> bool:
        return relevant_rel(root, Path(path)) is not None

    for changes in watchfiles.watch(
        root,
        watch_filter=relevant,
        debounce=DEBOUNCE_MS,
        step=STEP_MS,
        stop_event=stop,
        rust_timeout=TICK_MS,
        yield_on_timeout=True,
        raise_interrupt=False,
    ):
        yield {Path(p) for _change, p in changes}
        if stop.is_set():
            return


def _poll_changes(root: Path, stop: threading.Event, interval: float) -> Iterator[set[Path]]:
    """Batches of changed paths found by comparing (size, mtime) snapshots."""
    before = snapshot(root)
    yield set()
    while not stop.wait(interval):
        now = snapshot(root)
        yield {p for p in before.keys() | now.keys() if before.get(p) != now.get(p)}
        before = now


def snapshot(root: Path) -> dict[Path, tuple[int, int]]:
    """(size, mtime_ns) of every rollout file and of the name index under `root`."""
    out: dict[Path, tuple[int, int]] = {}
    for sub in (SESSIONS, ARCHIVED):
        for path in _walk_files(root / sub):
            try:
                st = path.stat()
            except OSError:
                continue
            out[path] = (st.st_size, st.st_mtime_ns)
    index = root / SESSION_INDEX
    try:
        st = index.stat()
        out[index] = (st.st_size, st.st_mtime_ns)
    except OSError:
        pass
    return out


def start_in_thread(
    engine: Engine,
    home: str | os.PathLike[str],
    *,
    poll: bool = False,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    on_batch: BatchFn | None = None,
    on_error: ErrorFn | None = None,
) -> tuple[threading.Thread, threading.Event]:
    """Run `watch` in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(
        target=watch,
        args=(engine, home),
        kwargs={
            "stop": stop,
            "poll": poll,
            "poll_interval": poll_interval,
            "on_batch": on_batch,
            "on_error": on_error,
        },
        name="rollouts-watch",
        daemon=True,
    )
    thread.start()
    return thread, stop
