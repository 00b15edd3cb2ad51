"""Writes of the thread API: start, append, name, git metadata, fork, resume.

Every write that Codex keeps in files goes to the files first (a new rollout,
appended lines, a `session_index.jsonl` entry), durably, and is then indexed
by the normal ingest path. The database therefore never holds anything the
files do not, and an interrupted write is completed by the next ingest.
Git metadata set through the API, which Codex keeps only in its state
database, lives in `thread_overrides`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select, update

from store import codec
from store.clock import now_ms
from store.errors import Conflict, InvalidInput, NotFound
from store.rollout import writer
from store.rollout.framing import iter_lines, open_stream, read_chunks
from store.rollout.naming import validate_thread_id
from store.rollout.records import SESSION_META, Record, decode_line
from store.sql import history, pages
from store.sql import schema as s
from store.sql.engine import snapshot_connection, write_tx

if TYPE_CHECKING:
    from store.sql.backend import SqlThreadStore

CLI_VERSION = "0.169.0"  # the Codex version whose formats we write


@dataclass(frozen=True)
class ThreadFile:
    thread_id: str
    path: Path
    root: Path
    archived: bool


def thread_file(st: SqlThreadStore, thread_id: str, *, missing: str | None = None) -> ThreadFile:
    """The main rollout file of a thread; NotFound with Codex's message otherwise."""
    tid = validate_thread_id(thread_id)
    with st.engine.connect() as conn:
        row = conn.execute(
            select(s.roots.c.path, s.rollout_files.c.rel_path, s.threads.c.archived)
            .select_from(s.threads)
            .join(s.rollout_files, s.rollout_files.c.thread_id == s.threads.c.id)
            .join(s.roots, s.roots.c.id == s.rollout_files.c.root_id)
            .where(s.threads.c.id == tid, s.rollout_files.c.is_segment.is_(False))
            .order_by(s.rollout_files.c.id)
        ).first()
    if row is None:
        raise NotFound(missing or f"no rollout found for thread id {tid}")
    root = Path(row[0])
    path = (root / row[1]).resolve()
    if not path.is_relative_to(root.resolve()):
        raise InvalidInput(f"stored path {row[1]!r} leads outside its root {root}")
    return ThreadFile(tid, path, root, bool(row[2]))


def active_thread_file(st: SqlThreadStore, thread_id: str) -> ThreadFile:
    """The main file of a thread that is not archived (resume and fork refuse those)."""
    f = thread_file(st, thread_id)
    if f.archived:
        raise Conflict(
            f"session {f.thread_id} is archived. Run `codex unarchive {f.thread_id}` "
            "to unarchive it first."
        )
    return f


def _home_for_writes(st: SqlThreadStore) -> Path:
    if st.codex_home is None:
        raise InvalidInput("no CODEX_HOME is attached to this store: open it with codex_home=...")
    return st.codex_home


def _reindex(st: SqlThreadStore, path: Path, *more: Path) -> None:
    """Index `path` (and `more`) now, in this process; an error names `path`."""
    summary = st.ingest([path, *more], workers=1)
    if summary.errors:
        raise InvalidInput(f"could not index {path}: {summary.error_details}")


# -- names and metadata ------------------------------------------------------------


def _append_name(home: Path, thread_id: str, name: str) -> str:
    """Append a `session_index.jsonl` entry, as Codex names threads; its timestamp."""
    stamp = writer.rfc3339_ms(now_ms())
    entry = codec.dumpb({"id": thread_id, "thread_name": name, "updated_at": stamp}) + b"\n"
    writer.append_lines(home / "session_index.jsonl", "session_index.jsonl", [entry], create=True)
    return stamp


def set_name(st: SqlThreadStore, thread_id: str, name: str) -> None:
    """Name a thread as Codex does: a `session_index.jsonl` entry (newest wins)."""
    clean = name.strip() if isinstance(name, str) else ""
    if not clean:
        raise InvalidInput("thread name must not be empty")
    f = thread_file(st, thread_id)
    if f.archived:
        raise NotFound(f"no rollout found for thread id {f.thread_id}")
    _store_name(st, f.thread_id, clean, _append_name(f.root, f.thread_id, clean))


