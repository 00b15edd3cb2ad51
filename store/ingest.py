"""Bulk and incremental ingest of rollout files into the database.

Invariants:
- a file is read once: a re-run reads only the new bytes of a file that grew,
  re-reads a thread whose file was replaced (head fingerprint changed, file
  shrank, compressed copy changed), and reads nothing of an unchanged file;
- a thread is written in one transaction with its files' progress, so the
  database never holds half a thread;
- writers check, inside their transaction, that the database still is what
  they planned against; a concurrent importer's work is detected and skipped,
  so two importers leave the database one importer would;
- when there is enough to parse, worker processes parse and write tasks of a
  few MB each, taking turns to write, with a bounded number of tasks in
  flight; the parent plans, and adds up the workers' counts. Otherwise the
  parent parses and writes in batches itself.
"""

from __future__ import annotations

import gc
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, fields
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.util import Finalize
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    bindparam,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)

from store import codec
from store.archive.tables import vault as archive_vault
from store.codex_home import RootScan, is_archived_rel, rel_path, scan_path
from store.errors import InvalidInput
from store.rollout.framing import (
    DEFAULT_MAX_LINE_BYTES,
    fingerprint,
    head_fingerprint,
    is_compressed,
    open_stream,
)
from store.rollout.naming import RolloutName, parse_name, validate_thread_id
from store.rollout.thread import FileProgress, ThreadParse, parse_thread
from store.rows import (
    ITEM_COLS,
    TURN_COLS,
    ThreadRows,
    load_meta,
    load_reducer,
    thread_row,
    turn_rows,
)
from store.search import schema as search_schema
from store.sql import history
from store.sql import schema as s
from store.sql.bulk import bulk_insert
from store.sql.engine import make_engine, snapshot_connection, write_tx, write_tx_on

# Parse in worker processes only when it pays for their start-up.
PARALLEL_MIN_BYTES = 16 << 20
WRITE_BATCH_ITEMS = 20_000
WRITE_BATCH_THREADS = 400
# A worker task: about this much input, parsed and then written as one batch.
WRITE_TASK_BYTES = 6 << 20


@dataclass
class IngestSummary:
    files: int = 0
    threads: int = 0
    turns: int = 0
    items: int = 0
    bytes: int = 0
    skipped_lines: int = 0
    errors: int = 0
    unchanged: int = 0
    removed: int = 0
    error_details: list[dict[str, str]] = field(default_factory=list)

    def error(self, path: str, message: str) -> None:
        self.errors += 1
        self.error_details.append({"path": path, "error": message})

    def add(self, other: IngestSummary) -> None:
        """Add a worker's counts (its part of this run) to these."""
        for f in fields(self):
            if f.name != "error_details":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        self.error_details.extend(other.error_details)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "threads": self.threads,
            "turns": self.turns,
            "items": self.items,
            "bytes": self.bytes,
            "skipped_lines": self.skipped_lines,
            "errors": self.errors,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "error_details": self.error_details,
        }


ProgressFn = Callable[[int, int], None]


@dataclass
class FileStat:
    path: Path
    rel: str
    name: RolloutName
    size: int
    mtime_ns: int


@dataclass
class Job:
    """One thread to (re)write."""

    thread_id: str
    root_id: int
    live: FileStat
    files: list[FileStat]
    append: bool  # continue from the stored state instead of a full read
    expect: tuple[Any, ...] | None  # DB state the plan saw (revalidated at write)
    old_offset: int = 0


# -- discovery and planning ---------------------------------------------------------


def _stat(root: Path, path: Path) -> FileStat | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return FileStat(path, rel_path(root, path), parse_name(path.name), st.st_size, st.st_mtime_ns)


def _sort_key(f: FileStat) -> tuple[str, str, str]:
    # Codex's live file is the newest name: timestamp, then rollout id.
    return (f.name.timestamp or "", f.name.rollout_id or "", f.rel)


def _ensure_root(conn: Connection, root: Path) -> int:
    path = str(root)
    row = conn.execute(select(s.roots.c.id).where(s.roots.c.path == path)).first()
    if row is not None:
        return int(row[0])
    conn.execute(
        insert(s.roots).values(
            path=path, index_offset=0, index_head="", added_at_ms=int(time.time() * 1000)
        )
    )
    return int(conn.execute(select(s.roots.c.id).where(s.roots.c.path == path)).scalar_one())


_META_ID = re.compile(rb'"id"\s*:\s*"([^"]{1,100})"')
# Planning reads this much of a plain file first: the session_meta id comes early.
_HEAD_PREFIX = 4096


def _meta_id_match(path: Path) -> tuple[bytes, re.Match[bytes] | None]:
    """The file's first line (up to 64 KiB) and the first `"id": "..."` in it.

    A plain file's first 4 KiB usually hold the id, while its first line (with
    the instructions) runs to ~10 KiB: when the first `"id"` of those 4 KiB
    starts the match, the whole line has that same first match, so the rest
    of the line is not read.
    """
    if not is_compressed(path):
        fd = os.open(path, os.O_RDONLY)
        try:
            prefix = os.read(fd, _HEAD_PREFIX)
        finally:
            os.close(fd)
        nl = prefix.find(b"\n")
        if nl >= 0 or len(prefix) < _HEAD_PREFIX:
            head = prefix[: nl + 1] if nl >= 0 else prefix
            return head, _META_ID.search(head)
        m = _META_ID.search(prefix)
        if m is not None and m.start() == prefix.find(b'"id"'):
            return prefix, m
    with open_stream(path) as stream:
        head = stream.readline(1 << 16)
    return head, _META_ID.search(head)


