"""Review tests for shared history (store.sql.history)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from store.sql import history
from store.sql.engine import write_tx
from tests.test_shared_history import LEGACY, _imported, _sharing


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as st:
        yield st


_USER_MSG = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}


def test_append_to_a_fork_while_its_parent_is_deleted_elsewhere(
    db_url: str, tmp_path: Path, stack: ExitStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fork's append reads its history while another process deletes the parent.

    The delete commits between the statements that read the fork's history
    (`segments`, then the rows): the append must still see the whole history.
    """
    st, _home = _imported(stack, db_url, tmp_path, LEGACY[0])
    tid = LEGACY[1]
    fid = st.fork(tid)["id"]
    assert _sharing(st, fid)[0] == tid
    before = st.list_turns(fid)

    real = history.segments
    fired: list[str] = []

    def segments_then_concurrent_delete(conn: Any, thread_id: str) -> list[history.Segment]:
        segs = real(conn, thread_id)
        if thread_id == fid and not fired:
            fired.append(thread_id)
            # Another process (rollouts delete, or an import finding the file
            # gone) deletes the parent and commits, right now.
            with write_tx(st.engine) as other:
                history.delete_threads(other, [tid])
        return segs

    monkeypatch.setattr(history, "segments", segments_then_concurrent_delete)
    st.append_items(fid, [_USER_MSG])
    monkeypatch.setattr(history, "segments", real)
    assert fired
    after = st.list_turns(fid)
    assert after[: len(before)] == before
    assert len(after) >= len(before)


@pytest.mark.parametrize("read", ["turns", "page", "items"])
def test_reading_a_fork_while_its_parent_is_deleted_elsewhere(
    db_url: str, tmp_path: Path, stack: ExitStack, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    """thread/read and the pages read one history, even when the parent goes meanwhile."""
    st, _home = _imported(stack, db_url, tmp_path, LEGACY[0])
    tid = LEGACY[1]
    fid = st.fork(tid)["id"]
    assert _sharing(st, fid)[0] == tid
    want = _view_one(st, fid, read)
    real = history.segments
    fired: list[str] = []

    def segments_then_delete(conn: Any, thread_id: str) -> list[history.Segment]:
        segs = real(conn, thread_id)
        if thread_id == fid and not fired:
            fired.append(thread_id)
            with write_tx(st.engine) as other:  # another process, committed now
                history.delete_threads(other, [tid])
        return segs

    monkeypatch.setattr(history, "segments", segments_then_delete)
    got = _view_one(st, fid, read)
    monkeypatch.setattr(history, "segments", real)
    assert fired
    assert got == want
    assert _view_one(st, fid, read) == want


def _view_one(st: Any, tid: str, what: str) -> Any:
    if what == "turns":
        return st.list_turns(tid)
    if what == "page":
        return st.list_turns_page(tid, limit=100)
    return st.list_items_page(tid, limit=1000)
