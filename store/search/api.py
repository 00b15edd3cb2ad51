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

from sqlalchemy import Connection, Engine, select, text

from store import codec
from store.errors import InvalidCursor, InvalidInput
from store.search import query as qp
from store.search.schema import WEIGHTS, weight_value_case
from store.search.snippet import Range, make_snippet, substring_matches, word_matches
from store.sql import schema as s

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
SORTS = ("relevance", "newest")
# A trigram index finds substrings of at least three characters; shorter ones
# are looked for by scanning.
TRIGRAM_MIN_CHARS = 3


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
    """How one query finds items: FROM, WHERE, score, and how to highlight."""

    from_sql: str
    where: str
    score: str
    params: dict[str, Any]
    words: qp.WordQuery | None = None
    needle: str | None = None

    def ranges(self, body: str) -> list[Range]:
        if self.words is not None:
            return word_matches(body, self.words)
        assert self.needle is not None
        return substring_matches(body, self.needle)


def matcher(dialect: str, query: str, *, substring: bool) -> Matcher:
    """The SQL that finds the items matching `query` on `dialect`."""
    if substring:
        needle = qp.check_text(query)
        weight = weight_value_case("i.item_type")
        if dialect == "postgresql":
            return Matcher(
                "items i",
                "i.search_text ILIKE :srch_pat",
                weight,
                {"srch_pat": qp.like_pattern(needle)},
                needle=needle,
            )
        if len(needle) >= TRIGRAM_MIN_CHARS:
            return Matcher(
                "search_trigrams JOIN items i ON i.id = search_trigrams.rowid",
                "search_trigrams MATCH :srch_q",
                weight,
                {"srch_q": qp.fts5_literal(needle)},
                needle=needle,
            )
        return Matcher(
            "items i",
            "i.search_text LIKE :srch_pat ESCAPE '\\'",
            weight,
            {"srch_pat": qp.like_pattern(needle)},
            needle=needle,
        )
    words = qp.parse_words(query)
    if dialect == "postgresql":
        w = WEIGHTS
        arr = f"'{{{w['D']},{w['C']},{w['B']},{w['A']}}}'::float4[]"
        return Matcher(
            "search_words w JOIN items i ON i.id = w.id",
            "w.tsv @@ to_tsquery('simple', :srch_q)",
            f"ts_rank({arr}, w.tsv, to_tsquery('simple', :srch_q))::float8",
            {"srch_q": qp.tsquery(words)},
            words=words,
        )
    return Matcher(
        "search_words JOIN items i ON i.id = search_words.rowid",
        "search_words MATCH :srch_q",
        f"(-bm25(search_words) * {weight_value_case('i.item_type')})",
        {"srch_q": qp.fts5_query(words)},
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


def _encode_cursor(fp: str, value: float | int, item_id: int) -> str:
    raw = codec.dumpb({"f": fp, "v": value, "id": item_id})
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str, fp: str) -> tuple[float | int, int]:
    try:
        data = codec.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        value, item_id, got = data["v"], data["id"], data["f"]
    except (binascii.Error, ValueError, KeyError, TypeError, codec.JSONDecodeError):
        raise InvalidCursor(f"invalid search cursor: {cursor[:80]!r}") from None
    if got != fp:
        raise InvalidCursor("this cursor belongs to another search (query, filters or sort)")
    if not isinstance(value, int | float) or not isinstance(item_id, int):
        raise InvalidCursor(f"invalid search cursor: {cursor[:80]!r}")
    return value, item_id


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
        value, after = _decode_cursor(cursor, fp)
        outer = f"WHERE h.{key} < :cv OR (h.{key} = :cv AND h.id < :cid)"
        params.update(cv=value, cid=after)
    where = " AND ".join([m.where, *conds])
    sql = f"""
        SELECT h.* FROM (
            SELECT i.id AS id, {m.score} AS score,
                   COALESCE(i.created_at_ms, t.created_at_ms) AS ts
            FROM {m.from_sql} JOIN threads t ON t.id = i.thread_id
            WHERE {where}
        ) h {outer}
        ORDER BY h.{key} DESC, h.id DESC
        LIMIT :lim"""
    params["lim"] = n + 1
    with engine.connect() as conn:
        rows = conn.execute(text(sql), params).all()
        more = len(rows) > n
        rows = rows[:n]
        hits = _hits(conn, m, [(int(r[0]), float(r[1]), r[2]) for r in rows])
    next_cursor = None
    if more and rows:
        last = rows[-1]
        value = float(last[1]) if key == "score" else int(last[2])
        next_cursor = _encode_cursor(fp, value, int(last[0]))
    return SearchPage(hits, next_cursor)


def _hits(
    conn: Connection, m: Matcher, rows: list[tuple[int, float, int | None]]
) -> list[SearchHit]:
    """Hits for the page's item ids: turn id, thread names, snippet and ranges."""
    if not rows:
        return []
    i, t, tu, nm = s.items, s.threads, s.turns, s.thread_names
    q = (
        select(
            i.c.id,
            i.c.thread_id,
            i.c.item_id,
            i.c.item_type,
            i.c.position,
            i.c.search_text,
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
        snippet, ranges = make_snippet(r.search_text, m.ranges(r.search_text))
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
