"""Archive, unarchive, restore, delete and the trash: planning and reports.

Each public function takes thread ids, first finishes whatever a crash left
in the journal, then plans each thread (what moves where), checks that Codex
is not writing it, and runs the plan through the journal. `dry_run` plans
and reports without touching anything. Layout follows Codex: archived files
live flat in `archived_sessions/`, unarchive puts them back under
`sessions/YYYY/MM/DD/` from the timestamp in the file name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import zstandard
from sqlalchemy import Connection, Engine, select

from store.archive import fsops, journal
from store.archive import tables as t
from store.archive.journal import Plan, Step
from store.clock import now_ms
from store.codex_home import ARCHIVED, SESSIONS
from store.errors import Conflict, NotFound, RolloutsError, WrongState
from store.rollout.framing import read_chunks
from store.rollout.naming import parse_name
from store.sql import schema as s
from store.sql.mutations import refuse_if_history_base

if TYPE_CHECKING:
    from store.ingest import ProgressFn  # (bytes done, bytes in all)

TRASH = ".rollouts-trash"
DEFAULT_GRACE_MS = 30 * 86400 * 1000


class HasEngine(Protocol):
    engine: Engine


@dataclass
class Report:
    """What an operation did (or, with dry_run, would do)."""

    dry_run: bool = False
    threads: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    items: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    # The error behind each skip, for callers that answer with it (not in to_json).
    errors: dict[str, Exception] = field(default_factory=dict)

    def skip(self, tid: str, exc: Exception) -> None:
        self.skipped.append({"threadId": tid, "reason": str(exc)})
        self.errors[tid] = exc

    def to_json(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run,
            "threads": self.threads,
            "bytesBefore": self.bytes_before,
            "bytesAfter": self.bytes_after,
            "items": self.items,
            "skipped": self.skipped,
            "recovered": self.recovered,
        }


@dataclass
class FileRow:
    id: int
    rel: str
    size: int
    mtime_ns: int
    compressed: bool
    blob_id: int | None  # set when the bytes are in the vault
    vault_mtime_ns: int


def _thread(conn: Connection, tid: str) -> tuple[dict[str, Any], Path, int, list[FileRow]]:
    th = s.threads.c  # only what plans need (not the big reducer state)
    row = (
        conn.execute(select(th.archived, th.preview, th.cwd).where(th.id == tid)).mappings().first()
    )
    if row is None:
        raise NotFound(f"thread not found: {tid}")
    files = conn.execute(
        select(
            s.rollout_files.c.id,
            s.rollout_files.c.rel_path,
            s.rollout_files.c.size,
            s.rollout_files.c.mtime_ns,
            s.rollout_files.c.compressed,
            s.rollout_files.c.root_id,
            s.roots.c.path,
            t.vault.c.blob_id,
            t.vault.c.mtime_ns,
        )
        .join(s.roots, s.roots.c.id == s.rollout_files.c.root_id)
        .outerjoin(t.vault, t.vault.c.file_id == s.rollout_files.c.id)
        .where(s.rollout_files.c.thread_id == tid)
        .order_by(s.rollout_files.c.rel_path)
    ).all()
    if not files:
        raise NotFound(f"thread {tid} has no rollout file")
    root, root_id = Path(files[0][6]), int(files[0][5])
    rows = [
        FileRow(int(f[0]), str(f[1]), int(f[2]), int(f[3]), bool(f[4]), f[7], int(f[8] or 0))
        for f in files
    ]
    for f in rows:
        if not f.rel.startswith((SESSIONS + "/", ARCHIVED + "/")):
            raise Conflict(f"thread {tid} is not inside a CODEX_HOME ({root / f.rel})")
    return dict(row), root, root_id, rows


def _plain(name: str) -> str:
    return name[: -len(".zst")] if name.endswith(".zst") else name


def _active_rel(rel: str) -> str:
    """sessions/YYYY/MM/DD/<name> from the timestamp in the file name (as Codex does)."""
    name = Path(rel).name
    ts = parse_name(name).timestamp
    if ts is None:
        raise Conflict(f"rollout path {rel!r} missing filename timestamp")
    return f"{SESSIONS}/{ts[0:4]}/{ts[5:7]}/{ts[8:10]}/{name}"


def _check_idle(root: Path, f: FileRow) -> None:
    reason = fsops.busy_reason(root / f.rel, f.size, f.mtime_ns)
    if reason is not None:
        raise Conflict(reason)


def _plan_archive(
    conn: Connection, tid: str, *, compress: bool, vault: bool
) -> tuple[Plan, dict[str, Any]]:
    row, root, root_id, files = _thread(conn, tid)
    if any(f.blob_id is not None for f in files):
        raise WrongState("already vaulted")
    steps = []
    for f in files:
        name = Path(f.rel).name
        # No hashing here: the copy is hashed while it is written (one pass)
        # and the source's size and mtime are checked again before it goes.
        if vault:
            steps.append(
                Step("vault", f.id, f.rel, f"{ARCHIVED}/{_plain(name)}", f.size, f.mtime_ns)
            )
        elif compress and not f.compressed:
            steps.append(
                Step("compress", f.id, f.rel, f"{ARCHIVED}/{name}.zst", f.size, f.mtime_ns)
            )
        elif not f.rel.startswith(ARCHIVED + "/"):
            steps.append(Step("move", f.id, f.rel, f"{ARCHIVED}/{name}", f.size, f.mtime_ns))
    if not steps:
        raise WrongState("already archived")
    for f in files:
        _check_idle(root, f)
    return Plan("archive", tid, str(root), root_id, steps), row


def _plan_unarchive(conn: Connection, tid: str) -> tuple[Plan, dict[str, Any]]:
    row, root, root_id, files = _thread(conn, tid)
    if not row["archived"]:
        raise WrongState("not archived")
    steps = []
    for f in files:
        if f.blob_id is not None:
            dst = _active_rel(_plain(f.rel))
            steps.append(Step("unvault", f.id, "", dst, 0, 0, blob_id=f.blob_id))
        else:
            _check_idle(root, f)
            steps.append(Step("move", f.id, f.rel, _active_rel(f.rel), f.size, f.mtime_ns))
    return Plan("unarchive", tid, str(root), root_id, steps), row


def _plan_restore(conn: Connection, tid: str) -> tuple[Plan, dict[str, Any]]:
    row, root, root_id, files = _thread(conn, tid)
    steps = [
        Step("unvault", f.id, "", f.rel, 0, f.vault_mtime_ns, blob_id=f.blob_id)
        for f in files
        if f.blob_id is not None
    ]
    if not steps:
        raise WrongState("not vaulted (nothing to restore)")
    return Plan("restore", tid, str(root), root_id, steps), row


def _plan_delete(conn: Connection, tid: str, grace_ms: int) -> tuple[Plan, dict[str, Any]]:
    row, root, root_id, files = _thread(conn, tid)
    stamp = now_ms()
    steps = []
    for f in files:
        if f.blob_id is not None:
            steps.append(
                Step("trash_vault", f.id, f.rel, "", f.size, f.vault_mtime_ns, blob_id=f.blob_id)
            )
        else:
            _check_idle(root, f)
            dst = f"{TRASH}/{tid}-{stamp}/{Path(f.rel).name}"
            steps.append(Step("trash", f.id, f.rel, dst, f.size, f.mtime_ns))
    title = row.get("preview") or ""
    extra = {"grace_ms": grace_ms, "title": title, "cwd": row.get("cwd") or ""}
    return Plan("delete", tid, str(root), root_id, steps, extra), row


# A dry run of --compress compresses at most this much of each file to estimate its size.
DRY_RUN_SAMPLE_BYTES = 8 << 20


def _estimate_after(root: Path, st: Step) -> int:
    """Bytes on disk after a step (for --compress: exact up to 8 MiB, else estimated)."""
    if st.mode in ("vault", "trash", "trash_vault", "purge"):
        return 0
    if st.mode == "compress":
        # Compress the head of the file (all of a small one) and scale by the size.
        cobj = zstandard.ZstdCompressor(level=fsops.ZSTD_LEVEL).compressobj()
        n = read = 0
        for chunk in read_chunks(root / st.src, DRY_RUN_SAMPLE_BYTES):
            n += len(cobj.compress(chunk))
            read += len(chunk)
        n += len(cobj.flush())
        return n if read >= st.size or not read else round(n * st.size / read)
    if st.mode == "unvault":
        return st.size
    return st.size


def _run_many(
    store: HasEngine,
    ids: list[str],
    planner: Any,
    *,
    dry_run: bool,
    action: str,
    on_progress: ProgressFn | None = None,
) -> Report:
    engine = store.engine
    report = Report(dry_run=dry_run)
    if not dry_run:
        report.recovered = journal.recover(engine)
    plans: list[Plan] = []
    with engine.connect() as conn:
        for tid in ids:
            try:
                plan, _row = planner(conn, tid)
            except RolloutsError as exc:
                report.skip(tid, exc)
                continue
            finally:
                conn.rollback()  # no read snapshot held across plans
            plans.append(plan)
    return finish(engine, report, plans, dry_run=dry_run, action=action, on_progress=on_progress)


def finish(
    engine: Engine,
    report: Report,
    plans: list[Plan],
    *,
    dry_run: bool,
    action: str,
    on_progress: ProgressFn | None = None,
) -> Report:
    """Run the plans (unless a dry run) and add each outcome to the report."""
    if dry_run:
        outcomes: list[Exception | None] = [None] * len(plans)
    else:
        outcomes = journal.execute(engine, plans, on_progress)
    for plan, err in zip(plans, outcomes, strict=True):
        tid = str(plan.thread_id)
        if err is not None:
            report.skip(tid, err)
            continue
        root = Path(plan.root)
        report.threads += 1
        report.bytes_before += sum(st.size for st in plan.steps if st.mode != "unvault")
        if dry_run:
            report.bytes_after += sum(_estimate_after(root, st) for st in plan.steps)
        else:
            report.bytes_after += sum(
                (root / st.dst).stat().st_size
                for st in plan.steps
                if st.dst and st.mode not in ("trash",) and (root / st.dst).exists()
            )
        for st in plan.steps:
            report.items.append(
                {
                    "threadId": tid,
                    "action": _action(action, st),
                    "path": str(root / (st.dst or st.src)),
                    "from": str(root / st.src) if st.src else None,
                }
            )
    return report


def _action(op: str, st: Step) -> str:
    return {
        "move": op,
        "compress": "compress",
        "vault": "vault",
        "unvault": "restore" if op == "restore" else "unarchive",
        "trash": "trash",
        "trash_vault": "trash",
    }.get(st.mode, op)


# -- public API ---------------------------------------------------------------------------


def archive_threads(
    store: HasEngine,
    ids: list[str],
    *,
    compress: bool = False,
    vault: bool = False,
    dry_run: bool = False,
    on_progress: ProgressFn | None = None,
) -> Report:
    """Move threads to archived_sessions/ (optionally as .jsonl.zst, or into the vault)."""

    def planner(conn: Connection, tid: str) -> tuple[Plan, dict[str, Any]]:
        if vault:  # its file leaves the folder, where Codex reads reference forks from
            refuse_if_history_base(conn, tid, "vault", together=ids)
        return _plan_archive(conn, tid, compress=compress, vault=vault)

    return _run_many(
        store, ids, planner, dry_run=dry_run, action="archive", on_progress=on_progress
    )


def unarchive_threads(
    store: HasEngine,
    ids: list[str],
    *,
    dry_run: bool = False,
    on_progress: ProgressFn | None = None,
) -> Report:
    """Put archived (or vaulted) threads back under sessions/YYYY/MM/DD/."""
    return _run_many(
        store, ids, _plan_unarchive, dry_run=dry_run, action="unarchive", on_progress=on_progress
    )


def restore_threads(
    store: HasEngine,
    ids: list[str],
    *,
    dry_run: bool = False,
    on_progress: ProgressFn | None = None,
) -> Report:
    """Write vaulted threads back to their files, byte for byte (sha256 checked)."""
    return _run_many(
        store, ids, _plan_restore, dry_run=dry_run, action="restore", on_progress=on_progress
    )


def delete_threads(
    store: HasEngine,
    ids: list[str],
    *,
    grace_ms: int = DEFAULT_GRACE_MS,
    dry_run: bool = False,
    on_progress: ProgressFn | None = None,
) -> Report:
    """Move threads to the trash (CODEX_HOME/.rollouts-trash or the vault), never silently."""

    def planner(conn: Connection, tid: str) -> tuple[Plan, dict[str, Any]]:
        refuse_if_history_base(conn, tid, "delete", together=ids)
        return _plan_delete(conn, tid, grace_ms)

    return _run_many(store, ids, planner, dry_run=dry_run, action="delete", on_progress=on_progress)


def recover(store: HasEngine) -> list[str]:
    """Finish or roll back operations a crash interrupted."""
    return journal.recover(store.engine)


def select_threads_all(store: HasEngine) -> list[str]:
    """Every indexed thread id, oldest first (benchmarks, retention)."""
    with store.engine.connect() as conn:
        return [
            str(r)
            for r in conn.execute(
                select(s.threads.c.id).order_by(s.threads.c.updated_at_ms, s.threads.c.id)
            ).scalars()
        ]
