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

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, insert, select, update

from store import codec
from store.archive import fsops, vault
from store.archive import tables as t
from store.clock import now_ms
from store.errors import Conflict, RolloutsError
from store.rollout.framing import open_stream
from store.sql.engine import write_tx

if TYPE_CHECKING:
    from store.ingest import ProgressFn  # (bytes done, bytes in all)


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


def run(engine: Engine, entry_id: int, plan: Plan) -> None:
    """Do (or finish) every step of the plan, then commit; abort on a hard failure."""
    errors = run_batch(engine, [(entry_id, plan)])
    if entry_id in errors:
        raise errors[entry_id]


def execute(
    engine: Engine, plans: list[Plan], on_progress: ProgressFn | None = None
) -> list[Exception | None]:
    """Journal and run `plans` in batches; each plan's error (it was rolled back) or None.

    `on_progress(done, total)` (bytes of the plans' files) is called after each batch.

    A batch (up to BATCH_THREADS plans or BATCH_BYTES) shares one intent
    transaction, one flush to disk between its phases and one commit
    transaction; every plan is still its own journal entry, finished or rolled
    back on its own.
    """
    out: list[Exception | None] = []
    total = sum(st.size for p in plans for st in p.steps)
    done = 0
    with engine.connect() as rconn:  # also keeps SQLite's WAL open between transactions
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
            errors = run_batch(engine, started, rconn)
            for e, p in zip(entries, batch, strict=True):
                if e is None:
                    out.append(Conflict(f"thread {p.thread_id} is in an unfinished operation"))
                else:
                    out.append(errors.get(e))
            done += size
            if on_progress is not None:
                on_progress(done, total)
    return out


def run_batch(
    engine: Engine, entries: list[tuple[int, Plan]], rconn: Connection | None = None
) -> dict[int, Exception]:
    """Do (or finish) the file steps of several operations, then commit them together.

    Phases, each made durable (`DirSync.flush`: one syncfs, or one fsync per
    file and folder) before the next starts:
    1. compressed and restored copies written to temporary names and checked,
       moves renamed, vault uploads committed;
    2. the temporary copies renamed into place;
    3. sources whose copies are now durable removed;
    4. one database transaction: every operation's rows, audit entries and
       `state = done` (vaulted sources are unlinked inside it).
    An operation that fails is aborted alone; the others go on.
    """
    if rconn is None:
        with engine.connect() as conn:
            return run_batch(engine, entries, conn)
    errors: dict[int, Exception] = {}
    sync = fsops.DirSync()
    placed: list[tuple[int, Plan, _Later]] = []
    _vault_all(engine, entries, errors)
    for entry_id, plan in entries:
        if entry_id in errors:
            continue
        later = _Later()
        try:
            for step in plan.steps:
                _file_step(rconn, entry_id, plan, step, sync, later)
            placed.append((entry_id, plan, later))
        except (OSError, RolloutsError) as exc:
            errors[entry_id] = exc
        finally:
            rconn.rollback()  # no read snapshot held across operations
    for phase in ("renames", "removals"):
        sync.flush()
        kept = []
        for entry_id, plan, later in placed:
            try:
                later.run(phase, sync)
                kept.append((entry_id, plan, later))
            except OSError as exc:
                errors[entry_id] = exc
        placed = kept
    sync.flush()
    done = [(entry_id, plan) for entry_id, plan, _later in placed]
    for op in sorted({plan.op for _, plan in done}):
        fsops.crash_point(f"{op}:files")
    errors.update(_commit_many(engine, done))
    for entry_id, plan in entries:
        if entry_id in errors:
            _abort(engine, entry_id, plan, str(errors[entry_id]))
    return errors


@dataclass
class _Later:
    """File steps of one operation that wait for the batch's earlier steps to be durable."""

    renames: list[tuple[Path, int | None, str]] = field(default_factory=list)
    removals: list[Path] = field(default_factory=list)

    def run(self, phase: str, sync: fsops.DirSync) -> None:
        if phase == "renames":
            for dst, mtime_ns, crash in self.renames:
                fsops.commit_tmp(dst, mtime_ns, sync)
                fsops.crash_point(crash)
        else:
            for path in self.removals:
                fsops.unlink(path, sync)


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
    rconn: Connection,
    entry_id: int,
    plan: Plan,
    st: Step,
    sync: fsops.DirSync,
    later: _Later,
) -> None:
    root = Path(plan.root)
    src, dst = root / st.src, root / st.dst
    if st.mode in ("move", "trash", "untrash"):
        _move(src, dst, sync)
    elif st.mode == "compress":
        _compress(src, dst, st, sync, later)
    elif st.mode == "vault":
        pass  # done for the whole batch first (_vault_all)
    elif st.mode == "unvault" or st.mode == "untrash_vault":
        _unvault(rconn, st, dst, sync, later)
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