def _store_name(st: SqlThreadStore, thread_id: str, name: str, stamp: str) -> None:
    """The name just appended to `session_index.jsonl`, in the database at once."""
    with write_tx(st.engine) as conn:
        conn.execute(delete(s.thread_names).where(s.thread_names.c.thread_id == thread_id))
        conn.execute(
            insert(s.thread_names).values(thread_id=thread_id, name=name, updated_at=stamp)
        )


_GIT_FIELDS = {"sha": "git_sha", "branch": "git_branch", "originUrl": "git_origin_url"}


def update_git(st: SqlThreadStore, thread_id: str, git: dict[str, Any]) -> None:
    """Patch a thread's git info: absent = keep, None = clear, string = set."""
    f = thread_file(st, thread_id)
    values: dict[str, Any] = {}
    for key, column in _GIT_FIELDS.items():
        if key not in git:
            continue
        value = git[key]
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise InvalidInput(f"gitInfo.{key} must be a non-empty string or null")
        values[column] = value
    if not values:
        return
    with write_tx(st.engine) as conn:
        exists = conn.execute(
            select(s.thread_overrides.c.thread_id).where(
                s.thread_overrides.c.thread_id == f.thread_id
            )
        ).first()
        flags = {f"{c}_set": True for c in values}
        if exists:
            conn.execute(
                update(s.thread_overrides)
                .where(s.thread_overrides.c.thread_id == f.thread_id)
                .values(**values, **flags, updated_at_ms=now_ms())
            )
        else:
            conn.execute(
                insert(s.thread_overrides).values(
                    thread_id=f.thread_id, **values, **flags, updated_at_ms=now_ms()
                )
            )


# -- new threads and appends --------------------------------------------------------


