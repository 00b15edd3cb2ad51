"""Item-level search over the index, with filters, ranking and keyset pages.

Invariants:
- user text reaches the database only as bound parameters, and only after
  store.search.query has reduced it to words (word mode) or kept it as one
  literal (substring mode);
- a page is keyset-paginated on (score or time, item id): a cursor never
  repeats or skips a hit while the index is unchanged; new items arriving
  between pages can shift bm25 scores on SQLite (corpus statistics), while
  `sort="newest"` pages stay exact;
- a cursor carries a fingerprint of its query, filters and sort, and is
  refused for any other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text

from store import codec
from store.errors import InvalidCursor, InvalidInput
from store.search import query as qp
from store.search.schema import WEIGHTS, WORD_INDEX_CHARS, weight_value_case
from store.search.snippet import Range, make_snippet, substring_matches, word_matches
from store.sql import schema as s

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
SORTS = ("relevance", "newest")
# A trigram index finds substrings of at least three characters; shorter ones
# are looked for by scanning.
TRIGRAM_MIN_CHARS = 3
# What a word hit's snippet can reach: word matches start in the first
# WORD_INDEX_CHARS + 1000 characters (snippet.word_matches), and a snippet
# ends at most SNIPPET_CHARS past its first match (or at that match's end).
WORD_SNIPPET_CHARS = WORD_INDEX_CHARS + 2000


@dataclass(frozen=True)
class SearchFilters:
    """Which items a search may return; None/empty means no restriction."""

    cwd: str | None = None  # the thread's cwd is this folder or below it
    model_provider: str | None = None
    sources: tuple[str, ...] = ()  # ThreadSourceKind values
    archived: bool | None = False  # False: active threads, True: archived, None: both
    since_ms: int | None = None  # item time >= since (Unix ms)
    until_ms: int | None = None  # item time < until
    item_types: tuple[str, ...] = ()
    thread_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchHit:
    """One matching item, with where it is and why it matched."""

    thread_id: str
    turn_id: str | None
    item_id: str
    item_type: str
    score: float
    snippet: str
    matches: list[Range]
    item_position: int = 0
    time_ms: int | None = None
    thread_name: str | None = None
    thread_preview: str = ""
    cwd: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "threadId": self.thread_id,
            "turnId": self.turn_id,
            "itemId": self.item_id,
            "itemType": self.item_type,
            "score": self.score,
            "snippet": self.snippet,
            "matches": [list(r) for r in self.matches],
        }


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHit] = field(default_factory=list)
    next_cursor: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"data": [h.to_json() for h in self.hits], "nextCursor": self.next_cursor}


@dataclass
class Matcher:
    """How one query finds items: FROM, WHERE, score, and how to highlight.

    `from_sql`/`where`/`score` find matching items joined with `items i` (for
    callers that add their own conditions, e.g. thread/list's searchTerm).
    `match_sql` finds the same items from the index alone, as rows (id, base):
    search() ranks and filters them with per-row lookups, so the planner
    never scans `items`; the score is `base`, times the item type's weight
    when `weighted`. With `item_columns` the rows also carry the item's
    item_type, thread_id and created_at_ms (the match read `items` itself).
    """

    from_sql: str
    where: str
    score: str
    params: dict[str, Any]
    match_sql: str = ""
    weighted: bool = True
    item_columns: bool = False
    words: qp.WordQuery | None = None
    needle: str | None = None

    def ranges(self, body: str, snippet_only: bool = False) -> list[Range]:
        if self.words is not None:
            return word_matches(body, self.words, snippet_only)
        assert self.needle is not None
        return substring_matches(body, self.needle, snippet_only)


def matcher(dialect: str, query: str, *, substring: bool) -> Matcher:
    """The SQL that finds the items matching `query` on `dialect`."""
    weight = weight_value_case("i.item_type")
    if substring:
        needle = qp.check_text(query)
        if dialect == "postgresql":
            where = "i.search_text ILIKE :srch_pat"
            return Matcher(
                "items i",
                where,
                weight,
                {"srch_pat": qp.like_pattern(needle)},
                match_sql="SELECT i.id AS id, 1.0::float8 AS base, i.item_type, i.thread_id,"
                f" i.created_at_ms FROM items i WHERE {where}",
                item_columns=True,
                needle=needle,
            )
        if len(needle) >= TRIGRAM_MIN_CHARS:
            return Matcher(
                "search_trigrams JOIN items i ON i.id = search_trigrams.rowid",
                "search_trigrams MATCH :srch_q",
                weight,
                {"srch_q": qp.fts5_literal(needle)},
                match_sql="SELECT rowid AS id, 1.0 AS base FROM search_trigrams"
                " WHERE search_trigrams MATCH :srch_q",
                needle=needle,
            )
        where = "i.search_text LIKE :srch_pat ESCAPE '\\'"
        return Matcher(
            "items i",
            where,
            weight,
            {"srch_pat": qp.like_pattern(needle)},
            match_sql=f"SELECT i.id AS id, 1.0 AS base FROM items i WHERE {where}",
            needle=needle,
        )
    words = qp.parse_words(query)
    if dialect == "postgresql":
        w = WEIGHTS
        arr = f"'{{{w['D']},{w['C']},{w['B']},{w['A']}}}'::float4[]"
        rank = f"ts_rank({arr}, w.tsv, to_tsquery('simple', :srch_q))::float8"
        where = "w.tsv @@ to_tsquery('simple', :srch_q)"
        return Matcher(
            "search_words w JOIN items i ON i.id = w.id",
            where,
            rank,
            {"srch_q": qp.tsquery(words)},
            match_sql=f"SELECT w.id AS id, {rank} AS base FROM search_words w WHERE {where}",
            weighted=False,  # the tsvector's labels carry the weights
            words=words,
        )
    return Matcher(
        "search_words JOIN items i ON i.id = search_words.rowid",
        "search_words MATCH :srch_q",
        f"(-bm25(search_words) * {weight})",
        {"srch_q": qp.fts5_query(words)},
        match_sql="SELECT rowid AS id, -bm25(search_words) AS base FROM search_words"
        " WHERE search_words MATCH :srch_q",
        words=words,
    )


def filter_sql(f: SearchFilters, default_provider: str) -> tuple[list[str], dict[str, Any]]:
    """WHERE conditions on items `i` and threads `t`, with their parameters."""
    conds: list[str] = []
    params: dict[str, Any] = {}

    def in_list(column: str, name: str, values: Sequence[str]) -> None:
        keys = [f"{name}{n}" for n in range(len(values))]
        params.update(zip(keys, values, strict=True))
        conds.append(f"{column} IN ({', '.join(':' + k for k in keys)})")

    if f.archived is not None:
        conds.append("t.archived = :archived")
        params["archived"] = f.archived
    if f.cwd:
        folder = f.cwd.rstrip("/") or "/"
        params["cwd"] = folder
        params["cwd_under"] = qp.like_pattern(folder.rstrip("/") + "/")[1:]
        conds.append("(t.cwd = :cwd OR t.cwd LIKE :cwd_under ESCAPE '\\')")
    if f.model_provider:
        params["provider"] = f.model_provider
        if f.model_provider == default_provider:
            conds.append("(t.model_provider = :provider OR t.model_provider IS NULL)")
        else:
            conds.append("t.model_provider = :provider")
    if f.sources:
        in_list("t.source_kind", "src", f.sources)
    if f.item_types:
        in_list("i.item_type", "ityp", f.item_types)
    if f.thread_ids:
        in_list("i.thread_id", "tid", f.thread_ids)
    if f.since_ms is not None:
        conds.append("COALESCE(i.created_at_ms, t.created_at_ms) >= :since")
        params["since"] = f.since_ms
    if f.until_ms is not None:
        conds.append("COALESCE(i.created_at_ms, t.created_at_ms) < :until")
        params["until"] = f.until_ms
    return conds, params


def _fingerprint(query: str, substring: bool, f: SearchFilters, sort: str) -> str:
    raw = codec.dumpb([query, substring, asdict(f), sort])
    return hashlib.sha256(raw).hexdigest()[:16]


def encode_cursor(payload: dict[str, Any]) -> str:
    """An opaque search cursor: URL-safe base64 of the JSON payload."""
    return base64.urlsafe_b64encode(codec.dumpb(payload)).decode("ascii").rstrip("=")


def read_cursor(
    cursor: str, fp: str, *fields: tuple[str, type | tuple[type, ...]]
) -> tuple[Any, ...]:
    """The typed fields of a cursor made by `encode_cursor` for the same request (`f`: fp)."""
    try:
        data = codec.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, codec.JSONDecodeError):
        raise InvalidCursor(f"invalid search cursor: {cursor[:80]!r}") from None
    if not isinstance(data, dict) or data.get("f") != fp:
        raise InvalidCursor("this cursor belongs to another search (query, filters or sort)")
    values = tuple(data.get(key) for key, _ in fields)
    if not all(isinstance(v, t) for v, (_, t) in zip(values, fields, strict=True)):
        raise InvalidCursor(f"invalid search cursor: {cursor[:80]!r}")
    return values


# Covering indexes for the per-match lookups on SQLite (migration 0005): the
# matches' item type, thread and time, and the thread's filter columns, from
# narrow index pages instead of the wide rows.
SQLITE_ITEMS_INDEX = "search_items_lookup"
SQLITE_THREADS_INDEX = "search_threads_lookup"


def page_sql(dialect: str, m: Matcher, conds: list[str], key: str, outer: str) -> str:
    """One page of (id, score, ts), best or newest first.

    The index finds the matches (`m.match_sql`); each is then looked up by
    primary key in `items` (its weight, time and thread) and `threads`.
    SQLite reads both from covering indexes (migration 0005). On PostgreSQL
    the matches are a MATERIALIZED CTE and the item lookup a LATERAL subquery
    (OFFSET 0 keeps it from being flattened), so the plan is the same with or
    without table statistics: without them (autovacuum off, a fresh import)
    the planner otherwise scans all of `items` to hash-join it. A substring
    match reads `items` itself and carries the item's columns along.
    """
    if dialect == "postgresql" and m.item_columns:
        head = f"WITH m AS MATERIALIZED ({m.match_sql})"
        # the item columns under the name the filters use
        source = """m CROSS JOIN LATERAL (
                SELECT m.id, m.item_type, m.thread_id, m.created_at_ms
            ) i
            JOIN threads t ON t.id = i.thread_id"""
    elif dialect == "postgresql":
        head = f"WITH m AS MATERIALIZED ({m.match_sql})"
        source = """m CROSS JOIN LATERAL (
                SELECT i.id, i.item_type, i.thread_id, i.created_at_ms
                FROM items i WHERE i.id = m.id OFFSET 0
            ) i
            JOIN threads t ON t.id = i.thread_id"""
    else:
        head = ""
        source = f"""({m.match_sql}) m
            JOIN items i INDEXED BY {SQLITE_ITEMS_INDEX} ON i.id = m.id
            JOIN threads t INDEXED BY {SQLITE_THREADS_INDEX} ON t.id = i.thread_id"""
    score = f"m.base * {weight_value_case('i.item_type')}" if m.weighted else "m.base"
    return f"""{head}
        SELECT h.* FROM (
            SELECT m.id AS id, {score} AS score,
                   COALESCE(i.created_at_ms, t.created_at_ms) AS ts
            FROM {source}
            WHERE {" AND ".join(conds) or "1 = 1"}
        ) h {outer}
        ORDER BY h.{key} DESC, h.id DESC
        LIMIT :lim"""


def search(
    engine: Engine,
    query: str,
    *,
    substring: bool = False,
    filters: SearchFilters | None = None,
    sort: str = "relevance",
    limit: int | None = None,
    cursor: str | None = None,
    default_provider: str = "openai",
) -> SearchPage:
    """One page of matching items, best (or newest) first."""
    f = filters or SearchFilters()
    if sort not in SORTS:
        raise InvalidInput(f"unknown sort {sort!r}: use one of {list(SORTS)}")
    n = DEFAULT_LIMIT if limit is None else max(1, min(MAX_LIMIT, int(limit)))
    m = matcher(engine.dialect.name, query, substring=substring)
    conds, params = filter_sql(f, default_provider)
    params.update(m.params)
    key = "score" if sort == "relevance" else "ts"
    fp = _fingerprint(query, substring, f, sort)
    outer = ""
    if cursor:
        value, after = read_cursor(cursor, fp, ("v", (int, float)), ("id", int))
        outer = f"WHERE h.{key} < :cv OR (h.{key} = :cv AND h.id < :cid)"
        params.update(cv=value, cid=after)
    sql = page_sql(engine.dialect.name, m, conds, key, outer)
    params["lim"] = n + 1
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # A search is a short query whose cost estimate can be high (a
            # common word's matches): compiling it with JIT costs more than it
            # saves (30-40 ms on "please look", 37,000 matches).
            conn.exec_driver_sql("SET LOCAL jit = off")
        rows = conn.execute(text(sql), params).all()
        more = len(rows) > n
        rows = rows[:n]
        hits = _hits(conn, m, [(int(r[0]), float(r[1]), r[2]) for r in rows])
    next_cursor = None
    if more and rows:
        last = rows[-1]
        value = float(last[1]) if key == "score" else int(last[2])
        next_cursor = encode_cursor({"f": fp, "v": value, "id": int(last[0])})
    return SearchPage(hits, next_cursor)


def _hits(
    conn: Connection, m: Matcher, rows: list[tuple[int, float, int | None]]
) -> list[SearchHit]:
    """Hits for the page's item ids: turn id, thread names, snippet and ranges."""
    if not rows:
        return []
    i, t, tu, nm = s.items, s.threads, s.turns, s.thread_names
    # Word matches lie in the indexed head of the text: read only that much
    # (and the length, for the snippet's trailing ellipsis), not a whole
    # multi-megabyte command output.
    body = (
        i.c.search_text if m.words is None else func.substr(i.c.search_text, 1, WORD_SNIPPET_CHARS)
    )
    q = (
        select(
            i.c.id,
            i.c.thread_id,
            i.c.item_id,
            i.c.item_type,
            i.c.position,
            body.label("body"),
            func.length(i.c.search_text).label("size"),
            tu.c.turn_id,
            t.c.preview,
            t.c.cwd,
            nm.c.name,
        )
        .join(t, t.c.id == i.c.thread_id)
        .outerjoin(tu, (tu.c.thread_id == i.c.thread_id) & (tu.c.position == i.c.turn_position))
        .outerjoin(nm, nm.c.thread_id == i.c.thread_id)
        .where(i.c.id.in_([r[0] for r in rows]))
    )
    by_id = {r.id: r for r in conn.execute(q)}
    out = []
    for item_pk, score, ts in rows:
        r = by_id.get(item_pk)
        if r is None:
            continue  # deleted between the two statements
        snippet, ranges = make_snippet(r.body, m.ranges(r.body, True), size=r.size)
        out.append(
            SearchHit(
                thread_id=r.thread_id,
                turn_id=r.turn_id,
                item_id=r.item_id,
                item_type=r.item_type,
                score=score,
                snippet=snippet,
                matches=ranges,
                item_position=r.position,
                time_ms=ts,
                thread_name=r.name,
                thread_preview=r.preview,
                cwd=r.cwd,
            )
        )
    return out


__all__ = ["SearchFilters", "SearchHit", "SearchPage", "search"]
