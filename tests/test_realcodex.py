"""End to end with a real Codex 0.169.0: live indexing, and forks that Codex resumes and continues.

A real `codex app-server` (driven against the scripted model of
../shared/tools/realcodex) writes sessions into a fresh CODEX_HOME while a
real `rollouts watch` subprocess follows it. Each turn Codex completes must
show in our store shortly after, equal to Codex's own `thread/read`. A fork
made by `rollouts fork` must then be opened by Codex (`thread/resume`,
`thread/read`: the source's turns up to the fork point), continued for a turn,
and that turn must show in our store too. At the end the watched database
equals a fresh import of the folder.

Skipped, with the reason, when no Codex 0.169.0 binary is found and npm cannot
install one (tests/realcodex.py).
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from store import NotFound, SqlThreadStore, open_store
from tests.cli_run import cli_argv, cli_env, rollouts
from tests.helpers import EVERY_THREAD
from tests.realcodex import AppServer, CodexUnavailable, ensure_codex, mock_model, write_config

VERSION = "0.169.0"
# How long a completed turn may take to show in the store. It takes well under a
# second on an idle machine (the test prints what it measured); the bound is
# loose because the test machine is shared.
VISIBLE_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def codex_bin() -> Path:
    try:
        return ensure_codex(VERSION)
    except CodexUnavailable as exc:
        pytest.skip(f"real Codex {VERSION} unavailable: {exc}")


@pytest.fixture(scope="module")
def model_port(codex_bin: Path) -> Iterator[int]:
    try:
        with mock_model() as port:
            yield port
    except CodexUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def watched(db_url: str, tmp_path: Path, model_port: int) -> Iterator[tuple[Path, str]]:
    """A fresh CODEX_HOME pointed at the scripted model, followed by `rollouts watch`."""
    home = tmp_path / "home"
    write_config(home, model_port)
    assert rollouts(home, db_url, "db", "upgrade").returncode == 0
    proc = subprocess.Popen(
        cli_argv("watch", str(home), "--json"),
        env=cli_env(home, db_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    startup = json.loads(proc.stdout.readline())  # the watch is in place
    assert startup["startup"] is True and startup["errors"] == 0
    try:
        yield home, db_url
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "error:" not in err, err
    rounds = [json.loads(line) for line in out.splitlines()]
    assert all(r["errors"] == 0 for r in rounds), rounds


def _wait(check: Callable[[], bool], what: str) -> float:
    """Seconds until `check()` holds; fails after VISIBLE_TIMEOUT."""
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > VISIBLE_TIMEOUT:
            pytest.fail(f"not in the store after {VISIBLE_TIMEOUT} s: {what}")
        time.sleep(0.01)
    return time.perf_counter() - start


def _turns(st: SqlThreadStore, tid: str) -> list[dict[str, Any]]:
    try:
        return st.get_thread(tid, include_turns=True)["turns"]
    except NotFound:
        return []


def _codex_turns(srv: AppServer, tid: str) -> list[dict[str, Any]]:
    read = srv.call("thread/read", {"threadId": tid, "includeTurns": True})
    turns: list[dict[str, Any]] = read["thread"]["turns"]
    return turns


def _shows(st: SqlThreadStore, srv: AppServer, tid: str, turn: dict[str, Any]) -> float:
    """Wait until the store shows `turn` completed as the thread's last; equal to Codex's read."""

    def ok() -> bool:
        turns = _turns(st, tid)
        return bool(turns) and turns[-1]["id"] == turn["id"] and turns[-1]["status"] == "completed"

    latency = _wait(ok, f"turn {turn['id']} of {tid}")
    assert _turns(st, tid) == _codex_turns(srv, tid)
    return latency


def test_real_codex_is_followed_and_continues_our_forks(
    watched: tuple[Path, str], codex_bin: Path, tmp_path: Path
) -> None:
    home, url = watched
    project = tmp_path / "project"
    project.mkdir()
    latencies: list[float] = []
    with (
        open_store(url, codex_home=home) as st,
        AppServer(codex_bin, home, tmp_path / "codex.log", cwd=project) as srv,
    ):
        started = srv.call("thread/start", {"cwd": str(project)})["thread"]
        tid = started["id"]
        turns = []
        for text in ("hello: first turn", "cmd: list the files", "patch: write notes"):
            turns.append(srv.turn(tid, text))
            latencies.append(_shows(st, srv, tid, turns[-1]))
        source = _codex_turns(srv, tid)
        assert [t["id"] for t in source] == [t["id"] for t in turns]
        src_path = Path(started["path"])
        src_bytes = hashlib.sha256(src_path.read_bytes()).hexdigest()

        # Our fork after the second turn: Codex resumes it, reads it, continues it.
        proc = rollouts(home, url, "fork", tid, "--at-turn", turns[1]["id"], "--json")
        assert proc.returncode == 0, proc.stderr
        fork = json.loads(proc.stdout)["thread"]
        fid = fork["id"]
        assert fork["forkedFromId"] == tid and Path(fork["path"]).is_relative_to(home)
        resumed = srv.call("thread/resume", {"threadId": fid})["thread"]
        assert resumed["id"] == fid and resumed["forkedFromId"] == tid
        assert [t["id"] for t in resumed["turns"]] == [t["id"] for t in source[:2]]
        assert _codex_turns(srv, fid) == source[:2]
        continued = srv.turn(fid, "hello: continuing our fork")
        assert continued["status"] == "completed"
        latencies.append(_shows(st, srv, fid, continued))
        assert [t["id"] for t in _turns(st, fid)] == [
            *(t["id"] for t in source[:2]),
            continued["id"],
        ]

        # A fork of the whole thread is read by Codex as the whole source.
        proc = rollouts(home, url, "fork", tid, "--json")
        assert proc.returncode == 0, proc.stderr
        whole = json.loads(proc.stdout)["thread"]["id"]
        srv.call("thread/resume", {"threadId": whole})
        assert _codex_turns(srv, whole) == source

        # The source file is as Codex left it, and the store knows the lineage.
        assert hashlib.sha256(src_path.read_bytes()).hexdigest() == src_bytes
        tree = st.lineage(tid)
        assert [t["id"] for t in tree["descendants"]] == [fid, whole]

    print(f"write -> visible after a completed turn: {[round(x * 1000) for x in latencies]} ms")

    # Nothing was missed: the watched store equals a fresh import of the folder.
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    with open_store(fresh, auto_upgrade=True, codex_home=home) as ref, open_store(url) as st:
        summary = ref.ingest([home])
        assert summary.errors == 0 and summary.threads == 3
        want = ref.list_threads(limit=100, **EVERY_THREAD)["data"]
        got = st.list_threads(limit=100, **EVERY_THREAD)["data"]
        assert [t["id"] for t in got] == [t["id"] for t in want]
        for t in want:
            assert _turns(st, t["id"]) == _turns(ref, t["id"]), t["id"]
