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

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


BATCH_THREADS = 256  # operations journaled, run and committed together
BATCH_BYTES = 256 << 20


def begin_many(engine: Engine, plans: list[Plan]) -> list[int | None]:
    """Commit the intents of several operations in one transaction.

    Returns each plan's journal id, or None for a thread that another
    operation still holds (not started).
    """
    out: list[int | None] = []
    with write_tx(engine) as conn:
        tids = [p.thread_id for p in plans if p.thread_id is not None]
        held: set[str] = set()
        for i in range(0, len(tids), 500):
            held.update(
                conn.execute(
                    select(t.journal.c.thread_id).where(
                        t.journal.c.thread_id.in_(tids[i : i + 500]), t.journal.c.state == "open"
                    )
                ).scalars()
            )
        ms = now_ms()
        for plan in plans:
            if plan.thread_id in held:
                out.append(None)
                continue
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
            out.append(int(pk[0]))
    for op in sorted({p.op for p in plans}):
        fsops.crash_point(f"{op}:intent")
    return out


def begin(engine: Engine, plan: Plan) -> int:
    """Commit the intent; refuses a thread that another operation holds."""
    entry = begin_many(engine, [plan])[0]
    if entry is None:
        raise Conflict(f"thread {plan.thread_id} is in an unfinished operation")
    return entry


def run(engine: Engine, entry_id: int, plan: Plan) -> None:
    """Do (or finish) every step of the plan, then commit; abort on a hard failure."""
    errors = run_batch(engine, [(entry_id, plan)])
    if entry_id in errors:
        raise errors[entry_id]


def execute(engine: Engine, plans: list[Plan]) -> list[Exception | None]:
    """Journal and run `plans` in batches; each plan's error (it was rolled back) or None.

    A batch shares one intent transaction, one fsync per folder between its
    phases and one commit transaction; every plan is still its own journal
    entry, finished or rolled back on its own.
    """
    out: list[Exception | None] = []
    with engine.connect():  # keeps SQLite's WAL open between transactions
        i = 0
        while i < len(plans):
            j, size = i, 0
            while j < len(plans) and j - i < BATCH_THREADS and (j == i or size < BATCH_BYTES):
                size += sum(st.size for st in plans[j].steps)
                j += 1
            batch = plans[i:j]
            i = j
            entries = begin_many(engine, batch)
            started = [(e, p) for e, p in zip(entries, batch, strict=True) if e is not None]
            errors = run_batch(engine, started)
            for e, p in zip(entries, batch, strict=True):
                if e is None:
                    out.append(Conflict(f"thread {p.thread_id} is in an unfinished operation"))
                else:
                    out.append(errors.get(e))
    return out


def run_batch(engine: Engine, entries: list[tuple[int, Plan]]) -> dict[int, Exception]:
    """Do (or finish) the file steps of several operations, then commit them together.

    Phases, each made durable (one fsync per folder) before the next starts:
    1. copies and renames: compressed and restored copies written, checked and
       renamed into place, moves renamed, vault uploads committed;
    2. sources whose copies are now durable removed;
    3. one database transaction: every operation's rows, audit entries and
       `state = done` (vaulted sources are unlinked inside it).
    An operation that fails is aborted alone; the others go on.
    """
    errors: dict[int, Exception] = {}
    sync = fsops.DirSync()
    placed: list[tuple[int, Plan, list[Path]]] = []
    for entry_id, plan in entries:
        removals: list[Path] = []
        try:
            for step in plan.steps:
                _file_step(engine, entry_id, plan, step, sync, removals)
            placed.append((entry_id, plan, removals))
        except (OSError, RolloutsError) as exc:
            errors[entry_id] = exc
    sync.flush()
    done: list[tuple[int, Plan]] = []
    for entry_id, plan, removals in placed:
        try:
            for path in removals:
                fsops.unlink(path, sync)
            done.append((entry_id, plan))
        except OSError as exc:
            errors[entry_id] = exc
    sync.flush()
    for op in sorted({plan.op for _, plan in done}):
        fsops.crash_point(f"{op}:files")
    errors.update(_commit_many(engine, done))
    for entry_id, plan in entries:
        if entry_id in errors:
            _abort(engine, entry_id, plan, str(errors[entry_id]))
    return errors


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