def session_meta(
    thread_id: str,
    ts_ms: int,
    *,
    cwd: str,
    originator: str,
    model_provider: str | None,
    source: Any = "vscode",
    forked_from_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    payload: dict[str, Any] = {
        "id": thread_id,
        "session_id": thread_id,
        "timestamp": writer.rfc3339_ms(ts_ms),
        "cwd": cwd,
        "originator": originator,
        "cli_version": CLI_VERSION,
        "source": source,
    }
    if forked_from_id is not None:
        payload["forked_from_id"] = forked_from_id
    if model_provider is not None:
        payload["model_provider"] = model_provider
    payload.update(extra or {})
    return writer.line("session_meta", payload, ts_ms)


def create_thread(
    st: SqlThreadStore,
    *,
    cwd: str,
    model_provider: str | None = None,
    model: str | None = None,
    originator: str = "rollouts",
    source: Any = "vscode",
) -> str:
    """Record a new, empty thread: a rollout file holding its `session_meta`."""
    home = _home_for_writes(st)
    ts = now_ms()
    tid = writer.uuid7(ts)
    extra = {"model": model} if model else None
    meta = session_meta(
        tid,
        ts,
        cwd=cwd,
        originator=originator,
        model_provider=model_provider or st.default_provider,
        source=source,
        extra=extra,
    )
    path = writer.new_rollout_path(home, tid, ts)
    writer.create_file(path, [meta])
    _reindex(st, path)
    return tid


def append_items(st: SqlThreadStore, thread_id: str, items: list[Any]) -> int:
    """Append raw Responses API items to a thread's model history (`response_item` lines)."""
    if not isinstance(items, list) or not items:
        raise InvalidInput("items must be a non-empty array of Responses API items")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise InvalidInput(f"items[{i}] must be an object with a string `type`")
    f = thread_file(st, thread_id, missing=f"thread not found: {thread_id}")
    ts = now_ms()
    writer.append_lines(
        f.path, f"thread {f.thread_id}", [writer.line("response_item", it, ts) for it in items]
    )
    _reindex(st, f.path)
    return len(items)


# -- fork and resume ----------------------------------------------------------------


@dataclass(frozen=True)
class ForkPoint:
    """Where a fork's history ends in its source's turns."""

    cut_line: int | None  # first physical line of the source not copied; None: all
    later_turns: frozenset[str]  # ids of the source's turns after the fork point
    open_turn: str | None  # a kept turn still in progress, to close as interrupted


def _fork_point(turns: list[dict[str, Any]], last_turn_id: str | None) -> ForkPoint:
    """The fork point after `last_turn_id` (the whole history when None).

    Forking after a turn keeps everything up to the next turn's first line.
    A history that ends inside a turn gets that turn aborted, as Codex does.
    """
    visible = [r for r in turns if pages.is_shown(r)]
    later: list[dict[str, Any]] = []
    if last_turn_id is None:
        kept = visible
    else:
        match = [r for r in visible if r["turn_id"] == last_turn_id]
        if not match:
            raise InvalidInput(f"lastTurnId '{last_turn_id}' was not found in the source thread")
        turn = match[-1]
        if str(turn["turn_id"]).startswith("rollout-"):  # synthetic id of an implicit turn
            raise InvalidInput(
                f"lastTurnId '{last_turn_id}' is not a persisted canonical turn in the source thread"
            )
        if turn["status"] == "inProgress" and turn["is_open"] and turn is visible[-1]:
            raise InvalidInput(f"lastTurnId '{last_turn_id}' identifies an in-progress turn")
        later = [r for r in turns if r["position"] > turn["position"]]
        kept = [r for r in visible if r["position"] <= turn["position"]]
    open_turn = None
    if kept and kept[-1]["status"] == "inProgress" and kept[-1]["explicit"]:
        open_turn = kept[-1]["turn_id"]
    return ForkPoint(
        cut_line=min(r["first_line"] for r in later) if later else None,
        later_turns=frozenset(r["turn_id"] for r in later),
        open_turn=open_turn,
    )


def _copy_until(path: Path, cut_line: int | None) -> int:
    """Byte length of the complete lines before physical line `cut_line` (streamed)."""
    end = 0
    with open_stream(path) as stream:
        for raw in iter_lines(stream):
            if cut_line is not None and raw.number >= cut_line:
                break
            if raw.terminated:
                end = raw.end
    return end


def _turn_ids_in(payload: dict[str, Any]) -> set[str]:
    """Turn ids a rollout line names (lifecycle events, items, turn contexts)."""
    found = {payload.get("turn_id")}
    attribution = payload.get("turn_attribution")
    if isinstance(attribution, dict):
        found.add(attribution.get("turn_id"))
    return {x for x in found if isinstance(x, str)}


@dataclass(frozen=True)
class RefPoint:
    """Where a reference fork's shared history ends: a thread's file, a byte, an ordinal."""

    thread_id: str
    end_offset: int
    end_ordinal: int


def _ref_point(
    st: SqlThreadStore, f: ThreadFile, later: frozenset[str], depth: int = 0
) -> RefPoint:
    """The history of `f` up to (not including) the first line of a turn in `later`.

    A reference fork shares a prefix of another thread's file. When a later
    turn lies in this thread's own base (it is itself a reference fork), the
    cut point is in the base, so the point moves there.
    """
    if depth > 8:
        raise InvalidInput(f"history base chain of thread {f.thread_id} is too deep")
    own_ids: set[str] = set()
    end, last_ordinal = 0, -1
    base: Any = None
    with open_stream(f.path) as stream:
        for raw in iter_lines(stream):
            if not raw.terminated:
                break  # a line still being written is not history yet
            rec = decode_line(raw, envelope=True)
            if not isinstance(rec, Record):
                end = raw.end  # a blank or skipped line stays in the shared prefix
                continue
            if raw.number == 0 and rec.kind == SESSION_META:
                base = rec.payload.get("history_base")
            ids = _turn_ids_in(rec.payload)
            ordinal = rec.ordinal if rec.ordinal is not None else last_ordinal + 1
            if ids & later:
                if later - own_ids - ids and isinstance(base, dict):
                    break  # some later turns are in the base: cut there instead
                return RefPoint(f.thread_id, raw.offset, ordinal)
            own_ids |= ids
            end, last_ordinal = raw.end, ordinal
    if later and isinstance(base, dict) and isinstance(base.get("thread_id"), str):
        return _ref_point(st, thread_file(st, base["thread_id"]), later, depth + 1)
    return RefPoint(f.thread_id, end, last_ordinal + 1)


def fork(st: SqlThreadStore, thread_id: str, *, last_turn_id: str | None = None) -> str:
    """Fork a thread into a new rollout file, in the format Codex 0.169 writes; returns its id.

    Paginated threads get a reference fork, as Codex writes them: a new file
    whose `session_meta.history_base` points at the shared prefix of the
    source (nothing is copied). Legacy threads get a copy fork: a new
    `session_meta` (`forked_from_id` = the source) followed by the source's
    lines up to the fork point, byte for byte. Either way a turn left open is
    closed with `turn_aborted` (interrupted), and the source file is untouched.
    """
    src = active_thread_file(st, thread_id)
    home = _home_for_writes(st)
    with st.engine.connect() as conn:
        meta_row = conn.execute(
            select(
                s.threads.c.meta,
                s.threads.c.cwd,
                s.threads.c.model_provider,
                s.threads.c.history_mode,
            ).where(s.threads.c.id == src.thread_id)
        ).one()
        name = conn.execute(
            select(s.thread_names.c.name).where(s.thread_names.c.thread_id == src.thread_id)
        ).scalar()
    source_meta = codec.loads(meta_row[0]) if meta_row[0] else {}
    with snapshot_connection(st.engine) as conn:
        turns = history.turn_rows(conn, src.thread_id)
    point_in_turns = _fork_point(turns, last_turn_id)
    open_turn = point_in_turns.open_turn
    ts = now_ms()
    new_id = writer.uuid7(ts)
    keep = {
        k: v
        for k, v in source_meta.items()
        if k
        not in (
            "id",
            "session_id",
            "timestamp",
            "forked_from_id",
            "forked_from_ordinal_exclusive",
            "history_base",
            "instructions",
            "cwd",
            "originator",
            "source",
        )
    }
    paginated = meta_row[3] == "paginated"
    copied: Iterable[bytes] = ()  # streamed from the source, never held in memory
    extra_paths: list[Path] = []
    if paginated:
        point = _ref_point(st, src, point_in_turns.later_turns)
        keep["history_base"] = {
            "thread_id": point.thread_id,
            "end_ordinal_exclusive": point.end_ordinal,
            "end_byte_offset": point.end_offset,
        }
        keep["forked_from_ordinal_exclusive"] = point.end_ordinal
        extra_paths.extend(_base_chain(st, point.thread_id))
        ordinal: int | None = point.end_ordinal
    else:
        copied = read_chunks(src.path, _copy_until(src.path, point_in_turns.cut_line))
        ordinal = None
    head = session_meta(
        new_id,
        ts,
        cwd=meta_row[1] or "",
        originator=str(source_meta.get("originator") or "rollouts"),
        model_provider=meta_row[2],
        source=source_meta.get("source", "vscode"),
        forked_from_id=src.thread_id,
        extra=keep,
    )
    tail: list[bytes] = []
    if open_turn is not None:
        abort = {"type": "turn_aborted", "turn_id": open_turn, "reason": "interrupted"}
        tail.append(
            _with_ordinal(
                writer.line("event_msg", abort, ts), None if ordinal is None else ordinal + 1
            )
        )
    path = writer.new_rollout_path(home, new_id, ts)
    writer.create_file(path, itertools.chain([_with_ordinal(head, ordinal)], copied, tail))
    stamp = _append_name(home, new_id, name) if name else None
    _reindex(st, path, *extra_paths)
    if name and stamp:  # the fork keeps its source's name, as Codex's forks do
        _store_name(st, new_id, name, stamp)
    return new_id


def refuse_if_history_base(
    conn: Connection, thread_id: str, action: str, together: Iterable[str] = ()
) -> None:
    """Conflict when reference forks (other than `together`) read their history from this thread.

    A reference fork's file holds no copy of its source's history, only
    `history_base`: with the source's file in the trash (delete) or in the
    database (vault), neither Codex nor a fresh import could read the fork any
    more. Copy forks and revert segments of the thread itself do not count.
    (In the database a fork never depends on this: see store.sql.history.)
    """
    rf = s.rollout_files
    forks = set(
        conn.execute(
            select(rf.c.thread_id).where(
                rf.c.base_rollout_id == thread_id, rf.c.thread_id != thread_id
            )
        ).scalars()
    )
    forks -= set(together)
    if forks:
        shown = sorted(forks)
        more = f" and {len(shown) - 3} more" if len(shown) > 3 else ""
        raise Conflict(
            f"thread {thread_id} is the history base of reference forks "
            f"{', '.join(shown[:3])}{more}: {action} them too (or first), "
            "or they could no longer be read"
        )


def _base_chain(st: SqlThreadStore, thread_id: str) -> list[Path]:
    """Main files of a thread and of every thread its history base leads to."""
    out: list[Path] = []
    seen: set[str] = set()
    tid: str | None = thread_id
    while tid is not None and tid not in seen and len(seen) < 16:
        seen.add(tid)
        out.append(thread_file(st, tid).path)
        with st.engine.connect() as conn:
            tid = conn.execute(
                select(s.rollout_files.c.base_rollout_id)
                .where(s.rollout_files.c.thread_id == tid, s.rollout_files.c.is_segment.is_(False))
                .order_by(s.rollout_files.c.id)
            ).scalar()
    return out


def _with_ordinal(line: bytes, ordinal: int | None) -> bytes:
    """Paginated rollouts number their lines: put `ordinal` after `timestamp`."""
    if ordinal is None:
        return line
    obj = codec.loads(line)
    out = {
        "timestamp": obj["timestamp"],
        "ordinal": ordinal,
        "type": obj["type"],
        "payload": obj["payload"],
    }
    return codec.dumpb(out) + b"\n"


_SANDBOX = {
    "danger-full-access": "dangerFullAccess",
    "read-only": "readOnly",
    "workspace-write": "workspaceWrite",
    "external-sandbox": "externalSandbox",
}


def session_settings(path: Path) -> dict[str, Any]:
    """approvalPolicy, approvalsReviewer and sandbox of the last `turn_context` line."""
    found: dict[str, Any] = {}
    with open_stream(path) as stream:
        for raw in iter_lines(stream):
            if b'"turn_context"' not in raw.data or raw.too_long:
                continue
            try:
                obj = codec.loads(raw.data)
            except codec.JSONDecodeError:
                continue
            if isinstance(obj, dict) and obj.get("type") == "turn_context":
                payload = obj.get("payload")
                if isinstance(payload, dict):
                    found = payload
    policy = found.get("approval_policy")
    reviewer = found.get("approvals_reviewer")
    sandbox = found.get("sandbox_policy")
    out: dict[str, Any] = {
        "approvalPolicy": policy
        if policy in ("untrusted", "on-request", "never")
        else "on-request",
        "approvalsReviewer": reviewer
        if reviewer in ("user", "auto_review", "guardian_subagent")
        else "user",
        "sandbox": {"type": "readOnly"},
        "model": found.get("model"),
        "reasoningEffort": found.get("effort"),
    }
    if isinstance(sandbox, dict) and sandbox.get("type") in _SANDBOX:
        out["sandbox"] = {"type": _SANDBOX[str(sandbox["type"])]}
        if sandbox.get("type") == "workspace-write":
            out["sandbox"].update(
                {
                    "writableRoots": [r for r in sandbox.get("writable_roots", []) if r],
                    "networkAccess": bool(sandbox.get("network_access", False)),
                    "excludeTmpdirEnvVar": bool(sandbox.get("exclude_tmpdir_env_var", False)),
                    "excludeSlashTmp": bool(sandbox.get("exclude_slash_tmp", False)),
                }
            )
    return out
