"""Search on real corpora, on SQLite and PostgreSQL.

Expected hits are located independently: by reading the rollout files with
tests/helpers, not through the store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy import delete, text

from store import InvalidCursor, InvalidInput, SqlThreadStore, open_store
from store.search import SearchFilters, SearchPage
from store.search.query import fts5_query, parse_words, tsquery
from store.search.wire import (
    search_occurrences_wire,
    search_threads_wire,
    thread_match_clause,
)
from store.sql import migrate
from store.sql import schema as s
from tests.conftest import SHARED, copy_home
from tests.helpers import rollout_files, thread_id_of

REPO = Path(__file__).resolve().parents[1]
# Copied from ../shared/spec/codex-app-server-0.169.0/experimental/v2.
SPEC = Path(__file__).parent / "fixtures" / "schema" / "experimental"
ALL = SearchFilters(archived=None)


def files_containing(home: Path, needle: str) -> set[str]:
    """Thread ids of the rollout files whose bytes contain `needle`."""
    return {thread_id_of(p) for p in rollout_files(home) if needle.encode() in p.read_bytes()}


@pytest.fixture
def st(db_url: str, home169: Path) -> Any:
    with open_store(db_url, auto_upgrade=True) as store:
        store.ingest([home169])
        yield store


def all_hits(st: SqlThreadStore, query: str, **kw: Any) -> list[Any]:
    out, cursor = [], None
    while True:
        page = st.search(query, cursor=cursor, **kw)
        out.extend(page.hits)
        cursor = page.next_cursor
        if cursor is None:
            return out


# -- finding the right item ---------------------------------------------------------------


def test_command_found_in_its_command_item(st: SqlThreadStore, home169: Path) -> None:
    want = files_containing(home169, "token-6'")
    assert len(want) == 1
    hits = st.search('"token-6"', filters=ALL).hits
    assert {h.thread_id for h in hits} == want
    assert {h.item_type for h in hits} == {"commandExecution"}
    items = {i["id"]: i for i in st.list_items(hits[0].thread_id)}
    assert "token-6" in items[hits[0].item_id]["command"]
    assert hits[0].turn_id in {t["id"] for t in st.list_turns(hits[0].thread_id)}
    start, end = hits[0].matches[0]
    assert hits[0].snippet[start:end].lower() == "token-6"


def test_file_name_found_by_words_and_substring(st: SqlThreadStore, home169: Path) -> None:
    want = files_containing(home169, "notes_15.md")
    for hits in (
        st.search("notes_15.md", filters=ALL).hits,
        st.search("OTES_15.M", substring=True, filters=ALL).hits,
    ):
        file_hits = [h for h in hits if h.item_type == "fileChange"]
        assert file_hits and {h.thread_id for h in file_hits} <= want
        item = next(
            i for i in st.list_items(file_hits[0].thread_id) if i["id"] == file_hits[0].item_id
        )
        assert any(c["path"].endswith("notes_15.md") for c in item["changes"])


def test_web_search_and_prefix_and_exclusion(st: SqlThreadStore) -> None:
    web = st.search(
        "benchmark bulk", filters=SearchFilters(archived=None, item_types=("webSearch",))
    )
    assert web.hits and all(h.item_type == "webSearch" for h in web.hits)
    assert {h.item_type for h in st.search("benchm*", filters=ALL, limit=100).hits} >= {
        "webSearch",
        "userMessage",
    }
    without = st.search("benchmark -search", filters=ALL, limit=100).hits
    assert without and all("search" not in h.snippet.lower().split() for h in without)
    assert not [h for h in without if h.item_type == "webSearch"]


def test_user_text_ranks_above_agent_text(st: SqlThreadStore) -> None:
    hits = st.search("hello", filters=ALL, limit=100).hits
    types = [h.item_type for h in hits]
    assert "userMessage" in types and "agentMessage" in types
    assert types.index("userMessage") < types.index("agentMessage")
    assert hits[0].item_type == "userMessage"
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_unicode_words_and_substrings(st: SqlThreadStore, home169: Path) -> None:
    want = files_containing(home169, "projekt-\u00fc")
    assert want
    hits = st.search("/PROJEKT-\u00dc", substring=True, filters=ALL, limit=100).hits
    assert {h.thread_id for h in hits} <= want


# -- filters and pages ---------------------------------------------------------------------


def test_filters(st: SqlThreadStore) -> None:
    every = all_hits(st, "please", filters=ALL, limit=7)
    threads = {h.thread_id: st.get_thread(h.thread_id) for h in every}
    assert len(threads) > 3

    def ids(f: SearchFilters) -> set[str]:
        return {h.thread_id for h in all_hits(st, "please", filters=f, limit=50)}

    active = {t for t, j in threads.items() if j["cwd"] and not _archived(st, t)}
    assert ids(SearchFilters()) == active
    assert ids(SearchFilters(archived=True)) == set(threads) - active
    beta = {t for t, j in threads.items() if j["cwd"].endswith("/beta")}
    assert (
        beta
        and ids(
            SearchFilters(
                archived=None, cwd=next(iter(threads.values()))["cwd"].rsplit("/", 1)[0] + "/beta/"
            )
        )
        == beta
    )
    assert ids(SearchFilters(archived=None, cwd="/tmp/codex-corpus-work/0.169.0-s202/bet")) == set()
    vscode = {t for t, j in threads.items() if j["source"] == "vscode"}
    assert ids(SearchFilters(archived=None, sources=("vscode",))) == vscode
    assert ids(SearchFilters(archived=None, model_provider="mock")) == set(threads)
    assert ids(SearchFilters(archived=None, model_provider="nope")) == set()
    one = next(iter(threads))
    assert ids(SearchFilters(archived=None, thread_ids=(one,))) == {one}
    types = {
        h.item_type
        for h in all_hits(
            st, "please", filters=SearchFilters(archived=None, item_types=("agentMessage",))
        )
    }
    assert types == {"agentMessage"}
    times = sorted(h.time_ms for h in every if h.time_ms is not None)
    mid = times[len(times) // 2]
    before = all_hits(st, "please", filters=SearchFilters(archived=None, until_ms=mid))
    after = all_hits(st, "please", filters=SearchFilters(archived=None, since_ms=mid))
    assert before and after and len(before) + len(after) == len(every)
    assert all(h.time_ms < mid for h in before) and all(h.time_ms >= mid for h in after)


def _archived(st: SqlThreadStore, tid: str) -> bool:
    with st.engine.connect() as conn:
        return bool(
            conn.execute(text("SELECT archived FROM threads WHERE id = :t"), {"t": tid}).scalar()
        )


@pytest.mark.parametrize("sort", ["relevance", "newest"])
@pytest.mark.parametrize("substring", [False, True])
def test_pages_neither_repeat_nor_skip(st: SqlThreadStore, sort: str, substring: bool) -> None:
    query = "please" if not substring else "ease"
    whole = st.search(query, substring=substring, sort=sort, filters=ALL, limit=100)
    assert 10 < len(whole.hits) < 100 and whole.next_cursor is None
    paged = all_hits(st, query, substring=substring, sort=sort, filters=ALL, limit=3)
    key = [(h.thread_id, h.item_id) for h in paged]
    assert key == [(h.thread_id, h.item_id) for h in whole.hits]
    if sort == "newest":
        times = [h.time_ms for h in paged]
        assert times == sorted(times, reverse=True)


def test_cursor_is_tied_to_its_search(st: SqlThreadStore) -> None:
    page = st.search("please", filters=ALL, limit=2)
    assert page.next_cursor
    with pytest.raises(InvalidCursor):
        st.search("hello", filters=ALL, limit=2, cursor=page.next_cursor)
    with pytest.raises(InvalidCursor):
        st.search("please", limit=2, cursor=page.next_cursor)  # other filters
    with pytest.raises(InvalidCursor):
        st.search("please", filters=ALL, limit=2, cursor="not a cursor")


# -- hostile input ---------------------------------------------------------------------------

HOSTILE = [
    '"unbalanced',
    'unbalanced"',
    '"',
    "*",
    "**",
    "-",
    "NEAR(",
    "NEAR(hello please)",
    "hello OR please",
    "hello AND NOT please",
    "col:hello",
    "^hello",
    "hello:*",
    "'; DROP TABLE items; --",
    "1) OR 1=1 --",
    "%",
    "_",
    "\\",
    "a" * 10_240,
    ("word " * 2048),
    "x\x00y",
    "\U0001f680 rocket",
    "\U0001f680",
    "\u65e5\u672c\u8a9e",
    "   ",
    "-hello",
    "(",
    "{hello}",
    "hello & !please <-> x:*",
]


@pytest.mark.parametrize("substring", [False, True])
def test_hostile_queries_answer_or_refuse_clearly(st: SqlThreadStore, substring: bool) -> None:
    for q in HOSTILE:
        try:
            page = st.search(q, substring=substring, filters=ALL)
        except InvalidInput as exc:
            assert str(exc)
            continue
        assert isinstance(page, SearchPage)
    # the store is intact afterwards
    assert st.counts()["items"] > 0
    assert st.search("hello", filters=ALL).hits


def test_syntax_in_user_text_is_only_words() -> None:
    q = parse_words('NEAR(a b) OR "c:d* e" -f^ g*')
    # "NEAR(a" is one piece of text: the words near, a side by side
    assert fts5_query(q) == '("near a" AND "b" AND "or" AND "c d e" AND "g"*) NOT "f"'
    assert tsquery(q) == "(near <-> a) & b & or & (c <-> d <-> e) & g:* & !f"
    with pytest.raises(InvalidInput):
        parse_words("-only -excluded")


def test_literal_percent_and_underscore(st: SqlThreadStore) -> None:
    # '%s' appears in the command lines; '_' and '%' are not wildcards.
    hits = st.search("'%s", substring=True, filters=ALL, limit=100).hits
    assert hits and all(h.item_type == "commandExecution" for h in hits)
    assert not st.search("%%%", substring=True, filters=ALL).hits
    assert not st.search("s_s", substring=True, filters=ALL).hits


# -- the index follows every write ----------------------------------------------------------


def test_index_follows_append_delete_reimport_and_reindex(
    db_url: str, tmp_path: Path, home169: Path
) -> None:
    src = next(p for p in rollout_files(home169) if b"token-6'" in p.read_bytes())
    lines = src.read_bytes().splitlines(keepends=True)
    cut = next(i for i, ln in enumerate(lines) if b"token-6'" in ln)
    home = tmp_path / "grow"
    live = home / "sessions" / src.name
    live.parent.mkdir(parents=True)
    live.write_bytes(b"".join(lines[:cut]))
    with open_store(db_url, auto_upgrade=True) as st:
        st.ingest([home])
        assert not st.search('"token-6"', filters=ALL).hits
        before = len(st.search("please", filters=ALL, limit=100).hits)
        with open(live, "ab") as fh:  # Codex appends: the open turn is rewritten
            fh.write(b"".join(lines[cut:]))
        st.ingest([home])
        assert len(st.search('"token-6"', filters=ALL).hits) == 1
        after = st.search("please", filters=ALL, limit=100).hits
        assert len(after) >= before
        assert len({(h.thread_id, h.item_id) for h in after}) == len(after)
        tid = thread_id_of(live)
        with st.engine.begin() as conn:
            n_items = conn.execute(text("SELECT count(*) FROM items")).scalar()
            assert _index_rows(conn) == n_items
        st.reindex()
        assert len(st.search('"token-6"', filters=ALL).hits) == 1
        assert len(st.search("please", filters=ALL, limit=100).hits) == len(after)
        live.write_bytes(b"".join(lines[:cut]))  # replaced by a shorter file: re-read
        st.ingest([home])
        assert not st.search('"token-6"', filters=ALL).hits
        with st.engine.begin() as conn:
            conn.execute(delete(s.threads).where(s.threads.c.id == tid))
            assert _index_rows(conn) == 0
        assert not st.search("please", filters=ALL).hits


def _index_rows(conn: Any) -> int:
    if conn.dialect.name == "postgresql":
        return int(conn.execute(text("SELECT count(*) FROM search_words")).scalar())
    # the FTS5 index's own row count (the 'docsize' shadow table)
    return int(conn.execute(text("SELECT count(*) FROM search_words_docsize")).scalar())


def test_migration_has_no_drift_and_goes_down_and_up(db_url: str, home169: Path) -> None:
    with open_store(db_url, auto_upgrade=True) as st:
        st.ingest([home169])
        migrate.check(st.engine)
        migrate.downgrade(st.engine, "0001")
        migrate.upgrade(st.engine)  # indexes the items already there
        migrate.check(st.engine)
        assert len(st.search('"token-6"', filters=ALL).hits) == 1


# -- the app-server shapes -------------------------------------------------------------------


def _validate(name: str, value: dict[str, Any]) -> None:
    schema = json.loads((SPEC / f"{name}.json").read_text())
    jsonschema.validate(value, schema)


def test_thread_search_wire(st: SqlThreadStore, home169: Path) -> None:
    params = {"searchTerm": "HELLO", "limit": 1, "sourceKinds": ["vscode", "exec"]}
    _validate("ThreadSearchParams", params)
    seen: list[str] = []
    cursor = None
    while True:
        resp = search_threads_wire(st, {**params, "cursor": cursor})
        _validate("ThreadSearchResponse", resp)
        for d in resp["data"]:
            seen.append(d["thread"]["id"])
            assert "hello" in d["snippet"].lower()
        cursor = resp["nextCursor"]
        if cursor is None:
            break
    want = {t for t in files_containing(home169, "hello") if not _archived(st, t)}
    assert len(seen) == len(set(seen)) and set(seen) == want
    created = [st.get_thread(t)["createdAt"] for t in seen]
    assert created == sorted(created, reverse=True)
    first = search_threads_wire(st, {**params, "limit": 2})
    second = search_threads_wire(st, {**params, "limit": 2, "cursor": first["nextCursor"]})
    back = search_threads_wire(
        st, {**params, "limit": 2, "sortDirection": "asc", "cursor": second["backwardsCursor"]}
    )
    assert [d["thread"]["id"] for d in back["data"]] == [
        d["thread"]["id"] for d in reversed(first["data"])
    ]
    with pytest.raises(InvalidInput):
        search_threads_wire(st, {"searchTerm": ""})


def test_thread_search_occurrences_wire(st: SqlThreadStore) -> None:
    tid = (
        st.search("hello", filters=SearchFilters(archived=None, item_types=("agentMessage",)))
        .hits[0]
        .thread_id
    )
    msgs = [i for i in st.list_items(tid) if i["type"] in ("userMessage", "agentMessage")]
    expected = sum(
        (i.get("text") or " ".join(c.get("text", "") for c in i.get("content", [])))
        .lower()
        .count("hello")
        for i in msgs
    )
    got: list[dict[str, Any]] = []
    cursor = None
    while True:
        resp = search_occurrences_wire(
            st, {"threadId": tid, "searchTerm": "Hello", "limit": 1, "cursor": cursor}
        )
        _validate("ThreadSearchOccurrencesResponse", resp)
        got.extend(resp["data"])
        cursor = resp["nextCursor"]
        if cursor is None:
            break
    assert len(got) == expected > 1
    # A cursor of another request, a search cursor of the wrong kind, or garbage.
    first = search_occurrences_wire(st, {"threadId": tid, "searchTerm": "Hello", "limit": 1})
    page = st.search("please", filters=ALL, limit=2)
    for bad in (first["nextCursor"], page.next_cursor, "%%%", "e30"):
        term = "hello" if bad == first["nextCursor"] else "Hello"
        with pytest.raises(InvalidCursor):
            search_occurrences_wire(st, {"threadId": tid, "searchTerm": term, "cursor": bad})
    for occ in got:
        r = occ["snippetMatchRange"]
        units = occ["snippet"].encode("utf-16-le")
        assert units[2 * r["start"] : 2 * r["end"]].decode("utf-16-le").lower() == "hello"


def test_thread_list_clause(st: SqlThreadStore, home169: Path) -> None:
    from sqlalchemy import select

    with st.engine.connect() as conn:
        got = {
            r[0]
            for r in conn.execute(
                select(s.threads.c.id).where(thread_match_clause(st.engine.dialect.name, "TOKEN-6"))
            )
        }
        by_name = {
            r[0]
            for r in conn.execute(
                select(s.threads.c.id).where(
                    thread_match_clause(st.engine.dialect.name, "postgres migration #")
                )
            )
        }
    assert got == files_containing(home169, "token-6'")
    assert by_name and by_name <= {t for t in files_containing(home169, "")}


# -- the command line ------------------------------------------------------------------------


def _cli(args: list[str], db: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "ROLLOUTS_DB": db}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_search_json_and_errors(db_url: str, tmp_path: Path) -> None:
    home = (
        copy_home(SHARED / "corpus" / "codex-0.169.0", tmp_path / "h")
        if (SHARED / "corpus" / "codex-0.169.0").exists()
        else None
    )
    home = home or copy_home(
        REPO / "tests" / "fixtures" / "corpus" / "codex-0.169.0", tmp_path / "h2"
    )
    assert _cli(["db", "upgrade"], db_url).returncode == 0
    assert _cli(["import", str(home), "--json"], db_url).returncode == 0
    r = _cli(["search", '"token-6"', "--json", "--all", "--limit", "5"], db_url)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"data", "nextCursor"}
    assert [set(h) for h in out["data"]] == [
        {"threadId", "turnId", "itemId", "itemType", "score", "snippet", "matches"}
    ]
    assert out["data"][0]["itemType"] == "commandExecution"
    r = _cli(["search", "otes_", "--substring", "--json", "--all", "--limit", "1"], db_url)
    page = json.loads(r.stdout)
    assert len(page["data"]) == 1 and page["nextCursor"]
    r2 = _cli(
        [
            "search",
            "otes_",
            "--substring",
            "--json",
            "--all",
            "--limit",
            "1",
            "--cursor",
            page["nextCursor"],
        ],
        db_url,
    )
    assert json.loads(r2.stdout)["data"][0] != page["data"][0]
    for bad in (
        ["search", "*"],
        ["search", "x", "--since", "yesterday"],
        ["search", "x", "--cursor", "zz"],
    ):
        r = _cli(bad, db_url)
        assert r.returncode == 1 and "error:" in r.stderr and "Traceback" not in r.stderr
    r = _cli(["search", "hello", "--since", "3650d", "--until", "2099-01-01"], db_url)
    assert r.returncode == 0 and "hello" in r.stdout.lower()
    assert _cli(["db", "reindex"], db_url).returncode == 0
    assert _cli(["db", "check"], db_url).returncode == 0
