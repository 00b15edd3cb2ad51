"""A watch round plans against the stored rows of the threads it touches only.

These cases are the ones where that narrower plan could go wrong:
- a rollout whose name carries no thread id, so that its thread comes from the
  file's head;
- a file of a known thread that has gone;
- a new revert segment of a known thread.

After every round, the store must equal a fresh import of the folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from store import SqlThreadStore, open_store
from store.watch import sync_changes
from tests.conftest import CORPUS, copy_home
from tests.helpers import EVERY_THREAD, rollout_files, thread_id_of

NEW_SRC = (
    CORPUS
    / "codex-0.150.0/sessions/2026/11/21"
    / "rollout-2026-11-21T15-36-00-01a1fec0-0a9d-7f11-ad4d-5e76e348713b.jsonl"
)


def _state(st: SqlThreadStore) -> dict[str, Any]:
    threads = st.list_threads(limit=100, **EVERY_THREAD)["data"]
    return {
        t["id"]: (t["path"], t["updatedAt"], st.get_thread(t["id"], include_turns=True)["turns"])
        for t in threads
    }


def _same_as_fresh(st: SqlThreadStore, home: Path, tmp_path: Path, n: int) -> None:
    with open_store(f"sqlite:///{tmp_path / f'fresh{n}.sqlite'}", auto_upgrade=True) as ref:
        assert ref.ingest([home]).errors == 0
        assert _state(st) == _state(ref)


def test_targeted_rounds_equal_a_fresh_import(db_url: str, tmp_path: Path) -> None:
    home = copy_home(CORPUS / "codex-0.169.0", tmp_path / "home").resolve()
    day = home / "sessions/2026/11/21"
    with open_store(db_url, auto_upgrade=True, codex_home=home) as st:
        assert st.ingest([home]).errors == 0
        before = len(_state(st))

        # A new thread under a name without an id, written in two parts.
        odd = day / "imported-by-hand.jsonl"
        data = NEW_SRC.read_bytes()
        cut = data.index(b"\n", len(data) // 2) + 1
        odd.write_bytes(data[:cut])
        assert sync_changes(st.engine, home, [odd]).errors == 0
        _same_as_fresh(st, home, tmp_path, 1)
        with odd.open("ab") as fh:
            fh.write(data[cut:])
        summary = sync_changes(st.engine, home, [odd])
        assert (summary.errors, summary.threads) == (0, 1)
        _same_as_fresh(st, home, tmp_path, 2)
        assert len(_state(st)) == before + 1

        # A file of a known thread goes; another thread gets a revert segment.
        # (Threads outside any fork: a reference fork cannot be read without its base.)
        mains = {thread_id_of(p): p for p in rollout_files(day) if "_" not in p.name}
        kin = {t["forkedFromId"] for t in st.list_threads(limit=100, **EVERY_THREAD)["data"]}
        kin |= {
            t["id"] for t in st.list_threads(limit=100, **EVERY_THREAD)["data"] if t["forkedFromId"]
        }
        gone_id, grown_id = sorted(set(mains) - kin)[:2]
        gone = mains[gone_id]
        gone.unlink()
        segment = day / mains[grown_id].name.replace(
            ".jsonl", "_01a1fec0-ffff-7fff-bfff-ffffffffffff.jsonl"
        )
        shutil.copyfile(mains[grown_id], segment)
        assert sync_changes(st.engine, home, [gone, segment]).errors == 0
        _same_as_fresh(st, home, tmp_path, 3)
        assert gone_id not in _state(st)
