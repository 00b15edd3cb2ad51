"""Real Codex corpora: import, read back, export, re-import, append."""

from __future__ import annotations

from pathlib import Path

import pytest

from store import open_store
from store.sql.listing import SOURCE_KINDS
from tests.conftest import CORPUS, FIXTURES, copy_home
from tests.helpers import EVERY_THREAD, json_lines, rollout_files, thread_id_of


def _thread_ids(root: Path) -> set[str]:
    return {thread_id_of(p) for p in rollout_files(root) if p.stat().st_size}


@pytest.mark.parametrize("folder", sorted(p.name for p in CORPUS.iterdir()))
def test_corpus_imports_and_exports(db_url: str, tmp_path: Path, folder: str) -> None:
    home = copy_home(CORPUS / folder, tmp_path / folder)
    with open_store(db_url, auto_upgrade=True, codex_home=home) as st:
        first = st.ingest([home])
        assert first.errors == 0, first.error_details
        ids = _thread_ids(home)
        assert first.threads == len(ids)
        everything = st.list_threads(
            limit=100,
            archived=None,
            model_providers=[],
            source_kinds=SOURCE_KINDS,
            include_empty=True,
        )["data"]
        assert {t["id"] for t in everything} == ids
        listed = {t["id"]: t for t in everything}
        for path in rollout_files(home):
            tid = thread_id_of(path)
            if "_" in path.name:
                continue  # a revert segment: the thread's main file is exported
            assert b"".join(st.export(tid)) == path.read_bytes(), path
            assert listed[tid]["id"] == tid
        before = st.counts()
        again = st.ingest([home])
        assert (again.threads, again.turns, again.items, again.bytes) == (0, 0, 0, 0)
        assert again.unchanged == len(ids)
        assert st.counts() == before


def test_legacy_items_match_events(db_url: str, tmp_path: Path) -> None:
    """Every user/agent message event of a legacy file becomes one item."""
    home = copy_home(CORPUS / "codex-0.100.0", tmp_path / "h")
    with open_store(db_url, auto_upgrade=True, codex_home=home) as st:
        st.ingest([home])
        checked = 0
        for path in rollout_files(home):
            lines = json_lines(path)
            events = [ln["payload"] for ln in lines if ln.get("type") == "event_msg"]
            if any(e["type"] == "thread_rolled_back" for e in events):
                continue
            if sum(1 for ln in lines if ln.get("type") == "session_meta") > 1:
                continue  # a copy fork repeats its parent's events: counted once each
            items = st.list_items(thread_id_of(path))
            users = sum(1 for e in events if e["type"] == "user_message")
            agents = sum(1 for e in events if e["type"] == "agent_message" and e.get("message"))
            assert sum(1 for i in items if i["type"] == "userMessage") == users, path
            assert sum(1 for i in items if i["type"] == "agentMessage") == agents, path
            checked += 1
        assert checked >= 4


def test_real_rollouts_import(db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "real"
    folder.mkdir()
    sources = sorted((FIXTURES / "real").glob("*.jsonl"))
    shared = Path(__file__).resolve().parents[2] / "shared" / "real-rollouts"
    if shared.is_dir():
        sources = sorted(shared.glob("*.jsonl"))
    for src in sources:
        (folder / src.name).write_bytes(src.read_bytes())
    with open_store(db_url, auto_upgrade=True, codex_home=tmp_path) as st:
        summary = st.ingest([folder])
        # The AgentBoard excerpt's publisher replaced its id with a non-UUID:
        # that file is refused with a clear error, the others are indexed.
        bad = [p for p in folder.iterdir() if not _is_uuid(thread_id_of(p))]
        assert [e["path"] for e in summary.error_details] == [str(p) for p in bad]
        assert all("not a UUID" in e["error"] for e in summary.error_details)
        good = {thread_id_of(p) for p in folder.iterdir()} - {thread_id_of(p) for p in bad}
        assert summary.threads == len(good)
        for t in st.list_threads(limit=100, **EVERY_THREAD)["data"]:
            full = st.get_thread(t["id"], include_turns=True)
            assert full["turns"], t["id"]


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def test_append_adds_exactly_new_items(db_url: str, tmp_path: Path) -> None:
    home = copy_home(CORPUS / "codex-0.169.0", tmp_path / "h")
    target = next(p for p in rollout_files(home) if "620f" in p.name)
    tid = thread_id_of(target)
    lines = target.read_bytes().splitlines(keepends=True)
    cut = len(lines) // 2
    full = target.read_bytes()
    target.write_bytes(b"".join(lines[:cut]))
    with open_store(db_url, auto_upgrade=True, codex_home=home) as st:
        st.ingest([home])
        partial = st.get_thread(tid, include_turns=True)
        # A half-written line is not indexed yet, and is recorded as waiting.
        with target.open("ab") as fh:
            fh.write(lines[cut][:10])
        st.ingest([home])
        assert any("truncated" in s["reason"] for s in st.skipped_lines(tid))
        assert st.get_thread(tid, include_turns=True)["turns"] == partial["turns"]
        target.write_bytes(full)
        summary = st.ingest([home])
        assert summary.bytes == len(full) - len(b"".join(lines[:cut]))
        assert not st.skipped_lines(tid)
        appended = st.get_thread(tid, include_turns=True)
    fresh_url = db_url  # compare with a fresh import of the whole file
    del fresh_url
    home2 = copy_home(CORPUS / "codex-0.169.0", tmp_path / "h2")
    with open_store(
        f"sqlite:///{tmp_path / 'fresh.sqlite'}", auto_upgrade=True, codex_home=home2
    ) as st2:
        st2.ingest([home2])
        want = st2.get_thread(tid, include_turns=True)
    assert appended["turns"] == want["turns"]
    n_partial = sum(len(t["items"]) for t in partial["turns"])
    n_full = sum(len(t["items"]) for t in want["turns"])
    assert n_full > n_partial


def test_parallel_ingest_equals_serial(tmp_path: Path) -> None:
    """Worker processes produce the same database as a single process."""
    home = copy_home(CORPUS / "codex-0.169.0", tmp_path / "h")
    results = []
    for workers in (1, 2):
        with open_store(
            f"sqlite:///{tmp_path / f'w{workers}.sqlite'}", auto_upgrade=True, codex_home=home
        ) as st:
            summary = st.ingest([home], workers=workers)
            assert summary.errors == 0, summary.error_details
            results.append(
                (
                    st.counts(),
                    [
                        st.get_thread(t["id"], include_turns=True)
                        for t in st.list_threads(limit=100, **EVERY_THREAD)["data"]
                    ],
                )
            )
    assert results[0] == results[1]
