"""Shared history (store.sql.history) read while another process deletes the parent.

Between the statements that read a fork's history (`segments`, then the rows),
a second connection deletes the fork's parent and commits, as another
`rollouts delete` or import would; the reader must still see one history.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
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


@contextmanager
def _parent_deleted_after_segments(
    monkeypatch: pytest.MonkeyPatch, st: Any, fork_id: str, parent_id: str
) -> Iterator[list[str]]:
    """In the body, the first `segments` call for the fork is followed by a committed
    delete of its parent on another connection; yields a list that says whether it fired."""
    real = history.segments
    fired: list[str] = []

    def segments_then_delete(conn: Any, thread_id: str) -> list[history.Segment]:
        segs = real(conn, thread_id)
        if thread_id == fork_id and not fired:
            fired.append(thread_id)
            with write_tx(st.engine) as other:  # another process, committed now
                history.delete_threads(other, [parent_id])
        return segs

    monkeypatch.setattr(history, "segments", segments_then_delete)
    try:
        yield fired
    finally:
        monkeypatch.setattr(history, "segments", real)


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

    with _parent_deleted_after_segments(monkeypatch, st, fid, tid) as fired:
        st.append_items(fid, [_USER_MSG])
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
    with _parent_deleted_after_segments(monkeypatch, st, fid, tid) as fired:
        got = _view_one(st, fid, read)
    assert fired
    assert got == want
    assert _view_one(st, fid, read) == want


def _view_one(st: Any, tid: str, what: str) -> Any:
    if what == "turns":
        return st.list_turns(tid)
    if what == "page":
        return st.list_turns_page(tid, limit=100)
    return st.list_items_page(tid, limit=1000)
