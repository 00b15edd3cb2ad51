"""The operations journal: intent, file steps, commit; replayed after a crash.

An operation on one thread is written as a plan (its file steps) and
committed before any file is touched. Each step is idempotent: it looks at
the files and the vault and does only what is left. The final database
update, the audit entry and `state = done` share one transaction. So a run
killed at any instant is finished by `recover()`, which every archive command
calls first; a step that cannot go on (a file changed under it, a
destination that is in the way) is rolled back and the entry aborted, with
every original byte still in place.

Ordering rules that keep bytes safe:
- a compressed or restored copy is written to a temporary name, flushed,
  hashed against the source's sha256 and only then renamed into place;
- a source is removed only after its copy is in place (a rename, a checked
  file, or a vault blob committed and read back);
- a vaulted file is unlinked inside the write transaction that points its
  row at the vault, after the vault row was committed.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard
from sqlalchemy import Connection, Engine, insert, select, update

from store import codec
from store.archive import fsops, vault
from store.archive import tables as t
from store.errors import Conflict, RolloutsError
from store.rollout.framing import open_stream
from store.sql.engine import write_tx


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Step:
    """One file of a thread and what happens to it."""

    mode: str  # move, compress, vault, unvault, trash, trash_vault, untrash, purge
    file_id: int | None
    src: str  # rel path (or trash rel) it comes from; "" for a blob
    dst: str  # rel path it goes to; "" for the vault or purge
    size: int  # bytes on disk before
    mtime_ns: int  # to give the new file (None-like 0: now)
    sha256: str = ""
    blob_id: int | None = None
    trash_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Plan:
    op: str
    thread_id: str | None
    root: str
    root_id: int
    steps: list[Step]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return codec.dumps(
            {
                "op": self.op,
                "thread_id": self.thread_id,
                "root": self.root,
                "root_id": self.root_id,
                "steps": [st.to_json() for st in self.steps],
                "extra": self.extra,
            }
        )

    @staticmethod
    def from_json(text: str) -> Plan:
        d = codec.loads(text)
        return Plan(
            d["op"],
            d["thread_id"],
            d["root"],
            d["root_id"],
            [Step(**st) for st in d["steps"]],
            d.get("extra", {}),
        )


def begin(engine: Engine, plan: Plan) -> int:
    """Commit the intent; refuses a thread that another operation holds."""
    with write_tx(engine) as conn:
        if plan.thread_id is not None:
            busy = conn.execute(
                select(t.journal.c.id).where(
                    t.journal.c.thread_id == plan.thread_id, t.journal.c.state == "open"
                )
            ).first()
            if busy is not None:
                raise Conflict(f"thread {plan.thread_id} is in an unfinished operation")
        ms = now_ms()
        res = conn.execute(
            insert(t.journal).values(
                op=plan.op,
                thread_id=plan.thread_id,
                state="open",
                plan=plan.to_json(),
                created_at_ms=ms,
                updated_at_ms=ms,
            )
        )
        pk = res.inserted_primary_key
        assert pk is not None
    fsops.crash_point(f"{plan.op}:intent")
    return int(pk[0])


def run(engine: Engine, entry_id: int, plan: Plan) -> None:
    """Do (or finish) every step of the plan, then commit; abort on a hard failure."""
    try:
        for step in plan.steps:
            _file_step(engine, entry_id, plan, step)
        fsops.crash_point(f"{plan.op}:files")
        _commit(engine, entry_id, plan)
    except (OSError, RolloutsError) as exc:
        _abort(engine, entry_id, plan, str(exc))
        raise


def recover(engine: Engine) -> list[str]:
    """Finish (or roll back) every operation a crash left open; what was done."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(t.journal.c.id, t.journal.c.plan)
            .where(t.journal.c.state == "open")
            .order_by(t.journal.c.id)
        ).all()
    out = []
    for entry_id, text in rows:
        plan = Plan.from_json(text)
        try:
            run(engine, int(entry_id), plan)
            out.append(f"finished interrupted {plan.op} of {plan.thread_id or 'the trash'}")
        except (OSError, RolloutsError) as exc:
            out.append(f"rolled back interrupted {plan.op} of {plan.thread_id}: {exc}")
    return out


# -- file steps ------------------------------------------------------------------------


def _file_step(engine: Engine, entry_id: int, plan: Plan, st: Step) -> None:
    root = Path(plan.root)
    src, dst = root / st.src, root / st.dst
    if st.mode in ("move", "trash", "untrash"):
        _move(src, dst)
    elif st.mode == "compress":
        _compress(src, dst, st)
    elif st.mode == "vault":
        _vault(engine, entry_id, plan, st, src)
    elif st.mode == "unvault" or st.mode == "untrash_vault":
        _unvault(engine, st, dst)
    elif st.mode == "purge" and st.src:
        fsops.unlink(src)
    fsops.crash_point(f"{plan.op}:step")


def _move(src: Path, dst: Path) -> None:
    if dst.exists() and not src.exists():
        return  # done before a crash
    if not src.exists():
        raise Conflict(f"cannot move {src}: it is gone")
    fsops.move(src, dst)


