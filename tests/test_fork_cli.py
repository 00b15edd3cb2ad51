"""`rollouts fork` and `rollouts show --lineage` in real subprocesses, on real corpora.

A 0.169.0 home (paginated threads: reference forks) and a 0.150.0 home
(legacy threads: copy forks). What a fork must hold is read from the source
through the CLI before the fork; the new file is read independently of the
store, and the source file must be byte for byte unchanged.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli_run import assert_clean_failure, rollouts
from tests.conftest import CORPUS, copy_home
from tests.helpers import json_lines, rollout_files

HOMES = {"paginated": "codex-0.169.0", "legacy": "codex-0.150.0"}
# In each home, a thread of six turns that Codex itself has already forked once.
SOURCES = {
    "paginated": "01a1fec0-620f-7352-a438-43c08a0c79fc",
    "legacy": "01a1fec0-1c69-7e10-b266-2bedf8b4aefd",
}


def _ok(home: Path, url: str, *args: str) -> Any:
    proc = rollouts(home, url, *args)
    assert proc.returncode == 0, (args, proc.stderr)
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout) if "--json" in args else proc.stdout


@pytest.fixture(params=sorted(HOMES))
def indexed(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> tuple[Path, str, str]:
    home = copy_home(CORPUS / HOMES[request.param], tmp_path / "home")
    _ok(home, db_url, "db", "upgrade")
    summary = _ok(home, db_url, "import", "--json")
    assert summary["errors"] == 0
    return home, db_url, request.param


def _digests(home: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in rollout_files(home)}


def _source(home: Path, url: str, mode: str) -> dict[str, Any]:
    src: dict[str, Any] = _ok(home, url, "show", SOURCES[mode], "--json")
    assert len(src["turns"]) == 6
    return src


def test_fork_at_every_turn_then_lineage(indexed: tuple[Path, str, str]) -> None:
    home, url, mode = indexed
    src = _source(home, url, mode)
    codex_forks = [
        t["id"] for t in _ok(home, url, "show", src["id"], "--lineage", "--json")["descendants"]
    ]
    assert len(codex_forks) == 1
    before = _digests(home)
    forks = []
    for i in (0, 2, 5):  # the first turn, one in the middle, the last
        turn = src["turns"][i]
        out = _ok(home, url, "fork", src["id"], "--at-turn", turn["id"], "--json")
        fork = out["thread"]
        path = Path(out["path"])
        assert path == Path(fork["path"]) and path.is_file() and path.is_relative_to(home)
        assert fork["forkedFromId"] == src["id"] and fork["id"] != src["id"]
        head = json_lines(path)[0]["payload"]
        assert head["id"] == fork["id"] and head["forked_from_id"] == src["id"]
        # Paginated sources get a reference fork (nothing copied), legacy ones a copy.
        assert ("history_base" in head) == (mode == "paginated")
        shown = _ok(home, url, "show", fork["id"], "--json")
        assert [t["id"] for t in shown["turns"]] == [t["id"] for t in src["turns"][: i + 1]]
        assert [t["items"] for t in shown["turns"]] == [t["items"] for t in src["turns"][: i + 1]]
        forks.append(fork["id"])
    # A fork of a fork, with no turn given: the whole history.
    grand = _ok(home, url, "fork", forks[0], "--json")["thread"]
    assert (
        _ok(home, url, "show", grand["id"], "--json")["turns"]
        == _ok(home, url, "show", forks[0], "--json")["turns"]
    )
    # The user's files are untouched: every file that was there has the same bytes.
    after = _digests(home)
    assert {p: after[p] for p in before} == before
    assert len(after) == len(before) + len(forks) + 1

    tree = _ok(home, url, "show", src["id"], "--lineage", "--json")
    assert tree["thread"]["id"] == src["id"]
    assert [t["id"] for t in tree["descendants"]] == [*codex_forks, *forks, grand["id"]]
    assert {t["forkedFromId"] for t in tree["descendants"]} == {src["id"], forks[0]}
    assert tree["ancestors"] == [] and tree["missingAncestorId"] is None
    up = _ok(home, url, "show", grand["id"], "--lineage", "--json")
    assert [t["id"] for t in up["ancestors"]] == [forks[0], src["id"]]
    assert up["descendants"] == [] and up["missingAncestorId"] is None
    text = _ok(home, url, "show", src["id"], "--lineage").splitlines()
    assert text[0].startswith(src["id"]) and "<- this thread" in text[0]
    assert any(line.startswith("    " + grand["id"]) for line in text), text
    line = _ok(home, url, "fork", src["id"]).strip()
    assert line.startswith(f"forked {src['id']} -> ") and line.endswith(".jsonl"), line

    # A fresh import of the home, forks included, agrees with what the forks wrote.
    again = _ok(home, url, "import", "--json")
    assert (again["threads"], again["items"], again["errors"]) == (0, 0, 0)


def test_fork_errors_are_one_clear_line(indexed: tuple[Path, str, str]) -> None:
    home, url, _mode = indexed
    src = _source(home, url, _mode)
    before = _digests(home)
    unknown = "01a1fec0-0000-7000-8000-000000000000"
    assert_clean_failure(rollouts(home, url, "fork", unknown), unknown)
    assert_clean_failure(
        rollouts(home, url, "fork", src["id"], "--at-turn", "no-such-turn"), "no-such-turn"
    )
    assert_clean_failure(rollouts(home, url, "fork", "not-a-uuid"), "not-a-uuid")
    assert_clean_failure(rollouts(home, url, "show", unknown, "--lineage"), unknown)
    archived = _ok(home, url, "list", "--archived", "--json")["data"]
    if archived:
        assert_clean_failure(rollouts(home, url, "fork", archived[0]["id"]), "archived")
    assert _digests(home) == before  # no failed fork left a file behind


def test_deleting_a_fork_source_keeps_every_fork_readable(
    indexed: tuple[Path, str, str], tmp_path: Path
) -> None:
    """A copy fork outlives its deleted source; a reference fork's source cannot go alone."""
    home, url, mode = indexed
    src = _source(home, url, mode)
    fork = _ok(home, url, "fork", src["id"], "--json")["thread"]
    want = _ok(home, url, "show", fork["id"], "--json")["turns"]
    if mode == "paginated":
        # The fork reads its history from the source's file: refused, nothing moved.
        before = _digests(home)
        proc = rollouts(home, url, "delete", src["id"])
        assert "Traceback" not in proc.stderr
        assert "history base of reference forks" in proc.stderr + proc.stdout, proc
        assert fork["id"] in proc.stderr + proc.stdout
        assert _digests(home) == before
        # Into the vault, its file would leave the folder just the same: refused too.
        proc = rollouts(home, url, "archive", src["id"], "--vault", "--json")
        assert "Traceback" not in proc.stderr
        assert "history base of reference forks" in proc.stderr + proc.stdout, proc
        assert _digests(home) == before
        # Deleted together with its forks (Codex's own fork of it too), it goes.
        kin = [
            t["id"] for t in _ok(home, url, "show", src["id"], "--lineage", "--json")["descendants"]
        ]
        proc = rollouts(home, url, "delete", src["id"], *kin)
        assert proc.returncode == 0, proc.stderr
        return
    proc = rollouts(home, url, "delete", src["id"])
    assert proc.returncode == 0, proc.stderr
    assert _ok(home, url, "show", fork["id"], "--json")["turns"] == want
    up = _ok(home, url, "show", fork["id"], "--lineage", "--json")
    assert up["ancestors"] == [] and up["missingAncestorId"] == src["id"]
    # The copy fork holds its history itself: a fresh import of the folder reads it.
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    assert _ok(home, fresh, "db", "upgrade") is not None
    assert _ok(home, fresh, "import", "--json")["errors"] == 0
    assert _ok(home, fresh, "show", fork["id"], "--json")["turns"] == want