def _file_thread_id(f: FileStat) -> str | None:
    """Thread id of a file: its session_meta id, else the id in its name."""
    try:
        head, m = _meta_id_match(f.path)
    except OSError:
        return f.name.thread_id
    if head.startswith(b"{") and m:
        try:
            return validate_thread_id(m.group(1).decode("utf-8", "replace"))
        except InvalidInput:
            return None
    return f.name.thread_id


def _plan_root(
    engine: Engine, scan: RootScan, summary: IngestSummary
) -> tuple[int, list[Job], list[int]]:
    """Jobs for the files of one root, and ids of stored files that are gone."""
    with write_tx(engine) as conn:
        root_id = _ensure_root(conn, scan.root)
    stored: dict[str, dict[str, Any]] = {}
    stored_per_thread: dict[str, int] = {}
    live_ids: dict[str, Any] = {}
    with engine.connect() as conn:
        covered = _load_stored(conn, root_id, scan, stored, stored_per_thread, live_ids)
    by_thread: dict[str, list[FileStat]] = {}
    seen_rel: set[str] = set()
    for path in scan.files:
        f = _stat(scan.root, path)
        if f is None:
            continue
        summary.files += 1
        seen_rel.add(f.rel)
        if f.size == 0:
            summary.error(str(path), "empty file (no session_meta yet)")
            continue
        known = stored.get(f.rel)
        tid = known["thread_id"] if known is not None else _file_thread_id(f)
        if tid is None:
            summary.error(
                str(path),
                "no thread id: the session_meta id is missing or not a UUID, "
                "and the file name carries none",
            )
            continue
        by_thread.setdefault(tid, []).append(f)
    for rel in scan.outside:
        summary.error(rel, "refused: a link that leads outside the root")
    if covered is not None and not covered.issuperset(by_thread):
        # A file whose name carries no thread id: its thread's rows too.
        with engine.connect() as conn:
            extra = set(by_thread) - covered
            _load_stored(conn, root_id, extra, stored, stored_per_thread, live_ids)

    jobs: list[Job] = []
    for tid, files in by_thread.items():
        files.sort(key=_sort_key)
        live = files[-1]
        known = stored.get(live.rel)
        if known is None or live_ids.get(tid) != known["id"]:
            jobs.append(Job(tid, root_id, live, files, False, _expect(live_ids, tid, stored, live)))
            continue
        # A stored file that is no longer among the thread's files (a deleted
        # segment, a plain copy replaced by its .zst) changes the thread too.
        others_changed = stored_per_thread.get(tid, 0) != len(files) or any(
            (
                stored.get(f.rel) is None
                or stored[f.rel]["size"] != f.size
                or stored[f.rel]["mtime_ns"] != f.mtime_ns
            )
            for f in files[:-1]
        )
        unchanged = known["size"] == live.size and known["mtime_ns"] == live.mtime_ns
        if unchanged and not others_changed:
            summary.unchanged += 1
            continue
        expect = _expect(live_ids, tid, stored, live)
        grew = (
            not live.name.compressed
            and not others_changed
            and live.size >= known["size"]
            and fingerprint(live.path, 0, known["head_len"]) == known["head_hash"]
        )
        jobs.append(Job(tid, root_id, live, files, grew, expect, known["offset"] if grew else 0))
    gone: list[int] = []
    if scan.prefixes:
        for rel, r in stored.items():
            if rel in seen_rel or not rel.startswith(scan.prefixes):
                continue
            if not (scan.root / rel).exists():
                gone.append(r["id"])
    return root_id, jobs, gone


# A partial scan of at most this many files loads only the stored rows it needs.
_TARGETED_MAX_FILES = 500


