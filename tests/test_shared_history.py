"""Forks share their parent's history rows in the database (store.sql.history).

Real corpus threads (0.169.0: reference forks; 0.150.0: copy forks) forked by
the store, on SQLite and PostgreSQL. Every check compares what a reader sees
(`list_turns`, the turns and items pages) with what it saw before, and counts
the rows actually stored, so sharing that silently copied, or lost, rows fails.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError

from store import open_store
from store.sql import history
from store.sql import schema as s
from store.sql.backend import SqlThreadStore
from store.sql.engine import write_tx
from tests.conftest import CORPUS, copy_home
from tests.helpers import EVERY_THREAD


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as st:
        yield st


PAGINATED = ("codex-0.169.0", "01a1fec0-620f-7352-a438-43c08a0c79fc")
LEGACY = ("codex-0.150.0", "01a1fec0-1c69-7e10-b266-2bedf8b4aefd")


def _stored(st: SqlThreadStore, tid: str) -> tuple[int, int]:
    """(turn rows, item rows) stored under this thread id itself."""
    with st.engine.connect() as conn:
        turns = conn.execute(
            select(func.count()).select_from(s.turns).where(s.turns.c.thread_id == tid)
        ).scalar_one()
        items = conn.execute(
            select(func.count()).select_from(s.items).where(s.items.c.thread_id == tid)
        ).scalar_one()
    return int(turns), int(items)


def _history_len(st: SqlThreadStore, tid: str) -> int:
    with st.engine.connect() as conn:
        return len(history.turn_rows(conn, tid))


def _sharing(st: SqlThreadStore, tid: str) -> tuple[str | None, int]:
    with st.engine.connect() as conn:
        parent, k = conn.execute(
            select(s.threads.c.history_parent_id, s.threads.c.history_turns).where(
                s.threads.c.id == tid
            )
        ).one()
    return parent, int(k)


def _view(st: SqlThreadStore, tid: str) -> dict[str, Any]:
    """Everything a client reads of a thread's history."""
    return {
        "turns": st.list_turns(tid),
        "page": st.list_turns_page(tid, limit=100),
        "items": st.list_items_page(tid, limit=1000),
    }


def _imported(
    stack: ExitStack, db_url: str, tmp_path: Path, corpus: str
) -> tuple[SqlThreadStore, Path]:
    """A store holding a fresh copy of a corpus CODEX_HOME, closed with `stack`."""
    home = copy_home(CORPUS / corpus, tmp_path / "home")
    st = stack.enter_context(open_store(db_url, auto_upgrade=True, codex_home=home))
    assert st.ingest([home]).errors == 0
    return st, home


@pytest.fixture(params=[PAGINATED, LEGACY], ids=["reference-forks", "copy-forks"])
def source(
    request: pytest.FixtureRequest, db_url: str, tmp_path: Path
) -> Iterator[tuple[SqlThreadStore, Path, str]]:
    corpus, tid = request.param
    with ExitStack() as stack:
        st, home = _imported(stack, db_url, tmp_path, corpus)
        yield st, home, tid


def test_forks_at_every_turn_store_only_their_own_rows(
    source: tuple[SqlThreadStore, Path, str],
) -> None:
    st, home, tid = source
    src_turns = st.list_turns(tid)
    assert len(src_turns) == 6
    src_rows = _stored(st, tid)
    with st.engine.connect() as conn:
        rows = history.turn_rows(conn, tid)
    # Turns still open in the reducer (the last one, if interrupted) are never shared.
    settled = next((r["position"] for r in rows if r["is_open"]), len(rows))
    forks = []
    for i, turn in enumerate(src_turns):
        fid = st.fork(tid, last_turn_id=turn["id"])["id"]
        assert st.list_turns(fid) == src_turns[: i + 1]
        parent, k = _sharing(st, fid)
        # Every settled turn up to the fork point is shared, and only the rest is stored.
        assert parent == tid and k >= min(i + 1, settled)
        assert _stored(st, fid)[0] + k == _history_len(st, fid)
        forks.append(fid)
    # A fork of a fork shares through its parent, down to the source's rows.
    grand = st.fork(forks[3])["id"]
    assert st.list_turns(grand) == src_turns[:4]
    assert _sharing(st, grand) == (forks[3], 4) and _stored(st, grand) == (0, 0)
    assert _stored(st, tid) == src_rows
    # A new turn in a fork is its own row; the shared rows stay where they are.
    st.append_items(
        forks[1],
        [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}],
    )
    assert st.list_turns(forks[1])[:2] == src_turns[:2]
    assert _stored(st, tid) == src_rows
    # A re-import of the whole folder changes nothing, sharing included.
    before = {f: (_view(st, f), _sharing(st, f), _stored(st, f)) for f in [*forks, grand]}
    again = st.ingest([home])
    assert (again.threads, again.items, again.errors) == (0, 0, 0)
    assert {f: (_view(st, f), _sharing(st, f), _stored(st, f)) for f in before} == before


