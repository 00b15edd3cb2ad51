"""Shared history: a fork reads its parent's turns and items instead of copying them.

A fork's rollout file repeats (copy fork) or references (`history_base`) its
source's history, so a plain import would store every inherited turn and item
twice. Instead, a thread T with `history_parent_id` = P and `history_turns` = k
has as its history P's history at turn positions below k, followed by T's own
rows (positions k and up). P may share in turn, so a history is a short chain
of segments, each a range of turn positions stored under one thread id
(`segments`). Line numbers of a shared row are P's; T's are those plus
`history_line_shift` (a copy fork's file has the source's lines further down).

Invariants:
- sharing is only set up where `match_parent` compared the fork's rows with
  its parent's history row by row (every column the reader sees, line numbers
  by one constant shift) and shares the longest equal prefix of closed turns;
  `history_parent_id` set with `history_turns` = 0 means "compared, nothing in
  common" (compared once: a parent's settled turns do not change);
- before any of P's rows at turn positions >= n change or go, `detach(P, n)`
  copies into each thread sharing them the rows it read from there, so every
  fork stays readable; a thread is only deleted through `delete_threads`.
  The foreign key on `history_parent_id` makes any other delete of a parent fail
  instead of losing a fork's history.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass
from itertools import takewhile, zip_longest
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    delete,
    false,
    insert,
    literal,
    or_,
    select,
    update,
)

from store.errors import RolloutsError
from store.rows import ITEM_COLS, TURN_COLS
from store.sql import schema as s

# A chain longer than this is a corrupted database (parents are older than forks).
MAX_DEPTH = 10_000

# What must be equal for a turn or an item to be shared (besides line numbers,
# which may differ by one shift; an open turn is never shared).
_TURN_SAME = tuple(
    c for c in TURN_COLS if c not in ("thread_id", "is_open", "first_line", "last_line")
)
_ITEM_SAME = tuple(c for c in ITEM_COLS if c not in ("thread_id", "line"))


@dataclass(frozen=True)
class Segment:
    """Turn positions [lo, hi) of a history, stored under `thread_id`."""

    thread_id: str
    lo: int
    hi: int | None  # None: to the end
    line_shift: int  # add to the stored line numbers


def segments(conn: Connection, thread_id: str) -> list[Segment]:
    """The segments of a thread's history, newest (its own rows) first."""
    t = s.threads
    out: list[Segment] = []
    tid, hi, shift = thread_id, None, 0
    seen: set[str] = set()
    while True:
        if tid in seen or len(seen) >= MAX_DEPTH:
            raise RolloutsError(f"the shared history of thread {thread_id} loops through {tid}")
        seen.add(tid)
        row = conn.execute(
            select(t.c.history_parent_id, t.c.history_turns, t.c.history_line_shift).where(
                t.c.id == tid
            )
        ).first()
        if row is None:
            return out
        parent, k, own_shift = row
        k = int(k) if parent is not None else 0
        if hi is None or k < hi:
            out.append(Segment(tid, k, hi, shift))
        if parent is None or k == 0:
            return out
        hi = k if hi is None else min(hi, k)
        shift += int(own_shift)
        tid = parent


def where(thread_col: Any, pos_col: Any, segs: list[Segment]) -> ColumnElement[bool]:
    """The rows of these segments: `pos_col` is a turn position column."""
    if not segs:
        return false()
    if len(segs) == 1 and segs[0].lo == 0 and segs[0].hi is None:
        only: ColumnElement[bool] = thread_col == segs[0].thread_id
        return only  # the common case: no sharing
    parts = []
    for seg in segs:
        cond = [thread_col == seg.thread_id]
        if seg.lo:
            cond.append(pos_col >= seg.lo)
        if seg.hi is not None:
            cond.append(pos_col < seg.hi)
        parts.append(and_(*cond))
    return or_(*parts)


def turns_where(segs: list[Segment]) -> ColumnElement[bool]:
    return where(s.turns.c.thread_id, s.turns.c.position, segs)