def _zst_hash(path: Path) -> str:
    """sha256 of the content of a zstd file whatever its name (the temporary one)."""
    h = hashlib.sha256()
    with open(path, "rb") as raw:
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        while chunk := reader.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _compress(src: Path, dst: Path, st: Step) -> None:
    if dst.exists():
        sha, _ = fsops.content_hash(dst)
        if sha != st.sha256:
            raise Conflict(f"{dst} is in the way and differs from {src}")
        fsops.unlink(src)
        return
    if not src.exists():
        raise Conflict(f"cannot compress {src}: it is gone")
    fsops.write_chunks(dst, fsops.read_chunks(src), compress=True)
    fsops.crash_point("compress:written")
    if _zst_hash(fsops.tmp_path(dst)) != st.sha256:
        fsops.drop_tmp(dst)
        raise Conflict(f"{src} changed while it was compressed (Codex may be writing it)")
    fsops.commit_tmp(dst, st.mtime_ns)
    fsops.crash_point("compress:renamed")
    fsops.unlink(src)


def _vault(engine: Engine, entry_id: int, plan: Plan, st: Step, src: Path) -> None:
    assert st.file_id is not None
    with engine.connect() as conn:
        row = conn.execute(select(t.vault.c.blob_id).where(t.vault.c.file_id == st.file_id)).first()
        if row is not None:
            return  # uploaded and committed; the source goes in the final transaction
    if not src.exists():
        raise Conflict(f"cannot vault {src}: it is gone")
    with write_tx(engine) as conn:
        if st.blob_id is not None and vault.get(conn, st.blob_id) is None:
            vault.drop_blob(conn, st.blob_id)  # half an upload from before a crash
        st.blob_id = vault.new_blob(conn)
        conn.execute(
            update(t.journal)
            .where(t.journal.c.id == entry_id)
            .values(plan=plan.to_json(), updated_at_ms=now_ms())
        )
    with open_stream(src) as stream:
        blob = vault.upload(engine, st.blob_id, stream)
    fsops.crash_point("vault:uploaded")
    if blob.sha256 != st.sha256:
        raise Conflict(f"{src} changed while it was vaulted (Codex may be writing it)")
    with write_tx(engine) as conn:
        conn.execute(
            insert(t.vault).values(
                file_id=st.file_id,
                thread_id=plan.thread_id,
                blob_id=blob.id,
                source_rel=st.src,
                mtime_ns=st.mtime_ns,
                vaulted_at_ms=now_ms(),
            )
        )
        st.blob_id = blob.id
        conn.execute(
            update(t.journal)
            .where(t.journal.c.id == entry_id)
            .values(plan=plan.to_json(), updated_at_ms=now_ms())
        )
    fsops.crash_point("vault:committed")


def _unvault(engine: Engine, st: Step, dst: Path) -> None:
    assert st.blob_id is not None
    with engine.connect() as conn:
        blob = vault.get(conn, st.blob_id)
    if blob is None:
        if dst.exists():
            return  # restored and committed before a crash
        raise Conflict(f"vault blob {st.blob_id} is missing")
    if dst.exists():
        sha, _ = fsops.content_hash(dst)
        if sha != blob.sha256:
            raise Conflict(f"{dst} is in the way and differs from the vaulted copy")
        return
    fsops.write_chunks(dst, vault.read(engine, blob.id))
    fsops.crash_point("unvault:written")
    got, _ = _plain_hash(fsops.tmp_path(dst))
    if got != blob.sha256:
        fsops.drop_tmp(dst)
        raise Conflict(f"restored copy of blob {blob.id} does not match its sha256")
    fsops.commit_tmp(dst, st.mtime_ns or None)


def _plain_hash(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


# -- commit and abort ---------------------------------------------------------------------


def _commit(engine: Engine, entry_id: int, plan: Plan) -> None:
    from store.archive import commit as c

    root = Path(plan.root)
    if plan.op == "untrash":
        c.reindex(engine, root, plan)
    with write_tx(engine) as conn:
        state = conn.execute(
            select(t.journal.c.state).where(t.journal.c.id == entry_id)
        ).scalar_one()
        if state != "open":
            return  # another process finished it
        c.apply(conn, root, plan)
        fsops.crash_point(f"{plan.op}:before-commit")
        _set_state(conn, entry_id, "done", None)


def _abort(engine: Engine, entry_id: int, plan: Plan, message: str) -> None:
    root = Path(plan.root)
    for st in plan.steps:
        if st.dst:
            fsops.drop_tmp(root / st.dst)
    with write_tx(engine) as conn:
        for st in plan.steps:
            if st.mode == "vault" and st.blob_id is not None:
                held = conn.execute(
                    select(t.vault.c.blob_id).where(t.vault.c.file_id == st.file_id)
                ).first()
                if held is None and vault.get(conn, st.blob_id) is None:
                    vault.drop_blob(conn, st.blob_id)
        _set_state(conn, entry_id, "aborted", message)


def _set_state(conn: Connection, entry_id: int, state: str, message: str | None) -> None:
    conn.execute(
        update(t.journal)
        .where(t.journal.c.id == entry_id)
        .values(state=state, message=message, updated_at_ms=now_ms())
    )


def log(
    conn: Connection,
    op: str,
    thread_id: str | None,
    path: str,
    before: int,
    after: int,
    **detail: Any,
) -> None:
    """One audit-log line (inside the operation's commit transaction)."""
    conn.execute(
        insert(t.audit).values(
            at_ms=now_ms(),
            op=op,
            thread_id=thread_id,
            path=path,
            bytes_before=before,
            bytes_after=after,
            detail=codec.dumps(detail),
        )
    )


__all__ = ["Plan", "Step", "begin", "log", "recover", "run"]