def _chain(
    stack: ExitStack, db_url: str, tmp_path: Path, source: tuple[str, str]
) -> tuple[SqlThreadStore, Path, list[str], dict[str, dict[str, Any]]]:
    """A corpus home with source -> fork at turn 4 -> fork of that at turn 2.

    Returns the store, the home, the three ids and what each of them shows.
    """
    st, home = _imported(stack, db_url, tmp_path, source[0])
    tid = source[1]
    turns = st.list_turns(tid)
    mid = st.fork(tid, last_turn_id=turns[3]["id"])["id"]
    leaf = st.fork(mid, last_turn_id=turns[1]["id"])["id"]
    return st, home, [tid, mid, leaf], {t: _view(st, t) for t in (tid, mid, leaf)}


def test_deleting_shared_history_hands_it_to_the_forks(
    db_url: str, tmp_path: Path, stack: ExitStack
) -> None:
    """Deleting a thread copies what its forks read from it into them, and only that."""
    st, home, (tid, mid, leaf), views = _chain(stack, db_url, tmp_path, LEGACY)
    assert _stored(st, leaf) == (0, 0) and _sharing(st, leaf)[0] == mid
    # The middle thread goes: the leaf now shares from the source directly.
    st.delete(mid)
    assert _view(st, leaf) == views[leaf]
    assert _sharing(st, leaf) == (tid, 2) and _stored(st, leaf) == (0, 0)
    # The source goes too (it has no reference forks): the leaf holds its rows itself.
    st.delete(tid)
    assert _view(st, leaf) == views[leaf]
    assert _sharing(st, leaf) == (None, 0)
    assert _stored(st, leaf)[0] == 2
    # And a fresh import of what is left agrees.
    fresh = stack.enter_context(
        open_store(f"sqlite:///{tmp_path / 'fresh.sqlite'}", auto_upgrade=True)
    )
    fresh.ingest([home])
    assert fresh.list_turns(leaf) == views[leaf]["turns"]


def test_a_parent_cannot_be_deleted_behind_its_forks_back(
    source: tuple[SqlThreadStore, Path, str],
) -> None:
    """Only history.delete_threads deletes threads: a bare DELETE of a shared parent fails."""
    st, _home, tid = source
    fid = st.fork(tid)["id"]
    with pytest.raises(IntegrityError), write_tx(st.engine) as conn:
        conn.execute(delete(s.threads).where(s.threads.c.id == tid))
    assert st.list_turns(fid) == st.list_turns(tid)
    # Deleting both at once, in any order, is fine.
    with write_tx(st.engine) as conn:
        history.delete_threads(conn, [fid, tid])
        assert conn.execute(select(func.count()).select_from(s.threads)).scalar_one() > 0
    assert _stored(st, fid) == (0, 0) and _stored(st, tid) == (0, 0)