def items_where(segs: list[Segment]) -> ColumnElement[bool]:
    return where(s.items.c.thread_id, s.items.c.turn_position, segs)


def _shifts(segs: list[Segment]) -> dict[str, int]:
    return {seg.thread_id: seg.line_shift for seg in segs}


def turn_rows(
    conn: Connection, thread_id: str, segs: list[Segment] | None = None
) -> list[dict[str, Any]]:
    """Every turn row of a thread's history in order, as if stored under its id."""
    segs = segments(conn, thread_id) if segs is None else segs
    shifts = _shifts(segs)
    out = []
    q = select(s.turns).where(turns_where(segs)).order_by(s.turns.c.position)
    for r in conn.execute(q).mappings():
        row = dict(r)
        shift = shifts[row["thread_id"]]
        row["thread_id"] = thread_id
        row["first_line"] += shift
        row["last_line"] += shift
        out.append(row)
    return out


def item_rows(
    conn: Connection,
    thread_id: str,
    columns: Iterable[str],
    segs: list[Segment] | None = None,
    *,
    below_turn: int | None = None,
) -> Generator[dict[str, Any], None, None]:
    """A thread's history's items in order (streamed): `columns`, `line` shifted."""
    segs = segments(conn, thread_id) if segs is None else segs
    shifts = _shifts(segs)
    cols = [s.items.c[c] for c in columns]
    q = select(s.items.c.thread_id, *cols).where(items_where(segs))
    if below_turn is not None:
        q = q.where(s.items.c.turn_position < below_turn)
    result = conn.execute(q.order_by(s.items.c.position).execution_options(yield_per=500))
    try:
        for r in result.mappings():
            row = dict(r)
            if "line" in row:
                row["line"] += shifts[row["thread_id"]]
            row["thread_id"] = thread_id
            yield row
    finally:
        result.close()


# -- setting up and undoing sharing --------------------------------------------------


def share(conn: Connection, fork_id: str) -> int:
    """Share the longest equal prefix of a stored fork's history with its parent's.

    For a fork written before its parent was stored; the ingest compares a
    fork whose parent is already stored before writing it (`match_parent`),
    so its shared rows are never written at all. Only for a thread with
    `forked_from_id` set that has not been compared yet (`history_parent_id`
    NULL); runs in the caller's write transaction. Returns the number of turns
    now shared.
    """
    t = s.threads
    row = conn.execute(
        select(t.c.forked_from_id, t.c.history_parent_id).where(t.c.id == fork_id)
    ).first()
    if row is None or row[0] is None or row[1] is not None:
        return 0
    own = [Segment(fork_id, 0, None, 0)]
    mine = item_rows(conn, fork_id, ("line", *_ITEM_SAME), own)
    try:
        got = match_parent(conn, str(row[0]), fork_id, turn_rows(conn, fork_id, own), mine)
    finally:
        mine.close()
    if got is None:
        return 0  # compared when the parent arrives (see unshared_forks_of)
    k, shift = got
    if k:
        conn.execute(
            delete(s.items).where(s.items.c.thread_id == fork_id, s.items.c.turn_position < k)
        )
        conn.execute(delete(s.turns).where(s.turns.c.thread_id == fork_id, s.turns.c.position < k))
    conn.execute(update(t).where(t.c.id == fork_id).values(**sharing(str(row[0]), k, shift)))
    return k


def sharing(parent: str, k: int, shift: int) -> dict[str, Any]:
    """The `threads` columns that record a comparison with `parent`."""
    return {"history_parent_id": parent, "history_turns": k, "history_line_shift": shift}


