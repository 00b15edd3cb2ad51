"""The database half of each journaled operation: one transaction per operation.

`apply` runs inside the write transaction that also marks the journal entry
done, after every file step is complete, so readers see the files and the
rows change together (as far as a file system and a database can).
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from store.archive import fsops, vault
from store.archive import tables as t
from store.archive.journal import Plan, Step, changed, log
from store.clock import now_ms
from store.codex_home import is_archived_rel
from store.errors import Conflict
from store.sql import history
from store.sql import schema as s


def apply(conn: Connection, root: Path, plan: Plan, sync: fsops.DirSync | None = None) -> None:
    """The rows of one finished operation; `sync` collects folders to fsync before commit."""
    if plan.op == "archive":
        _archive(conn, root, plan, sync)
        return
    handler = {
        "unarchive": _unarchive,
        "restore": _restore,
        "delete": _delete,
        "untrash": _untrash,
        "purge": _purge,
    }[plan.op]
    handler(conn, root, plan)


def _set_file(conn: Connection, file_id: int | None, rel: str, size: int, mtime_ns: int) -> None:
    conn.execute(
        update(s.rollout_files)
        .where(s.rollout_files.c.id == file_id)
        .values(
            rel_path=rel,
            archived=is_archived_rel(rel),
            compressed=rel.endswith(".zst"),
            size=size,
            mtime_ns=mtime_ns,
        )
    )


def _on_disk(conn: Connection, root: Path, st: Step) -> None:
    p = root / st.dst
    info = p.stat()
    _set_file(conn, st.file_id, st.dst, info.st_size, info.st_mtime_ns)


def _thread_bytes(conn: Connection, tid: str | None, **values: object) -> None:
    total = conn.execute(
        select(func.coalesce(func.sum(s.rollout_files.c.size), 0)).where(
            s.rollout_files.c.thread_id == tid
        )
    ).scalar_one()
    conn.execute(update(s.threads).where(s.threads.c.id == tid).values(bytes=total, **values))


def _archive(conn: Connection, root: Path, plan: Plan, sync: fsops.DirSync | None) -> None:
    for st in plan.steps:
        if st.mode == "vault":
            held = conn.execute(
                select(t.vault.c.blob_id).where(t.vault.c.file_id == st.file_id)
            ).first()
            if held is None:
                raise Conflict(f"vault copy of {st.src} is missing; the file is kept")
            blob = vault.get(conn, int(held[0]))
            assert blob is not None
            src = root / st.src
            if src.exists() and changed(src, st):
                raise Conflict(f"{src} changed after it was vaulted; the file is kept")
            fsops.unlink(src, sync)  # inside the transaction: a crash here leaves the vault row
            _set_file(conn, st.file_id, st.dst, blob.size, st.mtime_ns)
            after = 0
        else:
            _on_disk(conn, root, st)
            after = (root / st.dst).stat().st_size
        log(
            conn,
            "vault" if st.mode == "vault" else "archive",
            plan.thread_id,
            st.dst,
            st.size,
            after,
            mode=st.mode,
            source=st.src,
        )
    _thread_bytes(conn, plan.thread_id, archived=True, archived_at_ms=now_ms())


def _unarchive(conn: Connection, root: Path, plan: Plan) -> None:
    now_ns = now_ms() * 1_000_000
    for st in plan.steps:
        p = root / st.dst
        os.utime(p, ns=(now_ns, now_ns))  # Codex's unarchive touches the file too
        _on_disk(conn, root, st)
        if st.mode == "unvault":
            _drop_vault_row(conn, st)
        log(
            conn,
            "unarchive",
            plan.thread_id,
            st.dst,
            st.size,
            p.stat().st_size,
            mode=st.mode,
            source=st.src,
        )
    _thread_bytes(conn, plan.thread_id, archived=False, archived_at_ms=None, updated_at_ms=now_ms())


def _restore(conn: Connection, root: Path, plan: Plan) -> None:
    for st in plan.steps:
        _on_disk(conn, root, st)
        _drop_vault_row(conn, st)
        log(
            conn,
            "restore",
            plan.thread_id,
            st.dst,
            0,
            (root / st.dst).stat().st_size,
            blob=st.blob_id,
        )
    _thread_bytes(conn, plan.thread_id)


def _drop_vault_row(conn: Connection, st: Step) -> None:
    conn.execute(delete(t.vault).where(t.vault.c.file_id == st.file_id))
    if st.blob_id is not None:
        vault.release(conn, st.blob_id)


def _delete(conn: Connection, root: Path, plan: Plan) -> None:
    ms = now_ms()
    grace_ms = int(plan.extra.get("grace_ms", 0))
    for st in plan.steps:
        conn.execute(
            insert(t.trash).values(
                thread_id=plan.thread_id,
                root_id=plan.root_id,
                rel_path=st.src,
                trash_rel=st.dst or None,
                blob_id=st.blob_id if st.mode == "trash_vault" else None,
                size=st.size,
                mtime_ns=st.mtime_ns,
                title=plan.extra.get("title", ""),
                cwd=plan.extra.get("cwd", ""),
                deleted_at_ms=ms,
                purge_after_ms=ms + grace_ms,
            )
        )
        log(conn, "delete", plan.thread_id, st.dst or st.src, st.size, st.size, mode=st.mode)
    conn.execute(delete(t.vault).where(t.vault.c.thread_id == plan.thread_id))
    assert plan.thread_id is not None  # a delete plan names its thread
    history.delete_threads(conn, [plan.thread_id])


def reindex(engine: Engine, root: Path, plan: Plan) -> None:
    """Index the files a trash restore put back (before its commit; idempotent)."""
    from store.ingest import ingest

    paths = [root / st.dst for st in plan.steps if (root / st.dst).exists()]
    if paths:
        ingest(engine, paths, workers=1)


def _untrash(conn: Connection, root: Path, plan: Plan) -> None:
    for st in plan.steps:
        conn.execute(delete(t.trash).where(t.trash.c.id == st.trash_id))
        if st.mode == "untrash_vault" and st.blob_id is not None:
            vault.release(conn, st.blob_id)
        log(conn, "untrash", plan.thread_id, st.dst, 0, st.size, mode=st.mode)


def _purge(conn: Connection, root: Path, plan: Plan) -> None:
    for st in plan.steps:
        conn.execute(delete(t.trash).where(t.trash.c.id == st.trash_id))
        if st.blob_id is not None:
            vault.release(conn, st.blob_id)
        log(conn, "purge", plan.thread_id, st.src or f"blob:{st.blob_id}", st.size, 0)