def _file_step(
    engine: Engine,
    entry_id: int,
    plan: Plan,
    st: Step,
    sync: fsops.DirSync,
    removals: list[Path],
) -> None:
    root = Path(plan.root)
    src, dst = root / st.src, root / st.dst
    if st.mode in ("move", "trash", "untrash"):
        _move(src, dst, sync)
    elif st.mode == "compress":
        _compress(src, dst, st, sync, removals)
    elif st.mode == "vault":
        _vault(engine, entry_id, plan, st, src)
    elif st.mode == "unvault" or st.mode == "untrash_vault":
        _unvault(engine, st, dst, sync)
    elif st.mode == "purge" and st.src:
        fsops.unlink(src, sync)
    fsops.crash_point(f"{plan.op}:step")


def _move(src: Path, dst: Path, sync: fsops.DirSync) -> None:
    if dst.exists() and not src.exists():
        return  # done before a crash
    if not src.exists():
        raise Conflict(f"cannot move {src}: it is gone")
    fsops.move(src, dst, sync)


def changed(src: Path, st: Step) -> bool:
    """Whether the source file differs (size or mtime) from what the plan saw."""
    try:
        info = src.stat()
    except FileNotFoundError:
        return True
    return info.st_size != st.size or info.st_mtime_ns != st.mtime_ns


def _compress(
    src: Path, dst: Path, st: Step, sync: fsops.DirSync, removals: list[Path]
) -> None:
    if dst.exists():
        if src.exists():  # renamed before a crash: the source goes if the copy matches it
            if fsops.content_hash(dst)[0] != fsops.content_hash(src)[0]:
                raise Conflict(f"{dst} is in the way and differs from {src}")
            removals.append(src)
        return
    if not src.exists():
        raise Conflict(f"cannot compress {src}: it is gone")
    sha, size = fsops.write_compressed(dst, src)
    fsops.crash_point("compress:written")
    if size != st.size or changed(src, st):
        fsops.drop_tmp(dst)
        raise Conflict(f"{src} changed while it was compressed (Codex may be writing it)")
    st.sha256 = sha
    fsops.commit_tmp(dst, st.mtime_ns, sync)
    fsops.crash_point("compress:renamed")
    removals.append(src)


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
    if changed(src, st):
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
        st.sha256 = blob.sha256
        conn.execute(
            update(t.journal)
            .where(t.journal.c.id == entry_id)
            .values(plan=plan.to_json(), updated_at_ms=now_ms())
        )
    fsops.crash_point("vault:committed")


def _unvault(engine: Engine, st: Step, dst: Path, sync: fsops.DirSync) -> None:
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
    got = fsops.write_chunks(dst, vault.read(engine, blob.id))
    fsops.crash_point("unvault:written")
    if got != (blob.sha256, blob.size):
        fsops.drop_tmp(dst)
        raise Conflict(f"restored copy of blob {blob.id} does not match its sha256")
    fsops.commit_tmp(dst, st.mtime_ns or None, sync)


# -- commit and abort ---------------------------------------------------------------------


def _commit_many(engine: Engine, done: list[tuple[int, Plan]]) -> dict[int, Exception]:
    """Commit operations whose file steps are done: together, or one by one if one fails."""
    from store.archive import commit as c

    if not done:
        return {}
    for _entry_id, plan in done:
        if plan.op == "untrash":
            c.reindex(engine, Path(plan.root), plan)
    try:
        _commit_tx(engine, done)
        return {}
    except (OSError, RolloutsError) as exc:
        if len(done) == 1:
            return {done[0][0]: exc}
    errors: dict[int, Exception] = {}
    for item in done:
        try:
            _commit_tx(engine, [item])
        except (OSError, RolloutsError) as exc:
            errors[item[0]] = exc
    return errors


def _commit_tx(engine: Engine, done: list[tuple[int, Plan]]) -> None:
    from store.archive import commit as c

    sync = fsops.DirSync()
    with write_tx(engine) as conn:
        for entry_id, plan in done:
            state = conn.execute(
                select(t.journal.c.state).where(t.journal.c.id == entry_id)
            ).scalar_one()
            if state != "open":
                continue  # another process finished it
            c.apply(conn, Path(plan.root), plan, sync)
            _set_state(conn, entry_id, "done", None)
        sync.flush()  # vaulted sources unlinked inside the transaction
        for op in sorted({plan.op for _, plan in done}):
            fsops.crash_point(f"{op}:before-commit")


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