def _load_stored(
    conn: Connection,
    root_id: int,
    what: RootScan | set[str],
    stored: dict[str, dict[str, Any]],
    stored_per_thread: dict[str, int],
    live_ids: dict[str, Any],
) -> set[str] | None:
    """Stored file rows of a root (by rel path, counted per thread) and live file ids.

    Given a scan, a complete or large one loads every row of the root (returns
    None); a small partial one (a watch round) loads only the rows of the
    threads its files name and the rows under its prefixes, and returns the
    thread ids it covered: reading all rows of a root of thousands of files
    made every watch round slow. Given thread ids, loads those threads' rows.
    """
    rf = s.rollout_files
    q = select(
        rf.c.id,
        rf.c.rel_path,
        rf.c.thread_id,
        rf.c.rollout_id,
        rf.c.size,
        rf.c.mtime_ns,
        rf.c.head_len,
        rf.c.head_hash,
        rf.c.offset,
    ).where(rf.c.root_id == root_id)
    covered: set[str] | None
    if isinstance(what, set):
        covered = what
        q = q.where(rf.c.thread_id.in_(sorted(covered)))
    elif what.complete or len(what.files) > _TARGETED_MAX_FILES:
        covered = None
    else:
        rels = sorted({rel_path(what.root, p) for p in what.files})
        named = (parse_name(p.name).thread_id for p in what.files)
        covered = {t for t in named if t} | set(
            conn.execute(
                select(rf.c.thread_id).where(rf.c.root_id == root_id, rf.c.rel_path.in_(rels))
            ).scalars()
        )
        wanted: list[ColumnElement[bool]] = [rf.c.thread_id.in_(sorted(covered))]
        wanted += [rf.c.rel_path.startswith(p, autoescape=True) for p in what.prefixes]
        q = q.where(or_(*wanted))
    for row in conn.execute(q).mappings():
        if row["rel_path"] in stored:
            continue
        stored[row["rel_path"]] = dict(row)
        stored_per_thread[row["thread_id"]] = stored_per_thread.get(row["thread_id"], 0) + 1
    lq = select(s.threads.c.id, s.threads.c.live_file_id)
    if covered is None:
        lq = lq.where(s.threads.c.id.in_(select(rf.c.thread_id).where(rf.c.root_id == root_id)))
    else:
        lq = lq.where(s.threads.c.id.in_(sorted(covered)))
    live_ids.update({r[0]: r[1] for r in conn.execute(lq)})
    return covered


def _expect(
    live_ids: dict[str, Any], tid: str, stored: dict[str, dict[str, Any]], live: FileStat
) -> tuple[Any, ...] | None:
    if tid not in live_ids:
        return None
    known = stored.get(live.rel)
    return (live_ids[tid], known["offset"] if known else None, known["mtime_ns"] if known else None)


# -- parsing (worker side) ------------------------------------------------------------

_RESOLVE: dict[str, str] = {}
_MAX_LINE = DEFAULT_MAX_LINE_BYTES


def _init_worker(resolve: dict[str, str], max_line: int) -> None:
    global _RESOLVE, _MAX_LINE
    _RESOLVE = resolve
    _MAX_LINE = max_line


def _resolver(rollout_id: str) -> Path | None:
    p = _RESOLVE.get(rollout_id)
    return Path(p) if p else None


def _rows_for(job: Job, parse: ThreadParse, from_turn: int) -> ThreadRows:
    t_rows, i_rows, turn_count, item_count = turn_rows(job.thread_id, parse.reducer, from_turn)
    row = thread_row(
        job.thread_id,
        parse,
        name=job.live.name,
        mtime_ms=job.live.mtime_ns // 1_000_000,
        archived=is_archived_rel(job.live.rel),
        total_bytes=sum(f.size for f in job.files),
        turn_count=turn_count,
        item_count=item_count,
    )
    rows = ThreadRows(
        row,
        t_rows,
        i_rows,
        parse.progress.skips,
        parse.progress,
        from_turn,
        turn_count,
        item_count,
        parse.error,
    )
    rows.files = _file_rows(job, rows)
    return rows


def _parse_full(job: Job) -> ThreadRows | tuple[str, str]:
    try:
        parse = parse_thread(job.live.path, resolve_base=_resolver, max_line_bytes=_MAX_LINE)
    except OSError as exc:
        return (str(job.live.path), f"cannot read: {exc}")
    if not parse.meta.seen_meta:
        # Binary junk or a first line still being written: not a thread (yet).
        return (
            str(job.live.path),
            "no session_meta line: not a Codex rollout, or its first line is still being written",
        )
    meta_id = parse.meta.id
    if meta_id is not None and meta_id.lower() != job.thread_id:
        try:
            validate_thread_id(meta_id)
        except InvalidInput as exc:
            return (str(job.live.path), str(exc))
    return _rows_for(job, parse, 0)


# -- writing --------------------------------------------------------------------------


# Per thread, as the write transaction finds it: (live file id, that file's
# offset and mtime_ns (None without a file row), turn_count, item_count).
_Current = tuple[Any, Any, Any, int, int]
_IN_CHUNK = 500


def _current_state(conn: Connection, thread_ids: list[str]) -> dict[str, _Current]:
    """The stored state of these threads: one query per 500 threads."""
    t, f = s.threads, s.rollout_files
    out: dict[str, _Current] = {}
    for i in range(0, len(thread_ids), _IN_CHUNK):
        chunk = thread_ids[i : i + _IN_CHUNK]
        for row in conn.execute(
            select(
                t.c.id,
                t.c.live_file_id,
                f.c.id,
                f.c.offset,
                f.c.mtime_ns,
                t.c.turn_count,
                t.c.item_count,
            )
            .select_from(t.outerjoin(f, f.c.id == t.c.live_file_id))
            .where(t.c.id.in_(chunk))
        ):
            file_found = row[2] is not None
            out[row[0]] = (
                row[1],
                (row[3], row[4]) if file_found else None,
                file_found,
                row[5],
                row[6],
            )
    return out


def _still_expected(current: dict[str, _Current], job: Job) -> bool:
    """Whether the database still is what the plan saw (see Job.expect)."""
    row = current.get(job.thread_id)
    if job.expect is None:
        return row is None
    if row is None or row[0] != job.expect[0] or not row[2]:
        return False
    return bool(row[1] == (job.expect[1], job.expect[2]))


