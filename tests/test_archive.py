"""Archive service on real corpora: every byte and place survives each round trip."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
from sqlalchemy import select

from store import open_store
from store.archive.service import (
    archive_threads,
    delete_threads,
    restore_threads,
    unarchive_threads,
)
from store.archive.trash import trash_list, trash_purge, trash_restore
from store.rollout.framing import open_stream
from store.sql import schema as s
from tests.conftest import CORPUS, copy_home
from tests.helpers import ANY_SOURCE, EVERY_THREAD, rollout_files


def content_sha(path: Path) -> str:
    with open_stream(path) as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def snapshot(home: Path) -> dict[str, tuple[str, str]]:
    """rel path (without .zst) -> (sha256 of the content, rel folder)."""
    out = {}
    for p in rollout_files(home):
        name = p.name.removesuffix(".zst")
        out[name] = (content_sha(p), p.parent.relative_to(home).as_posix())
    return out


def folders_agree(st, home: Path) -> None:
    """thread/list archived true/false matches the files on disk (vaulted: no file)."""
    on_disk = {}
    for p in rollout_files(home):
        on_disk[p.name] = p.relative_to(home).parts[0]
    for archived in (False, True):
        cursor = None
        while True:
            page = st.list_threads(**ANY_SOURCE, archived=archived, cursor=cursor, limit=100)
            for th in page["data"]:
                if th["path"] is None or not Path(th["path"]).exists():
                    continue
                assert on_disk[Path(th["path"]).name] == (
                    "archived_sessions" if archived else "sessions"
                ), th["path"]
            cursor = page["nextCursor"]
            if not cursor:
                break


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return copy_home(CORPUS / "codex-0.169.0", tmp_path / "home")


def history_bases(st) -> dict[str, set[str]]:
    """Thread id -> the reference forks whose files read their history from its file."""
    rf = s.rollout_files
    out: dict[str, set[str]] = {}
    with st.engine.connect() as conn:
        for base, fork in conn.execute(
            select(rf.c.base_rollout_id, rf.c.thread_id).where(
                rf.c.base_rollout_id.is_not(None), rf.c.base_rollout_id != rf.c.thread_id
            )
        ):
            out.setdefault(base, set()).add(fork)
    return out


def active_ids(st) -> list[str]:
    return [t["id"] for t in st.list_threads(**ANY_SOURCE, archived=False, limit=100)["data"]]


def test_archive_unarchive_round_trip(db_url: str, home: Path) -> None:
    before = snapshot(home)
    with open_store(db_url, auto_upgrade=True) as st:
        st.ingest([home])
        ids = active_ids(st)
        assert ids
        rep = archive_threads(st, ids, dry_run=True)
        assert rep.threads == len(ids) and snapshot(home) == before
        seen: list[tuple[int, int]] = []
        rep = archive_threads(st, ids, on_progress=lambda done, total: seen.append((done, total)))
        assert rep.threads == len(ids), rep.skipped
        # Progress: bytes, after each batch, up to the whole; the last call says all done.
        assert seen and seen[-1] == (rep.bytes_before, rep.bytes_before)
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)
        for item in rep.items:
            assert "/archived_sessions/" in item["path"] and Path(item["path"]).exists()
        folders_agree(st, home)
        assert not st.list_threads(**ANY_SOURCE, archived=False)["data"] or all(
            t["id"] not in ids for t in st.list_threads(**ANY_SOURCE, archived=False)["data"]
        )
        again = st.ingest([home])
        assert again.threads == 0 and again.removed == 0
        rep = unarchive_threads(st, ids)
        assert rep.threads == len(ids), rep.skipped
        folders_agree(st, home)
    after = snapshot(home)
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}
    for name, (_sha, folder) in before.items():
        if folder.startswith("sessions"):
            assert after[name][1] == folder


def test_compress_vault_restore_reproduce_bytes(db_url: str, home: Path) -> None:
    before = snapshot(home)
    with open_store(db_url, auto_upgrade=True) as st:
        st.ingest([home])
        ids = active_ids(st)
        half = ids[: len(ids) // 2]
        rest = ids[len(ids) // 2 :]
        rep = archive_threads(st, half, compress=True)
        assert rep.threads == len(half), rep.skipped
        assert all(i["path"].endswith(".jsonl.zst") for i in rep.items)
        assert rep.bytes_after < rep.bytes_before
        # A thread whose file reference forks read their history from stays on disk,
        # unless its forks go into the vault with it.
        bases = history_bases(st)
        refused = {tid for tid in rest if bases.get(tid, set()) - set(rest)}
        assert refused, "the corpus has a reference fork whose source is in `rest`"
        rep = archive_threads(st, rest, vault=True)
        assert {s["threadId"] for s in rep.skipped} == refused
        assert all("history base of reference forks" in s["reason"] for s in rep.skipped)
        assert rep.threads == len(rest) - len(refused)
        assert rep.bytes_after == 0
        together = sorted(refused | {f for tid in refused for f in bases[tid]})
        again = archive_threads(st, together, vault=True)
        assert again.threads == len(together), again.skipped
        rest = sorted(set(rest) | set(together))
        half = [tid for tid in half if tid not in rest]
        for item in rep.items:
            assert not Path(item["path"]).exists()
        assert st.ingest([home]).removed == 0  # vaulted threads stay listed
        listed = {t["id"] for t in st.list_threads(**ANY_SOURCE, archived=True, limit=100)["data"]}
        assert set(rest) <= listed
        # the exported bytes of a compressed thread equal the original
        tid = half[0]
        path = st.main_file(tid)
        assert (
            hashlib.sha256(b"".join(st.export(tid))).hexdigest()
            == before[path.name.removesuffix(".zst")][0]
        )
        rep = restore_threads(st, rest)
        assert rep.threads == len(rest), rep.skipped
        unarchive_threads(st, half)
    after = snapshot(home)
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}


def test_delete_trash_restore_and_purge(db_url: str, home: Path) -> None:
    before = snapshot(home)
    with open_store(db_url, auto_upgrade=True) as st:
        st.ingest([home])
        ids = active_ids(st)
        n = st.counts()["threads"]
        archive_threads(st, ids[:1], vault=True)
        rep = delete_threads(st, ids[:3])
        assert rep.threads == 3, rep.skipped
        assert st.counts()["threads"] == n - 3
        listed = {t["threadId"] for t in trash_list(st)}
        assert listed == set(ids[:3])
        assert st.ingest([home]).threads == 0  # the trash is not indexed
        rep = trash_purge(st)  # nothing expired yet
        assert rep.threads == 0
        rep = trash_restore(st, ids[:2])
        assert rep.threads == 2, rep.skipped
        assert st.counts()["threads"] == n - 1
        rep = trash_purge(st, ids=[ids[2]])
        assert rep.threads == 1
        assert trash_list(st) == []
    after = snapshot(home)
    gone = {k for k in before if k not in after}
    assert len(gone) == 1
    for k in after:
        assert after[k][0] == before[k][0]


def test_busy_file_is_skipped(db_url: str, home: Path) -> None:
    with open_store(db_url, auto_upgrade=True) as st:
        st.ingest([home])
        tid = active_ids(st)[0]
        path = st.main_file(tid)
        with open(path, "ab") as fh:
            fh.write(b'{"timestamp":"2026-01-01T00:00:00.000Z","type":"event_msg"')
        rep = archive_threads(st, [tid], vault=True)
        assert rep.threads == 0 and "changed since it was indexed" in rep.skipped[0]["reason"]
        assert path.exists()


def test_compress_dry_run_estimates_a_big_file(tmp_path: Path) -> None:
    """Past 8 MiB a dry run compresses a sample, not the whole file: its estimate stays close."""
    home = copy_home(CORPUS / "codex-0.150.0", tmp_path / "home")
    db_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    path = max(rollout_files(home), key=lambda p: p.stat().st_size)
    # A long session: user messages of random words (compressible, never repeated).
    rng = random.Random(7)
    words = [f"w{rng.getrandbits(40):x}" for _ in range(2000)]
    with path.open("ab") as f:
        while f.tell() < 20 << 20:
            text = " ".join(rng.choices(words, k=200))
            content = [{"type": "input_text", "text": text}]
            payload = {"type": "message", "role": "user", "content": content}
            line = {"timestamp": "2026-01-01T00:00:00.000Z", "type": "response_item"}
            f.write(json.dumps({**line, "payload": payload}).encode() + b"\n")
    size = path.stat().st_size
    with open_store(db_url, auto_upgrade=True) as st:
        assert st.ingest([home]).errors == 0
        listed = st.list_threads(**EVERY_THREAD, limit=100)["data"]
        (tid,) = [t["id"] for t in listed if t["path"] == str(path)]
        dry = archive_threads(st, [tid], compress=True, dry_run=True)
        real = archive_threads(st, [tid], compress=True)
        assert dry.bytes_before == real.bytes_before == size
        assert real.bytes_after < real.bytes_before
        assert abs(dry.bytes_after - real.bytes_after) <= 0.25 * real.bytes_after
