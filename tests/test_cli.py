"""The `rollouts` command in real subprocesses, on a real Codex 0.169.0 home.

What the files contain is known independently: thread ids from their
session_meta lines, and turns and items from the real app-server's
`thread/read` answers recorded with the corpus.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.cli_run import assert_clean_failure, rollouts
from tests.conftest import FIXTURES
from tests.helpers import recorded_reads as app_server_reads
from tests.helpers import rollout_files, thread_id_of

SUMMARY_KEYS = {"files", "threads", "turns", "items", "bytes", "skipped_lines", "errors"}


def _main_files(home: Path) -> dict[str, Path]:
    """Each thread's main rollout file (revert segments carry `_` in their name)."""
    return {thread_id_of(p): p for p in rollout_files(home) if "_" not in p.name}


@pytest.fixture
def cli_home(db_url: str, home169: Path) -> tuple[Path, str]:
    """The 0.169.0 home and a database upgraded with `rollouts db upgrade`."""
    proc = rollouts(home169, db_url, "db", "upgrade")
    assert proc.returncode == 0, proc.stderr
    return home169, db_url


def _import(home: Path, url: str) -> dict[str, Any]:
    proc = rollouts(home, url, "import", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_import_summary_counts_what_the_files_hold(cli_home: tuple[Path, str]) -> None:
    home, url = cli_home
    files = rollout_files(home)
    reads = app_server_reads(home)
    summary = _import(home, url)
    assert set(summary) >= SUMMARY_KEYS
    assert summary["files"] == len(files)
    assert summary["threads"] == len({thread_id_of(p) for p in files}) == len(reads)
    assert summary["bytes"] == sum(p.stat().st_size for p in files)
    assert summary["turns"] == sum(len(t["turns"]) for t in reads.values())
    assert summary["items"] == sum(len(u["items"]) for t in reads.values() for u in t["turns"])
    assert (summary["skipped_lines"], summary["errors"]) == (0, 0)
    again = _import(home, url)
    assert (again["threads"], again["turns"], again["items"], again["bytes"]) == (0, 0, 0, 0)
    assert again["unchanged"] == len(reads)


def test_list_pages_through_every_thread_once(cli_home: tuple[Path, str]) -> None:
    home, url = cli_home
    _import(home, url)
    schema = json.loads((FIXTURES / "schema" / "ThreadListResponse.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        args = ["list", "--all", "--json", "--limit", "2"]
        proc = rollouts(home, url, *args, *(["--cursor", cursor] if cursor else []))
        assert proc.returncode == 0, proc.stderr
        page = json.loads(proc.stdout)
        validator.validate(page)
        assert 1 <= len(page["data"]) <= 2
        seen += [t["id"] for t in page["data"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(set(seen)) == sorted(app_server_reads(home))
    assert pages == (len(seen) + 1) // 2
    created = [t["createdAt"] for t in _all(home, url)]
    assert created == sorted(created, reverse=True)
    # Archived threads are in --all and only there or under --archived.
    archived = {t["id"] for t in _all(home, url) if "archived_sessions" in t["path"]}
    assert archived
    active = json.loads(rollouts(home, url, "list", "--json", "--limit", "100").stdout)
    assert not archived & {t["id"] for t in active["data"]}
    only = json.loads(rollouts(home, url, "list", "--archived", "--json").stdout)
    assert {t["id"] for t in only["data"]} == archived


def _all(home: Path, url: str) -> list[dict[str, Any]]:
    proc = rollouts(home, url, "list", "--all", "--json", "--limit", "100")
    return json.loads(proc.stdout)["data"]  # type: ignore[no-any-return]


def test_show_has_the_app_servers_turns(cli_home: tuple[Path, str]) -> None:
    home, url = cli_home
    _import(home, url)
    validator = jsonschema.Draft7Validator(
        json.loads((FIXTURES / "schema" / "ThreadReadResponse.json").read_text())
    )
    for tid, want in app_server_reads(home).items():
        proc = rollouts(home, url, "show", tid, "--json")
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)
        validator.validate({"thread": got})
        assert got["id"] == tid
        assert got["turns"] == want["turns"]
    human = rollouts(home, url, "show", tid)
    assert human.returncode == 0 and tid in human.stdout


def test_export_gives_the_original_bytes(cli_home: tuple[Path, str], tmp_path: Path) -> None:
    home, url = cli_home
    _import(home, url)
    for tid, path in _main_files(home).items():
        out = tmp_path / f"{tid}.jsonl"
        proc = rollouts(home, url, "export", tid, "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        assert out.read_bytes() == path.read_bytes()
        assert not out.with_name(out.name + ".part").exists()
    # To stdout, with the id in capitals as a user might paste it.
    stdout = rollouts(home, url, "export", tid.upper())
    assert stdout.stdout.encode() == path.read_bytes()


def test_skipped_lists_file_line_and_reason(cli_home: tuple[Path, str]) -> None:
    home, url = cli_home
    tid, path = next(iter(sorted(_main_files(home).items())))
    original = path.read_bytes()
    lines = original.splitlines(keepends=True)
    lines.insert(3, b"{not json\n")
    path.write_bytes(b"".join(lines) + b'{"timestamp":')
    summary = _import(home, url)
    assert summary["skipped_lines"] == 2
    proc = rollouts(home, url, "skipped")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"{path}:4: invalid JSON (unexpected character, expected a string key)",
        f"{path}:{len(lines) + 1}: truncated last line (no newline yet)",
    ]
    as_json = json.loads(rollouts(home, url, "skipped", tid, "--json").stdout)["data"]
    assert [(k["threadId"], k["line"]) for k in as_json] == [(tid, 4), (tid, len(lines) + 1)]
    # Nothing of the user's file was rewritten.
    assert path.read_bytes() == b"".join(lines) + b'{"timestamp":'


def test_errors_are_one_clear_line(cli_home: tuple[Path, str]) -> None:
    home, url = cli_home
    _import(home, url)
    unknown = "00000000-0000-4000-8000-000000000000"
    for args in (["show", unknown], ["export", unknown], ["show", unknown, "--json"]):
        proc = rollouts(home, url, *args)
        assert_clean_failure(proc, f"thread not found: {unknown}")
        assert proc.stdout == ""
    assert_clean_failure(rollouts(home, url, "list", "--cursor", "garbage"), "invalid cursor")
    assert_clean_failure(rollouts(home, url, "list", "--sort", "size"), "unknown sortKey")
    gone = rollouts(home, url, "import", str(home / "nope"))
    assert_clean_failure(gone, "no such file or folder", str(home / "nope"))
    usage = rollouts(home, url, "show")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_list_more_line_is_not_wrapped(cli_home: tuple[Path, str]) -> None:
    """The `more: --cursor ...` hint survives a narrow terminal whole, to be copied."""
    home, url = cli_home
    _import(home, url)
    page = json.loads(rollouts(home, url, "list", "--json", "--limit", "1").stdout)
    cursor = page["nextCursor"]
    assert cursor and len(cursor) > 40
    proc = rollouts(home, url, "list", "--limit", "1")
    assert proc.returncode == 0, proc.stderr
    assert f"more: --cursor {cursor}" in proc.stdout.splitlines()
    nxt = rollouts(home, url, "list", "--limit", "1", "--cursor", cursor)
    assert nxt.returncode == 0, nxt.stderr
