"""How a search page is computed: the query plan, and snippets cut from part of a text.

The store's answers must not change with these shortcuts: snippets built from
the head of a text (and matching stopped past the snippet) equal the ones
built from the whole text with every match, on the real corpus texts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from store import SqlThreadStore, open_store
from store.search import SearchFilters, api
from store.search.query import WORD_RE, WordQuery, parse_words
from store.search.schema import WORD_INDEX_CHARS
from store.search.snippet import make_snippet, substring_matches, word_matches
from tests.helpers import rollout_files

ALL = SearchFilters(archived=None)


def reference_word_matches(body: str, query: WordQuery) -> list[tuple[int, int]]:
    """Every match, by the definition: at each token, the first term that starts there."""
    tokens = [
        (m.start(), m.end(), m.group().lower())
        for m in WORD_RE.finditer(body[: WORD_INDEX_CHARS + 1000])
    ]
    out = []
    for i in range(len(tokens)):
        for term in query.positive:
            window = tokens[i : i + len(term.words)]
            if len(window) < len(term.words):
                continue
            head_ok = [t[2] for t in window[:-1]] == list(term.words[:-1])
            last, want = window[-1][2], term.words[-1]
            if head_ok and (last == want or (term.prefix and last.startswith(want))):
                out.append((window[0][0], window[-1][1]))
                break
    return out


def corpus_texts(home: Path) -> Iterator[str]:
    """Every distinct string with words in the real 0.169 corpus' records."""
    seen: set[str] = set()

    def strings(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)

    for path in rollout_files(home):
        for line in path.read_text(encoding="utf-8").splitlines():
            for value in strings(json.loads(line)):
                if value not in seen and WORD_RE.search(value):
                    seen.add(value)
                    yield value


def queries_for(body: str) -> list[str]:
    """Word, phrase, prefix and repeated-word queries built from the text itself."""
    words = [w.lower() for w in WORD_RE.findall(body)]
    out = [words[0], words[-1], words[len(words) // 2][:3] + "*"]
    if len(words) > 2:
        out += [f'"{words[1]} {words[2]}"', f'"{words[0]} {words[1]}"*', f"{words[2]} {words[0]}"]
    return out


def test_snippet_from_the_head_equals_the_whole(home169: Path) -> None:
    texts = list(corpus_texts(home169))
    assert len(texts) > 50
    # Long texts made of the corpus' own text: matches near the start, around
    # WORD_INDEX_CHARS (where the head is cut) and repeated all along.
    joined = "\n".join(texts)
    long_texts = [(joined * (1 + 250_000 // len(joined)))[:n] for n in (150_000, 250_000)]
    checked = 0
    for body in texts + long_texts:
        for q in [*queries_for(body), "zzznotthere " + WORD_RE.findall(body)[0]]:
            wq = parse_words(q)
            full = reference_word_matches(body, wq)
            assert word_matches(body, wq) == full, q
            want = make_snippet(body, full)
            head = body[: api.WORD_SNIPPET_CHARS]
            got = make_snippet(head, word_matches(head, wq, True), size=len(body))
            assert got == want, (q, len(body))
            checked += 1
        needle = body[len(body) // 3 : len(body) // 3 + 4]
        full_sub = [(m.start(), m.end()) for m in re.finditer(re.escape(needle), body, re.I)]
        assert substring_matches(body, needle) == full_sub
        want = make_snippet(body, full_sub)
        assert make_snippet(body, substring_matches(body, needle, True)) == want
    assert checked > 300
    # a match just before the end of the indexed part, in a text cut there
    body = long_texts[-1]
    word = WORD_RE.findall(body[WORD_INDEX_CHARS - 50 :])[1].lower()
    wq = parse_words(word)
    full = reference_word_matches(body, wq)
    assert any(s > WORD_INDEX_CHARS - 60 for s, _ in full)
    head = body[: api.WORD_SNIPPET_CHARS]
    assert make_snippet(head, word_matches(head, wq, True), size=len(body)) == make_snippet(
        body, full
    )


@pytest.fixture
def st(db_url: str, home169: Path) -> Iterator[SqlThreadStore]:
    with open_store(db_url, auto_upgrade=True) as store:
        store.ingest([home169])
        yield store


def test_long_item_snippets_match_the_whole_text(st: SqlThreadStore) -> None:
    # Make one real command output longer than what a word hit reads of it,
    # with a word just before the end of the indexed part.
    with st.engine.begin() as conn:
        item_pk, body = conn.execute(
            text(
                "SELECT id, search_text FROM items WHERE item_type = 'commandExecution'"
                " ORDER BY id LIMIT 1"
            )
        ).one()
        filler = (body + " ") * (1 + 2 * api.WORD_SNIPPET_CHARS // (len(body) + 1))
        long_body = filler[: WORD_INDEX_CHARS - 40] + " quasimodoword " + filler
        conn.execute(
            text("UPDATE items SET search_text = :t WHERE id = :id"),
            {"t": long_body, "id": item_pk},
        )
    hits = st.search("quasimodoword", filters=ALL).hits
    assert [h.item_id for h in hits] and len(hits) == 1
    ranges = [(m.start(), m.end()) for m in re.finditer("quasimodoword", long_body)]
    assert (hits[0].snippet, hits[0].matches) == make_snippet(long_body, ranges)
    assert hits[0].snippet.endswith("…") and hits[0].snippet.startswith("…")
    sub = st.search("QUASIMODOWORD", substring=True, filters=ALL).hits
    assert (sub[0].snippet, sub[0].matches) == (hits[0].snippet, hits[0].matches)


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


@pytest.mark.parametrize("substring", [False, True])
def test_plan_starts_from_the_index(st: SqlThreadStore, substring: bool) -> None:
    """The matches come from the search index, each item by its key: never a scan of items.

    On PostgreSQL this holds without table statistics (the store never runs
    ANALYZE; autovacuum may be off), where a plain join was planned as a
    sequential scan of items hash-joined to the matches.
    """
    dialect = st.engine.dialect.name
    m = api.matcher(dialect, "please", substring=substring)
    f = SearchFilters(item_types=("userMessage", "agentMessage"), since_ms=0)
    conds, params = api.filter_sql(f, "openai")
    params.update(m.params, lim=26)
    sql = api.page_sql(dialect, m, conds, "score", "")
    with st.engine.connect() as conn:
        assert conn.execute(text(sql), params).all()
        if dialect == "sqlite":
            plan = " | ".join(r[3] for r in conn.execute(text("EXPLAIN QUERY PLAN " + sql), params))
            assert "VIRTUAL TABLE" in plan
            assert f"COVERING INDEX {api.SQLITE_ITEMS_INDEX}" in plan
            assert f"COVERING INDEX {api.SQLITE_THREADS_INDEX}" in plan
            return
        raw = conn.execute(text("EXPLAIN (FORMAT JSON) " + sql), params).scalar_one()
        doc = raw if isinstance(raw, list) else json.loads(raw)
        nodes = list(_plan_nodes(doc[0]["Plan"]))
        items_scans = [n["Node Type"] for n in nodes if n.get("Relation Name") == "items"]
        if substring:  # the trigram match reads items itself, once, and nothing else does
            assert len(items_scans) == 1, items_scans
        else:
            assert items_scans == ["Index Scan"], items_scans