def _file_rows(job: Job, rows: ThreadRows) -> list[dict[str, Any]]:
    out = []
    now = int(time.time() * 1000)
    for f in job.files:
        is_live = f is job.live
        prog = rows.progress if is_live else FileProgress()
        head_len, head_hash = head_fingerprint(f.path, prog.offset if is_live else f.size)
        out.append(
            {
                "root_id": job.root_id,
                "rel_path": f.rel,
                "thread_id": job.thread_id,
                "rollout_id": f.name.rollout_id or job.thread_id,
                "is_segment": f.name.segment_id is not None,
                "compressed": f.name.compressed,
                "archived": is_archived_rel(f.rel),
                "size": f.size,
                "mtime_ns": f.mtime_ns,
                "head_len": head_len,
                "head_hash": head_hash,
                "offset": prog.offset if is_live else 0,
                "line_count": prog.line_count if is_live else 0,
                "last_ordinal": prog.last_ordinal if is_live else None,
                "skipped_lines": len(prog.skips) if is_live else 0,
                "base_rollout_id": prog.base_rollout_id if is_live else None,
                "base_end_offset": prog.base_end_offset if is_live else None,
                "line_kinds": codec.dumps(prog.kinds) if is_live else "{}",
                "indexed_at_ms": now,
            }
        )
    return out


def _write_batch(
    conn: Connection, batch: list[tuple[Job, ThreadRows]], summary: IngestSummary
) -> list[Job]:
    """Write parsed threads in one transaction on the writer connection `conn`.

    Returns the jobs whose plan went stale (to redo). Every step is set-based:
    one re-check query per 500 threads, one DELETE for replaced threads, one
    executemany (SQLite) or COPY (PostgreSQL) per table, and the search index
    filled once per batch (search.schema.bulk_fill).
    """
    stale: list[Job] = []
    with write_tx_on(conn) as conn:
        current = _current_state(conn, [job.thread_id for job, _ in batch])
        in_batch = {job.thread_id for job, _ in batch}
        threads_out: list[dict[str, Any]] = []
        turns_out: list[tuple[Any, ...]] = []
        items_out: list[tuple[Any, ...]] = []
        fulls: list[tuple[Job, ThreadRows]] = []
        replaced: list[str] = []
        for job, rows in batch:
            if not _still_expected(current, job):
                stale.append(job)
                continue
            old_turns = old_items = 0
            if job.expect is not None:
                old_turns, old_items = current[job.thread_id][3], current[job.thread_id][4]
            if job.append:
                _write_append(conn, job, rows)
            else:
                if job.expect is not None:
                    replaced.append(job.thread_id)
                thread, turns, items = _shared_with_parent(conn, rows, in_batch)
                threads_out.append(thread)
                turns_out.extend(turns)
                items_out.extend(items)
                fulls.append((job, rows))
            summary.threads += 1
            summary.turns += rows.turn_count - old_turns
            summary.items += rows.item_count - old_items
            summary.skipped_lines += (
                len(rows.skips)
                if not job.append
                else len([k for k in rows.skips if k.offset >= job.old_offset])
            )
            if rows.error:
                summary.error(str(job.live.path), rows.error)
        history.delete_threads(conn, replaced)
        if threads_out:
            bulk_insert(conn, s.threads, threads_out)
            file_rows = [fr for _job, rows in fulls for fr in rows.files]
            bulk_insert(conn, s.rollout_files, file_rows)
            ids = _file_ids(conn, [(j.root_id, j.live.rel) for j, _ in fulls])
            conn.execute(
                update(s.threads)
                .where(s.threads.c.id == bindparam("tid"))
                .values(live_file_id=bindparam("fid")),
                [{"tid": j.thread_id, "fid": ids[(j.root_id, j.live.rel)]} for j, _ in fulls],
            )
            skip_rows = [
                (ids[(job.root_id, job.live.rel)], k.line, k.offset, k.end - k.offset, k.reason)
                for job, rows in fulls
                for k in rows.skips
            ]
            bulk_insert(conn, s.skipped_lines, skip_rows, _SKIP_COLS)
            bulk_insert(conn, s.turns, turns_out, TURN_COLS)
            # Only inserts into items in here (bulk_fill's condition): the
            # replaced threads' items went with the DELETE above.
            with search_schema.bulk_fill(conn):
                bulk_insert(conn, s.items, items_out, ITEM_COLS)
        # Forks not compared yet: written here before their parent, or whose parent
        # came in this batch (store.sql.history.share).
        stale_ids = {job.thread_id for job in stale}
        written = [job.thread_id for job, _ in batch if job.thread_id not in stale_ids]
        waiting = [
            th["id"]
            for th in threads_out
            if th["forked_from_id"] is not None and th["history_parent_id"] is None
        ]
        for fork_id in sorted({*waiting, *history.unshared_forks_of(conn, written)}):
            history.share(conn, fork_id)
    return stale


_SKIP_COLS = ("file_id", "line", "byte_offset", "length", "reason")
_NOT_SHARED = {"history_parent_id": None, "history_turns": 0, "history_line_shift": 0}
_TURN_POS = TURN_COLS.index("position")
_ITEM_TURN = ITEM_COLS.index("turn_position")


