"""Find (or install) a real `codex` binary and talk to its `codex app-server` over stdio.

Shared by tests that check our behaviour against the real Codex. The binary is
the native Linux one inside the npm package `@openai/codex@<version>`:

1. `ROLLOUTS_CODEX_BIN`, when set, is used as is;
2. else an install already on this machine: the test cache
   (`ROLLOUTS_CODEX_CACHE`, default `~/.cache/rollouts-tests/codex`) or the
   folder the shared tools install into (`/tmp/codexpeer/versions`);
3. else `npm install @openai/codex@<version>` into the test cache, when npm is
   there and the registry answers.
Otherwise `require_codex()` skips the test and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

VERSION = "0.169.0"
CACHE = Path(os.environ.get("ROLLOUTS_CODEX_CACHE", Path.home() / ".cache/rollouts-tests/codex"))
PEER_DIRS = [Path("/tmp/codexpeer/versions")]
NPM_TIMEOUT_S = 600
MOCK_CONFIG = (
    'model_provider = "mock"\n\n[model_providers.mock]\nname = "Mock"\n'
    'base_url = "http://127.0.0.1:9/v1"\nenv_key = "MOCK_API_KEY"\nwire_api = "responses"\n'
)


def find_bin(install_dir: Path) -> Path | None:
    """The native linux x86_64 binary inside an npm install folder (as make_corpus.sh finds it)."""
    root = install_dir / "node_modules" / "@openai"
    if not root.is_dir():
        return None
    for p in sorted(root.rglob("*")):
        if p.name not in ("codex", "codex-x86_64-unknown-linux-musl") or not p.is_file():
            continue
        if "x86_64-unknown-linux-musl" not in str(p):
            continue
        with open(p, "rb") as fh:
            if fh.read(4) == b"\x7fELF":
                return p
    return None


def _version_of(binary: Path) -> str:
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return ""
    return out.stdout.strip()


def _npm_install(version: str, dest: Path) -> str | None:
    """Install @openai/codex@version into dest; None on success, else why not."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed"
    dest.mkdir(parents=True, exist_ok=True)
    pkg = dest / "package.json"
    if not pkg.exists():  # so npm does not walk up into a parent project
        pkg.write_text('{"private": true}\n')
    try:
        proc = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", f"@openai/codex@{version}"],
            cwd=dest,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"npm install @openai/codex@{version} took over {NPM_TIMEOUT_S} s"
    (dest / "install.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"npm install @openai/codex@{version} failed (registry unreachable?): {tail}"
    return None


def codex_binary(version: str = VERSION) -> tuple[Path | None, str]:
    """(binary, "") or (None, the reason there is none)."""
    env_bin = os.environ.get("ROLLOUTS_CODEX_BIN")
    if env_bin:
        p = Path(env_bin)
        return (p, "") if p.is_file() else (None, f"ROLLOUTS_CODEX_BIN={env_bin} does not exist")
    for d in [CACHE / version, *(d / version for d in PEER_DIRS)]:
        found = find_bin(d)
        if found is not None and version in _version_of(found):
            return found, ""
    why = _npm_install(version, CACHE / version)
    if why is not None:
        return None, why
    found = find_bin(CACHE / version)
    if found is None:
        return None, f"@openai/codex@{version} has no linux x86_64 binary"
    return found, ""


def require_codex(version: str = VERSION) -> Path:
    """The real codex binary, or skip the test with the reason."""
    binary, why = codex_binary(version)
    if binary is None:
        pytest.skip(f"real codex {version} not available: {why}")
    return binary


def write_mock_config(home: Path) -> None:
    """A config.toml naming the "mock" provider the corpora were recorded with (no model is called)."""
    (home / "config.toml").write_text(MOCK_CONFIG)


class AppServer:
    """A `codex app-server` on CODEX_HOME=home, spoken to over stdio (JSON-RPC lines)."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.home = home
        env = dict(os.environ, CODEX_HOME=str(home), MOCK_API_KEY="dummy-key", RUST_LOG="error")
        self.proc = subprocess.Popen(
            [str(binary), "app-server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            bufsize=1,
            cwd=home,
        )
        self.next_id = 0
        self.rpc(
            "initialize",
            {"clientInfo": {"name": "rollouts_tests", "title": "rollouts tests", "version": "0"}},
        )
        self._send({"method": "initialized"})

    def _send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The result of one request; AssertionError with the error when it fails."""
        self.next_id += 1
        req_id = self.next_id
        self._send({"id": req_id, "method": method, "params": params})
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"codex app-server exited (code {self.proc.poll()})")
            msg = json.loads(line)
            if msg.get("id") == req_id and ("result" in msg or "error" in msg):
                assert "error" not in msg, (method, params, msg["error"])
                return dict(msg["result"])

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
        """Every thread id of thread/list (following cursors)."""
        ids: set[str] = set()
        cursor = None
        for _ in range(1000):
            params: dict[str, Any] = {"limit": 50, "archived": archived}
            if source_kinds:
                params["sourceKinds"] = source_kinds
            if cursor:
                params["cursor"] = cursor
            res = self.rpc("thread/list", params)
            ids.update(t["id"] for t in res.get("data", []))
            cursor = res.get("nextCursor")
            if not cursor:
                break
        return ids

    def stable_lists(self, source_kinds: list[str], tries: int = 60) -> dict[bool, set[str]]:
        """thread/list archived false/true once the server has finished indexing at start."""
        prev: dict[bool, set[str]] | None = None
        for _ in range(tries):
            now = {a: self.list_ids(archived=a, source_kinds=source_kinds) for a in (False, True)}
            if now == prev:
                return now
            prev = now
            time.sleep(1)
        raise AssertionError("codex app-server's thread/list did not settle")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> AppServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