def match_parent(
    conn: Connection,
    parent: str,
    fork_id: str,
    turns: list[dict[str, Any]],
    items: Iterable[dict[str, Any]],
) -> tuple[int, int] | None:
    """(turns shared, line shift) of a fork's history against its parent's stored history.

    `turns` and `items` are the fork's whole history in order, as rows (dicts
    with at least the compared columns and line numbers). None when the parent
    is not stored (yet).
    """
    if parent == fork_id:
        return None
    if conn.execute(select(s.threads.c.id).where(s.threads.c.id == parent)).first() is None:
        return None
    parent_segs = segments(conn, parent)
    if any(seg.thread_id == fork_id for seg in parent_segs):
        return 0, 0  # hostile files naming each other as parents: no loop of sharing
    k, shift = _equal_turns(turns, turn_rows(conn, parent, parent_segs))
    if k:
        theirs = item_rows(conn, parent, ("line", *_ITEM_SAME), parent_segs, below_turn=k)
        try:
            k = _equal_items(
                takewhile(lambda i: int(i["turn_position"]) < k, items), theirs, k, shift
            )
        finally:
            theirs.close()
    return k, shift if k else 0


def _equal_turns(own: list[dict[str, Any]], parent: list[dict[str, Any]]) -> tuple[int, int]:
    """(number of leading equal closed turns, the line shift between them)."""
    k, shift = 0, 0
    for a, b in zip(own, parent, strict=False):
        if a["is_open"] or b["is_open"] or any(a[c] != b[c] for c in _TURN_SAME):
            break
        d = a["first_line"] - b["first_line"]
        if k == 0:
            shift = d
        if d != shift or a["last_line"] - b["last_line"] != shift:
            break
        k += 1
    return k, shift


def _equal_items(
    own: Iterable[dict[str, Any]], parent: Iterable[dict[str, Any]], k: int, shift: int
) -> int:
    """`k` cut down to the first turn whose items differ."""
    for a, b in zip_longest(own, parent):
        if (
            a is None
            or b is None
            or a["line"] - b["line"] != shift
            or any(a[c] != b[c] for c in _ITEM_SAME)
        ):
            turns = [int(x["turn_position"]) for x in (a, b) if x is not None]
            return min(k, *turns)
    return k


def unshared_forks_of(conn: Connection, parent_ids: list[str]) -> list[str]:
    """Forks of these threads not compared with them yet (one indexed query per 500)."""
    t = s.threads
    out: list[str] = []
    for i in range(0, len(parent_ids), 500):
        # history_parent_id is tested here, not in SQL, where SQLite would pick its
        # index (nearly every thread has NULL there) over the one on forked_from_id.
        rows = conn.execute(
            select(t.c.id, t.c.history_parent_id).where(
                t.c.forked_from_id.in_(parent_ids[i : i + 500])
            )
        )
        out.extend(tid for tid, parent in rows if parent is None)
    return out


def _copy_rows(
    conn: Connection, child: str, segs: list[Segment], lo: int, hi: int, extra_shift: int
) -> None:
    """Copy the rows of `segs` at turn positions [lo, hi) under `child`."""
    for seg in segs:
        a = max(lo, seg.lo)
        b = hi if seg.hi is None else min(hi, seg.hi)
        if a >= b:
            continue
        shift = seg.line_shift + extra_shift
        tc = s.turns.c
        turn_cols = [c.name for c in s.turns.columns]
        picked = [
            literal(child) if c == "thread_id" else tc[c] + shift if c.endswith("_line") else tc[c]
            for c in turn_cols
        ]
        conn.execute(
            insert(s.turns).from_select(
                turn_cols,
                select(*picked).where(
                    tc.thread_id == seg.thread_id, tc.position >= a, tc.position < b
                ),
            )
        )
        ic = s.items.c
        item_cols = [c.name for c in s.items.columns if c.name != "id"]
        picked = [
            literal(child) if c == "thread_id" else ic[c] + shift if c == "line" else ic[c]
            for c in item_cols
        ]
        conn.execute(
            insert(s.items).from_select(
                item_cols,
                select(*picked)
                .where(ic.thread_id == seg.thread_id, ic.turn_position >= a, ic.turn_position < b)
                .order_by(ic.position),
            )
        )