def _shared_with_parent(
    conn: Connection, rows: ThreadRows, in_batch: set[str]
) -> tuple[dict[str, Any], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The thread row, turns and items to write for a thread read in full.

    A fork whose parent is already stored (and not rewritten in this batch) is
    compared with it first, and the turns it shares are not written at all
    (store.sql.history). Other forks are compared after the write (`share`).
    """
    parent = rows.thread.get("forked_from_id")
    got = None
    if parent and parent not in in_batch:
        got = history.match_parent(
            conn,
            parent,
            rows.thread["id"],
            [dict(zip(TURN_COLS, r, strict=True)) for r in rows.turns],
            (dict(zip(ITEM_COLS, r, strict=True)) for r in rows.items),
        )
    if got is None:
        return rows.thread | _NOT_SHARED, rows.turns, rows.items
    k, shift = got
    return (
        rows.thread | history.sharing(str(parent), k, shift),
        [r for r in rows.turns if r[_TURN_POS] >= k],
        [r for r in rows.items if r[_ITEM_TURN] >= k],
    )


def _file_ids(conn: Connection, keys: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
    out: dict[tuple[int, str], int] = {}
    by_root: dict[int, list[str]] = {}
    for root_id, rel in keys:
        by_root.setdefault(root_id, []).append(rel)
    for root_id, rels in by_root.items():
        for i in range(0, len(rels), 500):
            chunk = rels[i : i + 500]
            for fid, rel in conn.execute(
                select(s.rollout_files.c.id, s.rollout_files.c.rel_path).where(
                    s.rollout_files.c.root_id == root_id, s.rollout_files.c.rel_path.in_(chunk)
                )
            ):
                out[(root_id, rel)] = int(fid)
    return out


def _write_append(conn: Connection, job: Job, rows: ThreadRows) -> None:
    tid = job.thread_id
    history.detach(conn, tid, rows.from_turn)  # its turns from there on are rewritten
    conn.execute(
        delete(s.items).where(s.items.c.thread_id == tid, s.items.c.turn_position >= rows.from_turn)
    )
    conn.execute(
        delete(s.turns).where(s.turns.c.thread_id == tid, s.turns.c.position >= rows.from_turn)
    )
    values = dict(rows.thread)
    values.pop("id")
    values.pop("live_file_id")
    conn.execute(update(s.threads).where(s.threads.c.id == tid).values(**values))
    assert job.expect is not None
    file_id = job.expect[0]
    fr = dict(next(r for r in rows.files if r["rel_path"] == job.live.rel))
    fr.pop("root_id")
    fr.pop("rel_path")
    fr.pop("thread_id")
    conn.execute(update(s.rollout_files).where(s.rollout_files.c.id == file_id).values(**fr))
    conn.execute(
        delete(s.skipped_lines).where(
            s.skipped_lines.c.file_id == file_id, s.skipped_lines.c.byte_offset >= job.old_offset
        )
    )
    new_skips = [
        (file_id, k.line, k.offset, k.end - k.offset, k.reason)
        for k in rows.skips
        if k.offset >= job.old_offset
    ]
    bulk_insert(conn, s.skipped_lines, new_skips, _SKIP_COLS)
    conn.execute(
        update(s.rollout_files)
        .where(s.rollout_files.c.id == file_id)
        .values(
            skipped_lines=select(func.count())
            .select_from(s.skipped_lines)
            .where(s.skipped_lines.c.file_id == file_id)
            .scalar_subquery()
        )
    )
    bulk_insert(conn, s.turns, rows.turns, TURN_COLS)
    bulk_insert(conn, s.items, rows.items, ITEM_COLS)


def _parse_append(engine: Engine, job: Job) -> ThreadRows | tuple[str, str]:
    # One snapshot: a concurrent writer may hand a parent's rows to this fork
    # between the statements that read its history (store.sql.history).
    with snapshot_connection(engine) as conn:
        trow = (
            conn.execute(select(s.threads).where(s.threads.c.id == job.thread_id)).mappings().one()
        )
        frow = (
            conn.execute(
                select(s.rollout_files).where(s.rollout_files.c.id == trow["live_file_id"])
            )
            .mappings()
            .one()
        )
        segs = history.segments(conn, job.thread_id)
        t_rows = history.turn_rows(conn, job.thread_id, segs)
        i_rows = list(
            history.item_rows(
                conn, job.thread_id, ("turn_position", "data", "line", "created_at_ms"), segs
            )
        )
    state = codec.loads(trow["reducer_state"])
    reducer = load_reducer(trow["reducer_mode"], state, t_rows, i_rows)
    meta = load_meta(dict(trow), state)
    progress = FileProgress(
        offset=frow["offset"],
        line_count=frow["line_count"],
        last_ordinal=frow["last_ordinal"],
        envelope=state.get("envelope"),
        kinds=codec.loads(frow["line_kinds"]),
        base_rollout_id=frow["base_rollout_id"],
        base_end_offset=frow["base_end_offset"],
    )
    from_turn = reducer.dirty_from
    try:
        parse = parse_thread(
            job.live.path, resolve_base=lambda _r: None, start=(meta, reducer, progress)
        )
    except OSError as exc:
        return (str(job.live.path), f"cannot read: {exc}")
    return _rows_for(job, parse, min(from_turn, reducer.dirty_from))


# -- names --------------------------------------------------------------------------


def _ingest_names(engine: Engine, root_id: int, index_file: Path) -> int:
    """Read new lines of session_index.jsonl; newest line for an id wins."""
    with write_tx(engine) as conn:
        row = conn.execute(
            select(s.roots.c.index_offset, s.roots.c.index_head).where(s.roots.c.id == root_id)
        ).one()
        offset, head = int(row[0]), row[1]
        try:
            size = index_file.stat().st_size
            cur_len, cur_head = head_fingerprint(index_file, min(size, 4096))
        except OSError:
            return 0
        if size < offset or (head and cur_head != head and offset >= 4096):
            offset = 0  # rewritten (e.g. a delete removed lines): read again
        if offset == 0:
            # Read from the start: the file is the whole truth for this root, so
            # names it no longer holds (a deleted thread's) go.
            conn.execute(delete(s.thread_names).where(s.thread_names.c.root_id == root_id))
        names: dict[str, tuple[str, str | None]] = {}
        with open(index_file, "rb") as fh:
            fh.seek(offset)
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break
                offset += len(raw)
                try:
                    obj = codec.loads(raw)
                except codec.JSONDecodeError:
                    continue
                if not isinstance(obj, dict):
                    continue
                tid, name = obj.get("id"), obj.get("thread_name")
                if isinstance(tid, str) and isinstance(name, str) and name.strip():
                    updated = obj.get("updated_at")
                    names[tid] = (name, updated if isinstance(updated, str) else None)
        if names:
            existing = {
                r[0]
                for r in conn.execute(
                    select(s.thread_names.c.thread_id).where(
                        s.thread_names.c.thread_id.in_(list(names))
                    )
                )
            }
            for tid, (name, updated) in names.items():
                if tid in existing:
                    conn.execute(
                        update(s.thread_names)
                        .where(s.thread_names.c.thread_id == tid)
                        .values(name=name, updated_at=updated, root_id=root_id)
                    )
                else:
                    conn.execute(
                        insert(s.thread_names).values(
                            thread_id=tid, name=name, updated_at=updated, root_id=root_id
                        )
                    )
        conn.execute(
            update(s.roots)
            .where(s.roots.c.id == root_id)
            .values(index_offset=offset, index_head=cur_head if cur_len else "")
        )
        return len(names)


def _remove_gone(engine: Engine, file_ids: list[int], summary: IngestSummary) -> None:
    if not file_ids:
        return
    with write_tx(engine) as conn:
        rows = conn.execute(
            select(
                s.rollout_files.c.id,
                s.rollout_files.c.thread_id,
                s.rollout_files.c.rel_path,
                s.roots.c.path,
            )
            .join(s.roots, s.roots.c.id == s.rollout_files.c.root_id)
            .where(s.rollout_files.c.id.in_(file_ids))
            # A vaulted file has no file on disk on purpose: its bytes are in the database.
            .where(s.rollout_files.c.id.not_in(select(archive_vault.c.file_id)))
        ).all()
        for fid, tid, rel, root in rows:
            if (Path(root) / rel).exists():
                continue  # came back meanwhile
            live = conn.execute(
                select(s.threads.c.live_file_id).where(s.threads.c.id == tid)
            ).scalar()
            if live == fid:
                history.delete_threads(conn, [tid])
            else:
                conn.execute(delete(s.rollout_files).where(s.rollout_files.c.id == fid))
            summary.removed += 1


# -- the driver -----------------------------------------------------------------------


def ingest(
    engine: Engine,
    paths: Iterable[Path | RootScan],
    *,
    workers: int | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    on_progress: ProgressFn | None = None,
    stop: Callable[[], bool] | None = None,
) -> IngestSummary:
    """Index `paths`; a RootScan (the watcher's targeted file set) is taken as given.

    `stop` is asked between threads (between tasks with workers): once it says
    True, no more threads are read, what was read is written, and the import
    returns early. Every thread written is whole, and the next import reads
    the rest, as after a crash.
    """
    stopped = stop or (lambda: False)
    summary = IngestSummary()
    scans = [p if isinstance(p, RootScan) else scan_path(Path(p)) for p in paths]
    plans: list[tuple[RootScan, int, list[Job], list[int]]] = []
    for scan in scans:
        root_id, jobs, gone = _plan_root(engine, scan, summary)
        plans.append((scan, root_id, jobs, gone))
    resolve: dict[str, str] = {}
    for scan in scans:
        for path in scan.files:
            name = parse_name(path.name)
            if name.rollout_id:
                resolve.setdefault(name.rollout_id, str(path))
    all_jobs = [j for _, _, jobs, _ in plans for j in jobs]
    partial = [
        rid for scan, rid, jobs, _ in plans if not scan.complete and any(not j.append for j in jobs)
    ]
    if partial:
        # A fork read in full from a partial scan may need a parent the scan did not list.
        for rollout_id, stored_path in _stored_rollouts(engine, partial):
            resolve.setdefault(rollout_id, stored_path)
    total = sum(j.live.size for j in all_jobs)
    done = 0
    pending: list[tuple[Job, ThreadRows]] = []
    pending_items = 0

    # One writer connection for the whole run; each batch is its own transaction on it.
    writer = engine.connect()

    def flush() -> None:
        nonlocal pending, pending_items
        if not pending:
            return
        stale = _write_batch(writer, pending, summary)
        if writer.dialect.name == "sqlite":
            # Hand the page cache back between batches: the writer lives for the
            # whole import, and a full cache would stay resident to the end.
            raw: Any = writer.connection.driver_connection
            raw.execute("PRAGMA shrink_memory")
        pending, pending_items = [], 0
        for job in stale:
            _redo(engine, writer, job, summary)

    def take(job: Job, result: ThreadRows | tuple[str, str]) -> None:
        nonlocal done, pending_items
        done += job.live.size
        if _count_read(summary, job, result):
            assert not isinstance(result, tuple)
            pending.append((job, result))
            pending_items += len(result.items)
            if pending_items >= WRITE_BATCH_ITEMS or len(pending) >= WRITE_BATCH_THREADS:
                flush()
        if on_progress is not None:
            on_progress(done, total)

    _init_worker(resolve, max_line_bytes)
    appends = [j for j in all_jobs if j.append]
    fulls = [j for j in all_jobs if not j.append]
    n_workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    full_bytes = sum(j.live.size for j in fulls)
    deferred = False
    if engine.dialect.name == "postgresql":
        with write_tx_on(writer) as conn:
            # A big import that died left the trigram index dropped: build it first.
            search_schema.ensure_substring_index(conn)
            if full_bytes >= PARALLEL_MIN_BYTES:
                deferred = search_schema.defer_substring_index(conn)
    try:
        for job in appends:
            if stopped():
                break
            take(job, _parse_append(engine, job))
        flush()
        # An explicit worker count always uses workers; the default only when it pays.
        big_enough = workers is not None or full_bytes >= PARALLEL_MIN_BYTES
        if n_workers > 1 and big_enough and len(fulls) > 1:
            url = engine.url.render_as_string(hide_password=False)
            tasks = _parallel(fulls, n_workers, resolve, max_line_bytes, url, stopped)
            for part, size in tasks:
                summary.add(part)
                done += size
                if on_progress is not None:
                    on_progress(done, total)
        else:
            for job in fulls:
                if stopped():
                    break
                take(job, _parse_full(job))
        flush()
        if deferred:
            with write_tx_on(writer) as conn:
                search_schema.ensure_substring_index(conn)
    finally:
        writer.close()
    for scan, root_id, _jobs, gone in plans:
        if scan.index_file is not None:
            _ingest_names(engine, root_id, scan.index_file)
        _remove_gone(engine, gone, summary)
    return summary


def _stored_rollouts(engine: Engine, root_ids: list[int]) -> Iterator[tuple[str, str]]:
    """(rollout id, absolute path) of every stored file of these roots."""
    with engine.connect() as conn:
        for rollout_id, rel, root in conn.execute(
            select(s.rollout_files.c.rollout_id, s.rollout_files.c.rel_path, s.roots.c.path)
            .join(s.roots, s.roots.c.id == s.rollout_files.c.root_id)
            .where(s.rollout_files.c.root_id.in_(root_ids))
        ):
            yield rollout_id, f"{root}/{rel}"


def _redo(engine: Engine, writer: Connection, job: Job, summary: IngestSummary) -> None:
    """A concurrent importer changed this thread: plan it again from the database.

    The stale write counted nothing (see _write_batch), so this counts the
    thread once: written, or unchanged when the other importer wrote it as is.
    """
    with engine.connect() as conn:
        row = conn.execute(
            select(
                s.threads.c.live_file_id,
                s.rollout_files.c.offset,
                s.rollout_files.c.mtime_ns,
                s.rollout_files.c.size,
                s.rollout_files.c.rel_path,
            )
            .join(s.rollout_files, s.rollout_files.c.id == s.threads.c.live_file_id)
            .where(s.threads.c.id == job.thread_id)
        ).first()
    if (
        row is not None
        and row[4] == job.live.rel
        and row[3] == job.live.size
        and (row[2] == job.live.mtime_ns)
    ):
        summary.unchanged += 1  # the other importer wrote exactly this state
        return
    fresh = Job(
        job.thread_id,
        job.root_id,
        job.live,
        job.files,
        False,
        None if row is None else (row[0], row[1], row[2]),
    )
    result = _parse_full(fresh)
    if isinstance(result, tuple):
        summary.error(*result)
        return
    for again in _write_batch(writer, [(fresh, result)], summary):
        summary.error(str(again.live.path), "changed by another importer twice; run import again")


def _count_read(summary: IngestSummary, job: Job, result: ThreadRows | tuple[str, str]) -> bool:
    """Count a parsed job's bytes (or its error); True when it has rows to write."""
    if isinstance(result, tuple):
        summary.error(*result)
        return False
    summary.bytes += result.progress.offset - job.old_offset
    if not job.append:
        # The thread's other files (revert segments' main file) were read too.
        summary.bytes += sum(f.size for f in job.files if f is not job.live)
    return True


# Worker state for `_parse_and_write`: set up once per worker process.
_WORKER_GC_THRESHOLD = 20_000
_WORKER_ENGINE: Engine | None = None
_WORKER_WRITE_LOCK: Any = None
_WORKER_JOBS: list[Job] = []


def _init_writer_worker(
    resolve: dict[str, str], max_line: int, url: str, lock: Any, jobs: list[Job]
) -> None:
    global _WORKER_ENGINE, _WORKER_WRITE_LOCK, _WORKER_JOBS
    _init_worker(resolve, max_line)
    _WORKER_ENGINE = make_engine(url)
    _WORKER_WRITE_LOCK = lock
    _WORKER_JOBS = jobs
    # What the worker inherited lives as long as it does: leave it out of every
    # collection (a full one walked all of it), and collect young objects less
    # often. Parsing allocates many short-lived dicts; garbage collection took
    # about a tenth of the parsing time with the defaults.
    gc.freeze()
    gc.set_threshold(_WORKER_GC_THRESHOLD)
    if _WORKER_ENGINE.dialect.name == "sqlite":
        # The worker checkpoints itself, after it has let go of the write lock
        # (see _parse_and_write): no checkpoint inside a commit.
        event.listen(_WORKER_ENGINE, "connect", _no_autocheckpoint)
    # Close the worker's connection when the pool shuts the worker down (a
    # worker leaves through os._exit, which runs no atexit handlers).
    Finalize(None, _WORKER_ENGINE.dispose, exitpriority=10)


def _parse_and_write(span: tuple[int, int]) -> tuple[IngestSummary, int]:
    """A worker's task: parse these threads (`_WORKER_JOBS[start:stop]`), then
    write them as one batch.

    Each worker writes its own batches, so parsing in one worker overlaps
    writing in the other, and no rows travel back to the parent. Writes stay
    one at a time: the workers of this import take `_WORKER_WRITE_LOCK` (a
    quick hand-over), and the database's own write lock still orders them with
    any other importer (`_write_batch` re-checks every thread under it).
    Returns this task's counts and the bytes of its files.
    """
    engine = _WORKER_ENGINE
    assert engine is not None
    jobs = _WORKER_JOBS[span[0] : span[1]]
    part = IngestSummary()
    batch: list[tuple[Job, ThreadRows]] = []
    for job in jobs:
        result = _parse_full(job)
        if _count_read(part, job, result):
            assert not isinstance(result, tuple)
            batch.append((job, result))
    if batch:
        with _WORKER_WRITE_LOCK, engine.connect() as writer:
            for job in _write_batch(writer, batch, part):
                _redo(engine, writer, job, part)
        if engine.dialect.name == "sqlite":
            _checkpoint(engine)
    return part, sum(j.live.size for j in jobs)


def _no_autocheckpoint(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


def _checkpoint(engine: Engine) -> None:
    """Copy the WAL into the database file, outside the import's write lock.

    SQLite's automatic checkpoint runs inside the commit that crosses its
    threshold, so the other worker would wait for its copying and fsyncs; a
    PASSIVE checkpoint here runs while the other worker writes (it takes no
    write lock, and never waits: a busy checkpointer just skips this round).
    """
    with engine.connect() as conn:
        raw: Any = conn.connection.driver_connection
        raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _tasks(jobs: list[Job]) -> Iterator[tuple[int, int]]:
    """Spans of jobs of about WRITE_TASK_BYTES of input (one write batch each)."""
    start = size = 0
    for i, job in enumerate(jobs):
        size += job.live.size
        if size >= WRITE_TASK_BYTES or i + 1 - start >= WRITE_BATCH_THREADS:
            yield start, i + 1
            start, size = i + 1, 0
    if start < len(jobs):
        yield start, len(jobs)


def _parallel(
    jobs: list[Job],
    n_workers: int,
    resolve: dict[str, str],
    max_line: int,
    url: str,
    stopped: Callable[[], bool],
) -> Iterator[tuple[IngestSummary, int]]:
    """Run `_parse_and_write` over the jobs in worker processes, a few tasks ahead.

    Once `stopped()` says True, no new task starts; those in flight finish.

    The workers get the job list once, when they start (a forked worker
    inherits it; no copy), and each task as a span of it: pickling the jobs
    task by task cost the parent and the workers about 0.2 s CPU per 10,000.
    """
    # In thread id order, each task's rows land in one stretch of every index
    # keyed by thread id (threads, turns, items, rollout_files) instead of all
    # over it: fewer pages to touch and to read back after the other worker's
    # commit. Writing the 10k corpus took ~18% less CPU.
    jobs = sorted(jobs, key=lambda j: j.thread_id)
    ctx = get_context("fork") if "fork" in get_all_start_methods() else get_context()
    lock = ctx.Lock()
    max_in_flight = n_workers * 2
    with ProcessPoolExecutor(
        n_workers,
        mp_context=ctx,
        initializer=_init_writer_worker,
        initargs=(resolve, max_line, url, lock, jobs),
    ) as pool:
        it = _tasks(jobs)
        in_flight: set[Future[tuple[IngestSummary, int]]] = set()
        for task in it:
            in_flight.add(pool.submit(_parse_and_write, task))
            if len(in_flight) >= max_in_flight:
                break
        while in_flight:
            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
                nxt = None if stopped() else next(it, None)
                if nxt is not None:
                    in_flight.add(pool.submit(_parse_and_write, nxt))