def test_rewriting_a_shared_turn_detaches_it_first(
    source: tuple[SqlThreadStore, Path, str],
) -> None:
    """Before a parent's turns from n on are rewritten, its forks copy what they read there."""
    st, _home, tid = source
    fid = st.fork(tid)["id"]
    grand = st.fork(fid)["id"]
    want = {t: _view(st, t) for t in (fid, grand)}
    assert _sharing(st, fid)[1] >= 5
    with write_tx(st.engine) as conn:
        history.detach(conn, tid, 4)  # as an append whose reducer reopens turn 4 would
        # the parent's own rows from 4 on may now be replaced: drop them
        conn.execute(
            delete(s.items).where(s.items.c.thread_id == tid, s.items.c.turn_position >= 4)
        )
        conn.execute(delete(s.turns).where(s.turns.c.thread_id == tid, s.turns.c.position >= 4))
    assert _sharing(st, fid) == (tid, 4)
    assert _stored(st, fid)[0] == _history_len(st, fid) - 4  # turns 4 and up, its own now
    assert {t: _view(st, t) for t in (fid, grand)} == want


def test_a_replaced_parent_file_keeps_its_forks_whole(
    db_url: str, tmp_path: Path, stack: ExitStack
) -> None:
    """A source re-read in full (its file replaced) first hands its shared rows to its forks."""
    st, home = _imported(stack, db_url, tmp_path, LEGACY[0])
    tid = LEGACY[1]
    fid = st.fork(tid)["id"]
    want = _view(st, fid)
    path = Path(st.get_thread(tid)["path"])
    lines = path.read_bytes().splitlines(keepends=True)
    # The same history with one line fewer at the end: a shorter file is re-read in full.
    shorter = tmp_path / "shorter.jsonl"
    shorter.write_bytes(b"".join(lines[:-1]))
    shutil.copystat(path, shorter)
    shorter.replace(path)
    summary = st.ingest([home])
    assert summary.errors == 0 and summary.threads == 1
    assert _view(st, fid) == want
    parent, k = _sharing(st, fid)
    assert parent in (tid, None)
    assert _stored(st, fid)[0] + k == _history_len(st, fid)


def test_downgrade_gives_every_fork_its_rows_back(
    db_url: str, tmp_path: Path, stack: ExitStack
) -> None:
    from store.sql import migrate

    st, _home, (_tid, mid, leaf), views = _chain(stack, db_url, tmp_path, PAGINATED)
    migrate.downgrade(st.engine, "0005")
    with st.engine.connect() as conn:
        cols = {r[0] for r in conn.execute(select(s.turns.c.thread_id).distinct())}
        assert {mid, leaf} <= cols
        n = conn.execute(text("SELECT count(*) FROM turns WHERE thread_id = :t"), {"t": leaf})
        assert n.scalar_one() == 2
    migrate.upgrade(st.engine)
    assert {t: _view(st, t) for t in views} == views


def _user_text(turn: dict[str, Any]) -> str:
    for item in turn["items"]:
        if item["type"] == "userMessage":
            return " ".join(c.get("text", "") for c in item["content"] if c.get("type") == "text")
    return ""


def test_thread_search_finds_a_fork_by_its_shared_history(
    source: tuple[SqlThreadStore, Path, str],
) -> None:
    """thread/search matches a fork on text it reads from its parent, and not on text after it."""
    from store.search.wire import search_threads_wire

    st, _home, tid = source
    turns = st.list_turns(tid)
    fid = st.fork(tid, last_turn_id=turns[1]["id"])["id"]
    assert _sharing(st, fid) == (tid, 2) and _stored(st, fid) == (0, 0)
    kinds = EVERY_THREAD["source_kinds"]

    def found(term: str) -> set[str]:
        page = search_threads_wire(st, {"searchTerm": term, "sourceKinds": kinds, "limit": 100})
        return {hit["thread"]["id"] for hit in page["data"]}

    early, late = _user_text(turns[0]), _user_text(turns[5])
    assert early and late
    assert early.lower() not in late.lower() and late.lower() not in early.lower()
    assert {tid, fid} <= found(early)
    assert tid in found(late) and fid not in found(late)
    # Its snippet comes from the shared turn.
    hit = next(
        h
        for h in search_threads_wire(st, {"searchTerm": early, "sourceKinds": kinds, "limit": 100})[
            "data"
        ]
        if h["thread"]["id"] == fid
    )
    assert early.lower()[:20] in hit["snippet"].lower()
