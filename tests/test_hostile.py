"""Hostile input through ingest and the CLI: every bad file or id is a clear
skip or error, the good lines around it are indexed, nothing crashes.

The victim is a real Codex 0.100.0 rollout (one turn: a command and an
answer), rewritten with a fresh thread id for each case.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from store import InvalidInput, open_store
from tests.cli_run import assert_clean_failure, cli_argv, cli_env, rollouts
from tests.conftest import CORPUS
from tests.helpers import EVERY_THREAD

SOURCE = next((CORPUS / "codex-0.100.0" / "sessions").rglob("*01a1febf-5767-*.jsonl"))
SOURCE_ID = b"01a1febf-5767-7e62-a23a-b4c7f9d6acf5"
TRUNCATED = "truncated last line (no newline yet)"
NO_META = "no session_meta line"


def _lines() -> list[bytes]:
    return SOURCE.read_bytes().splitlines(keepends=True)


def _sessions(home: Path) -> Path:
    folder = home / "sessions" / "2026" / "01" / "02"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write(home: Path, data: bytes, tid: str | None = None, name: str | None = None) -> Path:
    """A rollout file in `home` holding `data`, with the thread id `tid` (new if None)."""
    tid = tid or str(uuid.uuid4())
    path = _sessions(home) / (name or f"rollout-2026-01-02T03-04-05-{tid}.jsonl")
    path.write_bytes(data.replace(SOURCE_ID, tid.encode()))
    return path


def _turns_of(tmp_path: Path, data: bytes) -> list[dict[str, Any]]:
    """Turns the store makes of `data` alone, in a fresh database."""
    ref = tmp_path / f"ref-{uuid.uuid4().hex[:8]}"
    tid = str(uuid.UUID(SOURCE_ID.decode()))
    _write(ref, data, tid)
    with open_store(f"sqlite:///{ref / 'ref.sqlite'}", auto_upgrade=True, codex_home=ref) as st:
        summary = st.ingest([ref])
        assert summary.errors == 0, summary.error_details
        turns = st.get_thread(tid, include_turns=True)["turns"]
    return _renamed(turns, tid)


def _renamed(turns: list[dict[str, Any]], tid: str) -> list[dict[str, Any]]:
    """Turns with the thread id replaced by a placeholder, to compare threads."""
    return json.loads(json.dumps(turns).replace(tid, "THREAD"))  # type: ignore[no-any-return]


def _skips(st: Any, tid: str) -> list[tuple[int, int, int, str]]:
    return [(k["line"], k["byteOffset"], k["length"], k["reason"]) for k in st.skipped_lines(tid)]


def test_truncated_last_line_waits_for_its_newline(db_url: str, tmp_path: Path) -> None:
    lines = _lines()
    done = b"".join(lines[:-1])
    half = lines[-1][:40]
    home = tmp_path / "home"
    path = _write(home, done + half)
    tid = path.name[-42:-6]
    with open_store(db_url, auto_upgrade=True, codex_home=home) as st:
        summary = st.ingest([home])
        assert (summary.errors, summary.skipped_lines, summary.threads) == (0, 1, 1)
        assert summary.bytes == len(done)
        assert _skips(st, tid) == [(len(lines), len(done), 40, TRUNCATED)]
        got = _renamed(st.get_thread(tid, include_turns=True)["turns"], tid)
        assert got == _turns_of(tmp_path, done)
        # Codex finishes the line: only its bytes are read, the skip goes away.
        with path.open("ab") as fh:
            fh.write(lines[-1][40:])
        again = st.ingest([home])
        assert (again.errors, again.skipped_lines, again.bytes) == (0, 0, len(lines[-1]))
        assert _skips(st, tid) == []
        got = _renamed(st.get_thread(tid, include_turns=True)["turns"], tid)
        assert got == _turns_of(tmp_path, b"".join(lines))


def test_bad_lines_in_the_middle_are_skipped_and_the_rest_indexed(
    db_url: str, tmp_path: Path
) -> None:
    lines = _lines()
    bad_utf8 = lines[5].replace(b"cmd: please", b"cmd: \xff\xfe please")
    cut_json = b'{"timestamp":"2026-11-21T15:35:15.100Z","type":\n'
    not_json = b"not json at all\n"
    hostile = [*lines[:5], bad_utf8, lines[6], cut_json, lines[8], not_json, *lines[9:]]
    home = tmp_path / "home"
    path = _write(home, b"".join(hostile))
    tid = path.name[-42:-6]

    bad_byte = bad_utf8.index(b"\xff")

    def at(i: int) -> int:
        return sum(len(x) for x in hostile[:i])

    with open_store(db_url, auto_upgrade=True, codex_home=home) as st:
        summary = st.ingest([home])
        assert (summary.errors, summary.skipped_lines, summary.threads) == (0, 3, 1)
        assert _skips(st, tid) == [
            (6, at(5), len(bad_utf8), f"invalid UTF-8 at byte {bad_byte}"),
            (8, at(7), len(cut_json), "invalid JSON (unexpected end of data)"),
            (10, at(9), len(not_json), "invalid JSON (invalid literal, expected 'null')"),
        ]
        got = _renamed(st.get_thread(tid, include_turns=True)["turns"], tid)
    # The good lines give exactly what they give without the bad ones.
    good = [*lines[:5], lines[6], lines[8], *lines[9:]]
    assert got == _turns_of(tmp_path, b"".join(good))
    assert sum(len(t["items"]) for t in got) == 3


def test_binary_and_empty_files_are_errors_not_threads(db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    good = _write(home, b"".join(_lines()))
    rng = random.Random(7)
    binary = _write(home, bytes(rng.getrandbits(8) for _ in range(20_000)))
    empty = _write(home, b"")
    with open_store(db_url, auto_upgrade=True, codex_home=home) as st:
        summary = st.ingest([home])
        assert summary.files == 3
        assert summary.threads == 1
        errors = {e["path"]: e["error"] for e in summary.error_details}
        assert errors[str(empty)] == "empty file (no session_meta yet)"
        assert errors[str(binary)].startswith(NO_META), errors
        assert len(errors) == 2
        assert [t["id"] for t in st.list_threads(limit=10, **EVERY_THREAD)["data"]] == [
            good.name[-42:-6]
        ]
        # The empty file is a session Codex has just created: once it has
        # content, the next import indexes it.
        tid = empty.name[-42:-6]
        empty.write_bytes(b"".join(_lines()).replace(SOURCE_ID, tid.encode()))
        again = st.ingest([home])
        assert again.threads == 1
        assert st.get_thread(tid, include_turns=True)["turns"]


def test_thread_id_that_is_not_a_uuid(db_url: str, tmp_path: Path) -> None:
    lines = _lines()
    home = tmp_path / "home"
    good = _write(home, b"".join(lines))
    bad_paths = []
    for n, fake in enumerate(("../../etc/passwd", "not-a-uuid", "0" * 5000)):
        data = b"".join(lines).replace(SOURCE_ID, fake.encode())
        path = _sessions(home) / f"rollout-2026-01-02T03-04-0{n}-x.jsonl"
        path.write_bytes(data)
        bad_paths.append(str(path))
    with open_store(db_url, auto_upgrade=True, codex_home=home) as st:
        summary = st.ingest([home])
        assert summary.threads == 1
        assert sorted(e["path"] for e in summary.error_details) == sorted(bad_paths)
        for e in summary.error_details:
            assert e["error"] == (
                "no thread id: the session_meta id is missing or not a UUID, "
                "and the file name carries none"
            )
        assert [t["id"] for t in st.list_threads(limit=10, **EVERY_THREAD)["data"]] == [
            good.name[-42:-6]
        ]


def test_links_and_paths_outside_the_root_are_refused(db_url: str, tmp_path: Path) -> None:
    lines = _lines()
    home = tmp_path / "home"
    inside = _write(home, b"".join(lines))
    outside = _write(tmp_path / "elsewhere", b"".join(lines))
    folder_out = outside.parent
    sessions = home / "sessions"
    (sessions / "link-to-file.jsonl").symlink_to(outside)
    (sessions / "rollout-2026-01-02T03-04-09-passwd.jsonl").symlink_to("/etc/passwd")
    (sessions / "linked-folder").symlink_to(folder_out, target_is_directory=True)
    with open_store(db_url, auto_upgrade=True, codex_home=home) as st:
        summary = st.ingest([home])
        assert summary.threads == 1
        assert sorted(e["path"] for e in summary.error_details) == sorted(
            str(sessions / n)
            for n in (
                "link-to-file.jsonl",
                "rollout-2026-01-02T03-04-09-passwd.jsonl",
                "linked-folder",
            )
        )
        assert {e["error"] for e in summary.error_details} == {
            "refused: a link that leads outside the root"
        }
        assert [t["id"] for t in st.list_threads(limit=10, **EVERY_THREAD)["data"]] == [
            inside.name[-42:-6]
        ]
        # A CODEX_HOME whose sessions folder is itself a link out of it is
        # refused the same way, instead of indexing files export then refuses.
        home2 = tmp_path / "home2"
        home2.mkdir()
        (home2 / "sessions").symlink_to(folder_out, target_is_directory=True)
        summary2 = st.ingest([home2])
        assert summary2.threads == 0
        assert summary2.error_details == [
            {
                "path": str(home2 / "sessions"),
                "error": "refused: a link that leads outside the root",
            }
        ]
        with pytest.raises(InvalidInput, match="no such file or folder"):
            st.ingest([tmp_path / "missing"])


HUGE = 50 << 20


def _huge_line() -> bytes:
    """The head of a real function_call_output line whose output is 50 MB."""
    return (
        b'{"timestamp":"2026-11-21T15:35:15.351Z","type":"response_item","payload":'
        b'{"type":"function_call_output","call_id":"call_9","output":"'
    )


def _peak_rss_kb(argv: list[str], env: dict[str, str], logs: Path) -> tuple[int, str, str, int]:
    """Run `argv` to completion; its exit code, output and own peak RSS (KiB)."""
    out, err = logs.with_suffix(".out"), logs.with_suffix(".err")
    with out.open("w") as fo, err.open("w") as fe:
        proc = subprocess.Popen(argv, env=env, stdout=fo, stderr=fe)
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out.read_text(), err.read_text(), usage.ru_maxrss


def test_huge_line_is_skipped_with_bounded_memory(db_url: str, tmp_path: Path) -> None:
    lines = _lines()
    home = tmp_path / "home"
    tid = str(uuid.uuid4())
    # Baseline: the same file without the huge line, through the same command.
    base_home = tmp_path / "base"
    _write(base_home, b"".join(lines), tid)
    base_db = f"sqlite:///{tmp_path / 'base.sqlite'}"
    assert rollouts(base_home, base_db, "db", "upgrade").returncode == 0
    rc, _, _, base_rss = _peak_rss_kb(
        cli_argv("import", "--json"), cli_env(base_home, base_db), tmp_path / "base"
    )
    assert rc == 0
    # The victim: a 50 MB line after line 12, written in 1 MiB pieces.
    path = _write(home, b"", tid)
    head = _huge_line()
    with path.open("wb") as fh:
        fh.write(b"".join(lines[:12]).replace(SOURCE_ID, tid.encode()))
        fh.write(head)
        piece = b"x" * (1 << 20)
        for _ in range(HUGE >> 20):
            fh.write(piece)
        fh.write(b'"}}\n')
        fh.write(b"".join(lines[12:]).replace(SOURCE_ID, tid.encode()))
    huge_len = len(head) + HUGE + 4
    assert rollouts(home, db_url, "db", "upgrade").returncode == 0
    rc, out, err, rss = _peak_rss_kb(
        cli_argv("import", "--json"), cli_env(home, db_url), tmp_path / "huge"
    )
    assert rc == 0, err
    summary = json.loads(out)
    assert (summary["threads"], summary["skipped_lines"], summary["errors"]) == (1, 1, 0)
    assert summary["bytes"] == path.stat().st_size
    # Reading a 50 MB line whole would cost at least 50 MB more than the baseline.
    assert rss - base_rss < 32 * 1024, (rss, base_rss)
    skipped = rollouts(home, db_url, "skipped", "--json")
    assert skipped.returncode == 0, skipped.stderr
    assert json.loads(skipped.stdout)["data"] == [
        {
            "path": str(path),
            "threadId": tid,
            "line": 13,
            "byteOffset": len(b"".join(lines[:12])),
            "length": huge_len,
            "reason": f"line too long ({huge_len} bytes)",
        }
    ]
    with open_store(db_url, codex_home=home) as st:
        got = _renamed(st.get_thread(tid, include_turns=True)["turns"], tid)
        # Export still gives every byte back, the huge line included.
        assert sum(len(c) for c in st.export(tid)) == path.stat().st_size
    with open_store(base_db, codex_home=base_home) as st:
        want = _renamed(st.get_thread(tid, include_turns=True)["turns"], tid)
    assert got == want


HOSTILE_IDS = ["../../etc/passwd", "", "a" * 10_240, "01a1febf-5767-7e62-a23a-b4c7f9d6acf5/.."]


@pytest.mark.parametrize("command", ["show", "export"])
def test_hostile_ids_on_the_command_line(db_url: str, tmp_path: Path, command: str) -> None:
    home = tmp_path / "home"
    _write(home, b"".join(_lines()))
    assert rollouts(home, db_url, "db", "upgrade").returncode == 0
    assert rollouts(home, db_url, "import", "--json").returncode == 0
    out = tmp_path / "out.jsonl"
    for bad in HOSTILE_IDS:
        args = [command, bad] + (["-o", str(out)] if command == "export" else [])
        proc = rollouts(home, db_url, *args)
        assert_clean_failure(proc, "invalid thread id", "is not a")
        assert proc.stdout == ""
        # One short line, even for a 10 KB id.
        assert proc.stderr.count("\n") == 1 and len(proc.stderr) < 300, proc.stderr
        assert not out.exists() and not out.with_name(out.name + ".part").exists()
    unknown = str(uuid.uuid4())
    assert_clean_failure(rollouts(home, db_url, command, unknown), "thread not found", unknown)


def test_hostile_ids_in_the_library(db_url: str, tmp_path: Path) -> None:
    """What argv cannot carry (a NUL byte) the library still refuses cleanly."""
    with open_store(db_url, auto_upgrade=True, codex_home=tmp_path) as st:
        for bad in [*HOSTILE_IDS, "\x00", "01a1febf-5767-7e62-a23a-b4c7f9d6acf5\x00"]:
            for call in (
                lambda b: st.get_thread(b),
                lambda b: list(st.export(b)),
                lambda b: st.skipped_lines(b),
            ):
                with pytest.raises(InvalidInput, match="invalid thread id") as info:
                    call(bad)
                assert len(str(info.value)) < 200


def test_cli_import_of_a_hostile_home(db_url: str, tmp_path: Path) -> None:
    """All of the above at once through `rollouts import --json`: exit 0, errors listed."""
    lines = _lines()
    home = tmp_path / "home"
    good = _write(home, b"".join(lines))
    truncated = _write(home, b"".join(lines[:-1]) + lines[-1][:40])
    binary = _write(home, bytes(random.Random(3).getrandbits(8) for _ in range(5000)))
    empty = _write(home, b"")
    not_uuid = _sessions(home) / "rollout-2026-01-02T03-04-05-x.jsonl"
    not_uuid.write_bytes(b"".join(lines).replace(SOURCE_ID, b"not-a-uuid"))
    (home / "sessions" / "escape.jsonl").symlink_to("/etc/passwd")
    assert rollouts(home, db_url, "db", "upgrade").returncode == 0
    proc = rollouts(home, db_url, "import", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["files"] == 5
    assert summary["threads"] == 2
    assert summary["skipped_lines"] == 1
    assert summary["errors"] == 4
    assert {e["path"] for e in summary["error_details"]} == {
        str(binary),
        str(empty),
        str(not_uuid),
        str(home / "sessions" / "escape.jsonl"),
    }
    listed = rollouts(home, db_url, "list", "--json")
    assert {t["id"] for t in json.loads(listed.stdout)["data"]} == {
        good.name[-42:-6],
        truncated.name[-42:-6],
    }
    # Nothing of the user's files was changed.
    assert good.read_bytes() == b"".join(lines).replace(SOURCE_ID, good.name[-42:-6].encode())
    missing = rollouts(home, db_url, "import", str(tmp_path / "nope"))
    assert_clean_failure(missing, "no such file or folder")
