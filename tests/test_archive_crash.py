"""SIGKILL at each step of archive, vault, restore and delete; a re-run recovers."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from store import open_store
from store.archive import tables as t
from store.archive import vault
from tests.conftest import CORPUS, copy_home
from tests.helpers import ANY_SOURCE
from tests.test_archive import content_sha, snapshot

ROOT = Path(__file__).resolve().parents[1]

CASES = [
    (["archive"], "archive:intent"),
    (["archive"], "archive:step"),
    (["archive", "--compress"], "compress:written"),
    (["archive", "--compress"], "compress:renamed"),
    (["archive", "--compress"], "archive:before-commit"),
    (["archive", "--vault"], "vault:uploaded"),
    (["archive", "--vault"], "vault:committed"),
    (["archive", "--vault"], "archive:files"),
    (["archive", "--vault"], "archive:before-commit"),
    (["delete"], "delete:intent"),
    (["delete"], "delete:step"),
    (["delete"], "delete:files"),
    (["delete"], "delete:before-commit"),
]


def cli(
    home: Path, db: str, *args: str, crash: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CODEX_HOME": str(home), "ROLLOUTS_DB": db}
    env.pop("ROLLOUTS_CRASH_AT", None)
    if crash:
        env["ROLLOUTS_CRASH_AT"] = crash
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def recoverable(st, home: Path) -> set[str]:
    """sha256 of every content the store can still give back: files, vault, trash."""
    shas = {content_sha(p) for p in home.rglob("rollout-*.jsonl*") if ".rollouts-tmp" not in p.name}
    with st.engine.connect() as conn:
        blob_ids = list(conn.execute(t.blobs.select().with_only_columns(t.blobs.c.id)).scalars())
    for b in blob_ids:
        h = hashlib.sha256()
        for piece in vault.read(st.engine, b):
            h.update(piece)
        shas.add(h.hexdigest())
    return shas


@pytest.mark.parametrize(("args", "point"), CASES, ids=[c[1] + "-" + c[0][-1] for c in CASES])
def test_kill_and_rerun(db_url: str, tmp_path: Path, args: list[str], point: str) -> None:
    home = copy_home(CORPUS / "codex-0.169.0", tmp_path / "home")
    before = snapshot(home)
    with open_store(db_url, auto_upgrade=True) as st:
        st.ingest([home])
        tid = st.list_threads(**ANY_SOURCE, archived=False, limit=1)["data"][0]["id"]
    killed = cli(home, db_url, *args, tid, crash=point)
    assert killed.returncode == -9, killed.stderr
    again = cli(home, db_url, *args, tid, "--json")
    assert again.returncode in (0,), again.stderr
    with open_store(db_url) as st:
        with st.engine.connect() as conn:
            states = list(
                conn.execute(t.journal.select().with_only_columns(t.journal.c.state)).scalars()
            )
        assert "open" not in states
        assert {sha for sha, _ in before.values()} <= recoverable(st, home)
        assert not list(home.rglob("*.rollouts-tmp"))
        n = st.counts()["threads"]
        summary = st.ingest([home])
        assert summary.removed == 0 and summary.threads == 0, summary.to_json()
        assert st.counts()["threads"] == n


TRASH_CASES = [
    (cmd, point, vaulted)
    for cmd, op in ((("trash", "restore"), "untrash"), (("trash", "purge"), "purge"))
    for point in (f"{op}:intent", f"{op}:step", f"{op}:files", f"{op}:before-commit")
    for vaulted in (False, True)
]


@pytest.mark.parametrize(
    ("cmd", "point", "vaulted"),
    TRASH_CASES,
    ids=[
        f"{c[1]}-{'vaulted' if v else 'file'}"
        for c, _p, v in [(x[0], x[1], x[2]) for x in TRASH_CASES]
    ],
)
def test_kill_trash_and_rerun(
    db_url: str, tmp_path: Path, cmd: tuple[str, str], point: str, vaulted: bool
) -> None:
    """SIGKILL inside `trash restore` / `trash purge` (of a file or of a vaulted thread)."""
    home = copy_home(CORPUS / "codex-0.169.0", tmp_path / "home")
    before = snapshot(home)
    with open_store(db_url, auto_upgrade=True) as st:
        st.ingest([home])
        n = st.counts()["threads"]
        tid = st.list_threads(**ANY_SOURCE, archived=False, limit=1)["data"][0]["id"]
        name = st.main_file(tid).name
    if vaulted:
        assert cli(home, db_url, "archive", "--vault", tid).returncode == 0
    deleted = cli(home, db_url, "delete", tid, "--json")
    assert deleted.returncode == 0, deleted.stderr
    killed = cli(home, db_url, *cmd, tid, crash=point)
    assert killed.returncode == -9, killed.stderr
    again = cli(home, db_url, *cmd, tid, "--json")
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    with open_store(db_url) as st:
        with st.engine.connect() as conn:
            states = list(
                conn.execute(t.journal.select().with_only_columns(t.journal.c.state)).scalars()
            )
            in_trash = list(conn.execute(t.trash.select()).all())
        assert "open" not in states and "aborted" not in states
        assert in_trash == []  # finished: restored or purged
        assert not list(home.rglob("*.rollouts-tmp"))
        if cmd[1] == "restore":
            assert st.counts()["threads"] == n
            after = snapshot(home)  # every file back, byte for byte, where it was
            want = dict(before)
            if vaulted:  # vaulted from sessions/, it was an archived thread when deleted
                want[name] = (before[name][0], "archived_sessions")
            assert after == want
            assert st.main_file(tid).name == name
        else:
            assert st.counts()["threads"] == n - 1
            assert not list(home.rglob(name))  # purged for good ...
            others = {sha for k, (sha, _f) in before.items() if k != name}
            assert others <= recoverable(st, home)  # ... and only that thread
            with st.engine.connect() as conn:
                blobs = list(conn.execute(t.blobs.select()).all())
            assert blobs == []  # the vaulted copy went with it
        summary = st.ingest([home])
        assert summary.removed == 0 and summary.threads == 0, summary.to_json()
