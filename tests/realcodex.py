"""A real Codex for tests: find or install the binary, run the scripted model, drive `codex app-server`.

Generic on purpose (any test may use it), and self-contained:

- `find_codex(version)` looks for the native Linux binary of `@openai/codex@VERSION` in
  `$ROLLOUTS_CODEX_BIN`, in `$CODEX_VERSIONS_DIR/VERSION` (default /tmp/codexpeer/versions,
  where ../shared/tools/realcodex/make_corpus.sh installs) and in our cache
  (`$ROLLOUTS_TEST_CACHE`, default ~/.cache/rollouts-tests, under codex/VERSION).
- `ensure_codex(version)` installs it into the cache with npm when it is missing and the
  registry answers; otherwise it raises `CodexUnavailable` with the reason (tests skip on it).
- `mock_model()` runs ../shared/tools/realcodex/mock_responses.py (the Responses API stand-in)
  on a free local port; `write_config(home, port)` points a CODEX_HOME at it.
- `AppServer(binary, home, log)` is a JSON-RPC client of a real `codex app-server` subprocess;
  `stable_lists()` reads its whole thread/list once its start-up indexing has settled.
- `require_codex()` and `write_mock_config(home)` are for tests that only ask Codex to read a
  CODEX_HOME (no model is called).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

SHARED_TOOLS = Path(__file__).resolve().parents[2] / "shared" / "tools" / "realcodex"
MOCK_SERVER = SHARED_TOOLS / "mock_responses.py"
PEER_VERSIONS = Path(os.environ.get("CODEX_VERSIONS_DIR", "/tmp/codexpeer/versions"))
CACHE = Path(os.environ.get("ROLLOUTS_TEST_CACHE", Path.home() / ".cache" / "rollouts-tests"))
INSTALL_TIMEOUT = 600.0
VERSION = "0.169.0"  # the release whose app-server schema we serve


class CodexUnavailable(Exception):
    """No runnable Codex binary, and none could be installed (the message says why)."""


def _native_binary(install_dir: Path) -> Path | None:
    """The x86_64 Linux binary inside an npm install of @openai/codex (as make_corpus.sh finds it)."""
    scope = install_dir / "node_modules" / "@openai"
    if not scope.is_dir():
        return None
    for path in sorted(scope.rglob("*")):
        if path.name not in ("codex", "codex-x86_64-unknown-linux-musl"):
            continue
        if "x86_64-unknown-linux-musl" not in str(path) or not path.is_file():
            continue
        with path.open("rb") as fh:
            if fh.read(4) == b"\x7fELF":
                return path
    return None


def _version_of(binary: Path) -> str:
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except OSError:
        return ""
    return out.strip().rsplit(" ", 1)[-1]


def find_codex(version: str) -> Path | None:
    """An installed Codex binary of exactly `version`, or None."""
    candidates: list[Path | None] = []
    if os.environ.get("ROLLOUTS_CODEX_BIN"):
        candidates.append(Path(os.environ["ROLLOUTS_CODEX_BIN"]))
    candidates.append(_native_binary(PEER_VERSIONS / version))
    candidates.append(_native_binary(CACHE / "codex" / version))
    for binary in candidates:
        if binary is not None and binary.is_file() and _version_of(binary) == version:
            return binary
    return None


def ensure_codex(version: str) -> Path:
    """Find the binary, or install `@openai/codex@VERSION` into the cache with npm."""
    found = find_codex(version)
    if found is not None:
        return found
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        raise CodexUnavailable(f"no Codex {version} binary for {sys.platform}/{os.uname().machine}")
    npm = shutil.which("npm")
    if npm is None:
        raise CodexUnavailable(f"Codex {version} is not installed and npm is not on PATH")
    target = CACHE / "codex" / version
    target.mkdir(parents=True, exist_ok=True)
    if not (target / "package.json").exists():  # so npm does not walk up to a parent project
        (target / "package.json").write_text('{"private": true}\n')
    package = f"@openai/codex@{version}"
    try:
        proc = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", package],
            cwd=target,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CodexUnavailable(f"npm install {package} took over {INSTALL_TIMEOUT:g} s") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise CodexUnavailable(f"npm install {package} failed (registry unreachable?): {last}")
    found = find_codex(version)
    if found is None:
        raise CodexUnavailable(f"{package} installed in {target} but has no linux x86_64 binary")
    return found


def require_codex(version: str = VERSION) -> Path:
    """The real Codex binary, or skip the calling test with the reason."""
    try:
        return ensure_codex(version)
    except CodexUnavailable as exc:
        pytest.skip(f"real Codex {version} is not available: {exc}")


# -- the scripted model ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def mock_model() -> Iterator[int]:
    """Run the scripted Responses API stand-in; yields its port."""
    if not MOCK_SERVER.is_file():
        raise CodexUnavailable(f"the scripted model is missing: {MOCK_SERVER}")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(MOCK_SERVER), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the scripted model did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def write_config(home: Path, port: int, *, model: str = "gpt-5.5") -> None:
    """A CODEX_HOME/config.toml whose model provider is the scripted model at `port`."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'model = "{model}"\n'
        'model_provider = "mock"\n'
        'approval_policy = "never"\n'
        'sandbox_mode = "danger-full-access"\n\n'
        "[model_providers.mock]\n"
        'name = "Mock"\n'
        f'base_url = "http://127.0.0.1:{port}/v1"\n'
        'env_key = "MOCK_API_KEY"\n'
        'wire_api = "responses"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
    )