def _compress(src: Path, dst: Path, st: Step, sync: fsops.DirSync, later: _Later) -> None:
    if dst.exists():
        if src.exists():  # renamed before a crash: the source goes if the copy matches it
            if fsops.content_hash(dst)[0] != fsops.content_hash(src)[0]:
                raise Conflict(f"{dst} is in the way and differs from {src}")
            later.removals.append(src)
        return
    if not src.exists():
        raise Conflict(f"cannot compress {src}: it is gone")
    sha, size = fsops.write_compressed(dst, src, sync)
    fsops.crash_point("compress:written")
    if size != st.size or changed(src, st):
        fsops.drop_tmp(dst)
        raise Conflict(f"{src} changed while it was compressed (Codex may be writing it)")
    st.sha256 = sha
    later.renames.append((dst, st.mtime_ns, "compress:renamed"))
    later.removals.append(src)


def _vault_all(
    engine: Engine, entries: list[tuple[int, Plan]], errors: dict[int, Exception]
) -> None:
    """The vault steps of a batch: upload every file, then commit every vault row at once.

    Transactions: one to create the blobs (journaled), one per 8 MB of chunks
    across files, one for the checked blobs and vault rows. A file that fails
    fails its own operation only.
    """
    todo = [(e, p, st) for e, p in entries for st in p.steps if st.mode == "vault"]
    if not todo:
        return
    ids = [st.file_id for _e, _p, st in todo]
    with engine.connect() as conn:
        held = set(
            conn.execute(select(t.vault.c.file_id).where(t.vault.c.file_id.in_(ids))).scalars()
        )
    # uploaded and committed before: the source goes in the final transaction
    todo = [(e, p, st) for e, p, st in todo if st.file_id not in held]
    root_of = {e: Path(p.root) for e, p in entries}
    for e, _p, st in todo:
        if not (root_of[e] / st.src).exists():
            errors.setdefault(e, Conflict(f"cannot vault {root_of[e] / st.src}: it is gone"))
    todo = [(e, p, st) for e, p, st in todo if e not in errors]
    if not todo:
        return
    with write_tx(engine) as conn:
        for _e, _p, st in todo:
            if st.blob_id is not None and vault.get(conn, st.blob_id) is None:
                vault.drop_blob(conn, st.blob_id)  # half an upload from before a crash
            st.blob_id = vault.new_blob(conn)
        _save_plans(conn, {e: p for e, p, _st in todo})
    up = vault.Uploader(engine)
    sent: dict[int, tuple[str, int]] = {}
    for e, _p, st in todo:
        assert st.blob_id is not None
        try:
            with open_stream(root_of[e] / st.src) as stream:
                sent[st.blob_id] = up.add(st.blob_id, stream)
        except (OSError, RolloutsError) as exc:
            errors.setdefault(e, exc)
    up.flush()
    fsops.crash_point("vault:uploaded")
    with write_tx(engine) as conn:
        for e, p, st in todo:
            if e in errors:
                continue
            if changed(root_of[e] / st.src, st):
                errors[e] = Conflict(
                    f"{root_of[e] / st.src} changed while it was vaulted (Codex may be writing it)"
                )
                continue
            assert st.blob_id is not None
            try:  # raises before it writes anything
                blob = vault.finish(engine, conn, st.blob_id, *sent[st.blob_id])
            except RolloutsError as exc:
                errors[e] = exc
                continue
            conn.execute(
                insert(t.vault).values(
                    file_id=st.file_id,
                    thread_id=p.thread_id,
                    blob_id=blob.id,
                    source_rel=st.src,
                    mtime_ns=st.mtime_ns,
                    vaulted_at_ms=now_ms(),
                )
            )
            st.blob_id = blob.id
            st.sha256 = blob.sha256
        _save_plans(conn, {e: p for e, p, _st in todo if e not in errors})
    fsops.crash_point("vault:committed")


def _save_plans(conn: Connection, plans: dict[int, Plan]) -> None:
    for entry_id, plan in plans.items():
        conn.execute(
            update(t.journal)
            .where(t.journal.c.id == entry_id)
            .values(plan=plan.to_json(), updated_at_ms=now_ms())
        )


def _unvault(conn: Connection, st: Step, dst: Path, sync: fsops.DirSync, later: _Later) -> None:
    assert st.blob_id is not None
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
    got = fsops.write_chunks(dst, vault.read(conn.engine, blob.id, conn), sync)
    fsops.crash_point("unvault:written")
    if got != (blob.sha256, blob.size):
        fsops.drop_tmp(dst)
        raise Conflict(f"restored copy of blob {blob.id} does not match its sha256")
    later.renames.append((dst, st.mtime_ns or None, "unvault:renamed"))


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


__all__ = ["Plan", "Step", "begin_many", "log", "recover", "run"]
