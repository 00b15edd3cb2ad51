"""The app-server search methods, in the Codex 0.169.0 experimental shapes.

- `thread/search` (ThreadSearchParams -> ThreadSearchResponse): threads with an
  item containing `searchTerm` (case-insensitive literal, any indexed item
  type), sorted and keyset-paginated like thread/list, each with a snippet;
- `thread/searchOccurrences`: every occurrence of a literal in the visible user
  and agent messages of one thread, in order, with UTF-16 match ranges;
- `thread_match_clause`: the condition thread/search puts on `threads`.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, and_, column, func, or_, select, text

from store import codec
from store.errors import InvalidInput, NotFound
from store.rollout.naming import validate_thread_id
from store.search import query as qp
from store.search.api import DEFAULT_LIMIT, MAX_LIMIT, encode_cursor, matcher, read_cursor
from store.search.snippet import make_snippet, substring_matches, utf16_range
from store.sql import history, pages
from store.sql import schema as s
from store.sql.engine import snapshot_connection

if TYPE_CHECKING:  # the backend imports this package
    from store.sql.backend import SqlThreadStore

INTERACTIVE_SOURCES = ("cli", "vscode")  # Codex's INTERACTIVE_SESSION_SOURCES
SORT_KEYS = {
    "created_at": s.threads.c.created_at_ms,
    "updated_at": s.threads.c.updated_at_ms,
    "recency_at": s.threads.c.recency_at_ms,
}
OCCURRENCE_TYPES = ("userMessage", "agentMessage")


def _term(params: dict[str, Any]) -> str:
    term = params.get("searchTerm")
    if not isinstance(term, str):
        raise InvalidInput("searchTerm is required and must be a string")
    return qp.check_text(term)


def _limit(params: dict[str, Any]) -> int:
    limit = params.get("limit")
    if limit is None:
        return DEFAULT_LIMIT
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise InvalidInput("limit must be a non-negative integer")
    return max(1, min(MAX_LIMIT, limit))


def thread_match_clause(dialect: str, term: str, shared: bool = True) -> ColumnElement[bool]:
    """`threads.id` has an item in its history containing `term`, or a name containing it.

    Literal and case-insensitive, served by the trigram index. (thread/list's
    own searchTerm matches titles only, as Codex's does: store.sql.listing.)
    `shared`: some forks share their parents' rows (store.sql.history), so
    matches in those parents also count for the forks that read them; without
    any, the plain query is cheaper.
    """
    m = matcher(dialect, term, substring=True)
    matched = f"SELECT i.thread_id, i.turn_position FROM {m.from_sql} WHERE {m.where}"
    if shared:
        # A parent's matching turn counts for each fork that reads it, and theirs.
        sql = (
            f"WITH RECURSIVE matched(thread_id, pos) AS MATERIALIZED ({matched}),"
            " hits(thread_id, pos) AS ("
            " SELECT thread_id, pos FROM matched WHERE thread_id IN (SELECT history_parent_id"
            " FROM threads WHERE history_parent_id IS NOT NULL AND history_turns > 0)"
            " UNION SELECT f.id, h.pos FROM hits h JOIN threads f"
            " ON f.history_parent_id = h.thread_id AND h.pos < f.history_turns)"
            " SELECT thread_id FROM matched UNION ALL SELECT thread_id FROM hits"
        )
    else:
        sql = f"SELECT i.thread_id FROM {m.from_sql} WHERE {m.where}"
    items = text(sql).bindparams(**m.params).columns(column("thread_id"))
    op = "ILIKE" if dialect == "postgresql" else "LIKE"
    names = select(s.thread_names.c.thread_id).where(
        text(f"thread_names.name {op} :srch_name ESCAPE '\\'").bindparams(
            srch_name=qp.like_pattern(term)
        )
    )
    return or_(s.threads.c.id.in_(items), s.threads.c.id.in_(names))


def _any_shared(store: SqlThreadStore) -> bool:
    """Whether any fork has been linked to its parent's history (one index probe: max)."""
    with store.engine.connect() as conn:
        return conn.execute(select(func.max(s.threads.c.history_parent_id))).scalar() is not None


def search_threads_wire(store: SqlThreadStore, params: dict[str, Any]) -> dict[str, Any]:
    """`thread/search`: a ThreadSearchResponse for ThreadSearchParams."""
    term = _term(params)
    n = _limit(params)
    sort_key = params.get("sortKey") or "created_at"
    col = SORT_KEYS.get(sort_key)
    if col is None:
        raise InvalidInput(f"unknown sortKey {sort_key!r}: use one of {sorted(SORT_KEYS)}")
    direction = params.get("sortDirection") or "desc"
    if direction not in ("asc", "desc"):
        raise InvalidInput(f"unknown sortDirection {direction!r}: use asc or desc")
    sources = params.get("sourceKinds") or list(INTERACTIVE_SOURCES)
    if not isinstance(sources, list) or not all(isinstance(x, str) for x in sources):
        raise InvalidInput("sourceKinds must be a list of ThreadSourceKind strings")
    dialect = store.engine.dialect.name
    fp = hashlib.sha256(
        codec.dumpb([term, sort_key, bool(params.get("archived")), sorted(sources)])
    ).hexdigest()[:16]
    conds: list[Any] = [
        s.threads.c.archived == bool(params.get("archived")),
        s.threads.c.source_kind.in_(sources),
        thread_match_clause(dialect, term, _any_shared(store)),
    ]
    t_id = s.threads.c.id
    cursor = params.get("cursor")
    if cursor:
        value, tid = read_cursor(cursor, fp, ("v", int), ("id", str))
        if direction == "asc":
            conds.append(or_(col > value, and_(col == value, t_id > tid)))
        else:
            conds.append(or_(col < value, and_(col == value, t_id < tid)))
    order = [col.asc(), t_id.asc()] if direction == "asc" else [col.desc(), t_id.desc()]
    rows = store._thread_rows(and_(*conds), order, n + 1)
    more = len(rows) > n
    rows = rows[:n]
    data_out = []
    with snapshot_connection(store.engine) as conn:
        for r in rows:
            data_out.append(
                {"thread": store._to_json(r), "snippet": _thread_snippet(conn, r["id"], term)}
            )

    # One keyset rule serves both: a backwardsCursor (the page's first thread)
    # passed with the reversed sortDirection continues before this page.
    def cur(row: dict[str, Any]) -> str:
        return encode_cursor({"f": fp, "v": row[col.name], "id": row["id"]})

    return {
        "data": data_out,
        "nextCursor": cur(rows[-1]) if more and rows else None,
        "backwardsCursor": cur(rows[0]) if rows else None,
    }


def _thread_snippet(conn: Connection, thread_id: str, term: str) -> str:
    """A snippet around the first occurrence of `term` in the thread's items."""
    q = (
        select(s.items.c.search_text)
        .where(history.items_where(history.segments(conn, thread_id)))
        .order_by(s.items.c.position)
    )
    with conn.execution_options(stream_results=True, yield_per=200).execute(q) as rows:
        for (body,) in rows:
            ranges = substring_matches(body, term, snippet_only=True)
            if ranges:
                return make_snippet(body, ranges)[0]
    return ""  # only the thread's name matched


def search_occurrences_wire(
    store: SqlThreadStore,
    params: dict[str, Any],
) -> dict[str, Any]:
    """`thread/searchOccurrences`: a ThreadSearchOccurrencesResponse.

    Each occurrence's `turnCursor` opens `thread/turns/list` at its turn (included).
    """
    term = _term(params)
    n = _limit(params)
    tid_raw = params.get("threadId")
    if not isinstance(tid_raw, str):
        raise InvalidInput("threadId is required and must be a string")
    tid = validate_thread_id(tid_raw)
    fp = hashlib.sha256(codec.dumpb([tid, term])).hexdigest()[:16]
    start_pos, start_k = 0, 0
    cursor = params.get("cursor")
    if cursor:
        start_pos, start_k = read_cursor(cursor, fp, ("p", int), ("k", int))
    out: list[dict[str, Any]] = []
    next_cursor = None
    with snapshot_connection(store.engine) as conn:
        if conn.execute(select(s.threads.c.id).where(s.threads.c.id == tid)).first() is None:
            raise NotFound(f"thread not found: {tid}")
        segs = history.segments(conn, tid)
        turns = {r["position"]: r["turn_id"] for r in pages.visible_turns(conn, tid, segs)}
        q = (
            select(
                s.items.c.position,
                s.items.c.turn_position,
                s.items.c.item_id,
                s.items.c.search_text,
            )
            .where(
                history.items_where(segs),
                s.items.c.position >= start_pos,
                s.items.c.item_type.in_(OCCURRENCE_TYPES),
            )
            .order_by(s.items.c.position)
        )
        with conn.execution_options(stream_results=True, yield_per=200).execute(q) as rows:
            for pos, turn_pos, item_id, body in rows:
                turn_id = turns.get(turn_pos)
                if turn_id is None:
                    continue
                for k, r in enumerate(substring_matches(body, term)):
                    if pos == start_pos and k < start_k:
                        continue
                    if len(out) == n:
                        next_cursor = encode_cursor({"f": fp, "p": pos, "k": k})
                        break
                    snippet, ranges = make_snippet(body, [r])
                    out.append(
                        {
                            "itemId": item_id,
                            "turnId": turn_id,
                            "turnCursor": pages.encode_turn_cursor(turn_id, True),
                            "snippet": snippet,
                            "snippetMatchRange": utf16_range(snippet, ranges[0]),
                        }
                    )
                if next_cursor is not None:
                    break
    return {"data": out, "nextCursor": next_cursor}