def write_mock_config(home: Path) -> None:
    """A config naming the "mock" provider the corpora were recorded with, for a Codex that
    only reads the CODEX_HOME: the provider points at a port where nothing listens."""
    write_config(home, free_port())


def codex_env(home: Path) -> dict[str, str]:
    env = dict(os.environ, CODEX_HOME=str(home), MOCK_API_KEY="dummy-key", NO_COLOR="1")
    env["RUST_LOG"] = "error"
    env.pop("OPENAI_API_KEY", None)
    return env


# -- a real app-server ------------------------------------------------------------------------


class AppServerError(Exception):
    def __init__(self, method: str, error: dict[str, Any]) -> None:
        super().__init__(f"{method}: {error.get('message')} ({error.get('code')})")
        self.error = error


class AppServer:
    """`codex app-server` over stdio: requests, and the notifications that arrive meanwhile.

    A reader thread takes every message off stdout (so a wait can time out),
    accepts server requests (approvals) and queues the rest. Use as a context
    manager; the server's stderr goes to `log`.
    """

    def __init__(self, binary: Path, home: Path, log: Path, *, cwd: Path | None = None) -> None:
        self.binary = binary
        self.log: IO[str] = log.open("w")
        self.proc = subprocess.Popen(
            [str(binary), "app-server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=codex_env(home),
            cwd=cwd,
            bufsize=1,
        )
        self.next_id = 0
        self.notifications: list[dict[str, Any]] = []
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.write_lock = threading.Lock()
        self.reader = threading.Thread(target=self._read_all, daemon=True)
        self.reader.start()
        self.call("initialize", {"clientInfo": {"name": "rollouts-tests", "version": "0.1.0"}})
        self._send({"method": "initialized"})

    def __enter__(self) -> AppServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self.write_lock:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.close()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()

    def _send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        with self.write_lock:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()

    def _read_all(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg: dict[str, Any] = json.loads(line)
            if "method" in msg and "id" in msg:  # a server request: approve
                self._send({"id": msg["id"], "result": {"decision": "accept"}})
            else:
                self.inbox.put(msg)
        self.inbox.put(None)  # the server is gone

    def _next(self, deadline: float, what: str) -> dict[str, Any]:
        try:
            msg = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(
                f"codex app-server: no {what} in time; see {self.log.name}"
            ) from None
        if msg is None:
            self.inbox.put(None)
            raise RuntimeError(f"codex app-server exited ({self.proc.poll()}); see {self.log.name}")
        return msg

    def call(self, method: str, params: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        """The result of one request; AppServerError for an error answer."""
        self.next_id += 1
        rid = self.next_id
        self._send({"id": rid, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while True:
            msg = self._next(deadline, f"answer to {method}")
            if "method" in msg:
                self.notifications.append(msg)
            elif msg.get("id") == rid:
                if "error" in msg:
                    raise AppServerError(method, msg["error"])
                result: dict[str, Any] = msg["result"]
                return result

    def wait_for(self, method: str, thread_id: str, timeout: float = 120) -> dict[str, Any]:
        """The next notification `method` about `thread_id` (each is returned once)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, n in enumerate(self.notifications):
                if n["method"] == method and n.get("params", {}).get("threadId") == thread_id:
                    return self.notifications.pop(i)
            msg = self._next(deadline, f"{method} for {thread_id}")
            if "method" in msg:
                self.notifications.append(msg)

    def turn(self, thread_id: str, text: str) -> dict[str, Any]:
        """Run one turn to completion; the `turn/completed` notification's turn."""
        started = self.call(
            "turn/start", {"threadId": thread_id, "input": [{"type": "text", "text": text}]}
        )
        done = self.wait_for("turn/completed", thread_id)
        turn: dict[str, Any] = done["params"]["turn"]
        assert turn["id"] == started["turn"]["id"]
        return turn

    def source_kinds(self) -> list[str]:
        """Every ThreadSourceKind this release knows (from its own JSON schema)."""
        with tempfile.TemporaryDirectory() as td:
            subprocess.run(
                [str(self.binary), "app-server", "generate-json-schema", "--out", td],
                capture_output=True,
                check=False,
                timeout=60,
            )
            try:
                data = json.loads((Path(td) / "ClientRequest.json").read_text())
            except (OSError, ValueError):
                return []
        return list(data.get("definitions", {}).get("ThreadSourceKind", {}).get("enum", []))

    def list_ids(self, *, archived: bool, source_kinds: list[str]) -> set[str]:
        """Every thread id of thread/list, following cursors."""
        ids: set[str] = set()
        cursor = None
        for _ in range(1000):
            params: dict[str, Any] = {"limit": 50, "archived": archived}
            if source_kinds:
                params["sourceKinds"] = source_kinds
            if cursor:
                params["cursor"] = cursor
            res = self.call("thread/list", params)
            ids.update(t["id"] for t in res.get("data", []))
            cursor = res.get("nextCursor")
            if not cursor:
                break
        return ids

    def stable_lists(self, source_kinds: list[str], tries: int = 60) -> dict[bool, set[str]]:
        """thread/list with archived false and true, once the server's start-up indexing settled."""
        prev: dict[bool, set[str]] | None = None
        for _ in range(tries):
            now = {a: self.list_ids(archived=a, source_kinds=source_kinds) for a in (False, True)}
            if now == prev:
                return now
            prev = now
            time.sleep(1)
        raise AssertionError("codex app-server's thread/list did not settle")