def detach(conn: Connection, thread_id: str, from_turn: int) -> None:
    """Before `thread_id`'s history at turn positions >= from_turn changes: copy it out.

    Every thread sharing those rows gets its own copy of them and shares only
    the rows below `from_turn` from now on. The thread's own sharing is cut at
    `from_turn` too (the caller rewrites its rows from there).
    """
    t = s.threads
    children = conn.execute(
        select(t.c.id, t.c.history_turns, t.c.history_line_shift).where(
            t.c.history_parent_id == thread_id, t.c.history_turns > from_turn
        )
    ).all()
    if children:
        segs = segments(conn, thread_id)
        for cid, k, shift in children:
            _copy_rows(conn, cid, segs, from_turn, int(k), int(shift))
            conn.execute(update(t).where(t.c.id == cid).values(history_turns=from_turn))
    conn.execute(
        update(t)
        .where(t.c.id == thread_id, t.c.history_turns > from_turn)
        .values(history_turns=from_turn)
    )


def _lift(conn: Connection, thread_id: str) -> str | None:
    """Make `thread_id` share from its parent's parent: it copies what its parent holds.

    The part of its history that the parent itself shares from above stays
    shared (now straight from there); the parent's own rows it read are copied.
    Returns the new parent (None: every row is now its own).
    """
    t = s.threads
    parent, k, shift = conn.execute(
        select(t.c.history_parent_id, t.c.history_turns, t.c.history_line_shift).where(
            t.c.id == thread_id
        )
    ).one()
    up, up_k, up_shift = conn.execute(
        select(t.c.history_parent_id, t.c.history_turns, t.c.history_line_shift).where(
            t.c.id == parent
        )
    ).one()
    keep = min(int(k), int(up_k)) if up is not None else 0
    _copy_rows(conn, thread_id, segments(conn, parent), keep, int(k), int(shift))
    conn.execute(
        update(t)
        .where(t.c.id == thread_id)
        .values(
            history_parent_id=up if keep else None,
            history_turns=keep,
            history_line_shift=int(shift) + int(up_shift) if keep else 0,
        )
    )
    return str(up) if keep else None


def delete_threads(conn: Connection, thread_ids: Iterable[str]) -> None:
    """Delete threads (turns, items and files go by cascade); every other fork stays readable.

    First, each surviving thread that shares rows of a doomed one gets its own
    copy of them (while every history is still whole), climbing until it
    shares from a survivor or from nobody; then the doomed threads' own links
    are cleared, so they can go in any order.
    """
    t = s.threads
    ids = sorted(set(thread_ids))
    doomed = set(ids)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        sharers = conn.execute(
            select(t.c.id, t.c.history_parent_id).where(
                t.c.history_parent_id.in_(chunk), t.c.id.not_in(chunk)
            )
        ).all()
        for sid, parent in sharers:
            if sid in doomed:
                continue
            while parent in doomed:
                parent = _lift(conn, sid)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        conn.execute(
            update(t)
            .where(t.c.id.in_(chunk), t.c.history_parent_id.is_not(None))
            .values(history_parent_id=None, history_turns=0, history_line_shift=0)
        )
    for i in range(0, len(ids), 500):
        conn.execute(delete(t).where(t.c.id.in_(ids[i : i + 500])))


def detach_all(conn: Connection) -> None:
    """Give every thread its own copy of the rows it shares (before dropping the columns)."""
    t = s.threads
    sharers = conn.execute(
        select(t.c.id, t.c.history_turns).where(t.c.history_parent_id.is_not(None))
    ).all()
    for tid, k in sharers:
        if k:
            segs = segments(conn, tid)[1:]  # its parent's part
            _copy_rows(conn, tid, segs, 0, int(k), 0)
    conn.execute(
        update(t)
        .where(t.c.history_parent_id.is_not(None))
        .values(history_parent_id=None, history_turns=0, history_line_shift=0)
    )
