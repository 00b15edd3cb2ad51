"""The real Codex 0.169.0 agrees with us about what is archived after our archive commands.

Runs `codex app-server` (tests/realcodex.py finds or installs it; skipped with
the reason when it cannot) on a CODEX_HOME after `rollouts archive`,
`archive --compress`, `unarchive`, `archive --vault` + `restore`, and compares
its thread/list with archived false/true with ours. A thread left in the vault
has no file, so Codex cannot list it; we still list it as archived: that is
the one expected difference, asserted as such.
"""

from __future__ import annotations

import json
from pathlib import Path

from store import open_store
from tests.cli_run import rollouts
from tests.conftest import CORPUS, copy_home
from tests.helpers import ANY_SOURCE
from tests.realcodex import AppServer, require_codex, write_mock_config


def ours(db: str, archived: bool) -> set[str]:
    ids: set[str] = set()
    with open_store(db) as st:
        cursor = None
        while True:
            page = st.list_threads(**ANY_SOURCE, archived=archived, cursor=cursor, limit=100)
            ids.update(t["id"] for t in page["data"])
            cursor = page["nextCursor"]
            if not cursor:
                return ids


def run(home: Path, db: str, *args: str) -> dict:
    proc = rollouts(home, db, *args, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["skipped"] == [], out["skipped"]
    return out


def test_codex_app_server_agrees_after_archive_commands(db_url: str, tmp_path: Path) -> None:
    codex = require_codex()
    home = copy_home(CORPUS / "codex-0.169.0", tmp_path / "home")
    with open_store(db_url, auto_upgrade=True) as st:
        st.ingest([home])
    active = sorted(ours(db_url, False))
    assert len(active) >= 6
    moved, compressed, back, restored, vaulted = active[:5]

    run(home, db_url, "archive", moved)
    run(home, db_url, "archive", compressed, "--compress")
    run(home, db_url, "archive", back)
    run(home, db_url, "unarchive", back)
    run(home, db_url, "archive", restored, "--vault")
    run(home, db_url, "restore", restored)
    run(home, db_url, "archive", vaulted, "--vault")
    assert (home / "archived_sessions").is_dir()
    assert any(p.name.endswith(".jsonl.zst") for p in (home / "archived_sessions").iterdir())

    want = {False: ours(db_url, False), True: ours(db_url, True)}
    assert {moved, compressed, restored, vaulted} <= want[True]
    assert back in want[False]

    write_mock_config(home)
    with AppServer(codex, home, tmp_path / "codex.log", cwd=home) as server:
        got = server.stable_lists(server.source_kinds())
    assert got[False] == want[False]
    assert got[True] == want[True] - {vaulted}  # a vaulted thread has no file for Codex
    assert vaulted not in got[False]
