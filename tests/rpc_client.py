"""A JSON-RPC client for `rollouts serve` running as a real subprocess (stdio).

Reader threads drain stdout and stderr into queues so the server never blocks
on a full pipe and a test can wait for a message with a timeout.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 30.0


def serve_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ROLLOUTS_LOG", "LOG_FORMAT")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def _drain(stream: IO[bytes], sink: queue.Queue[bytes | None]) -> None:
    for line in stream:
        sink.put(line)
    sink.put(None)


class StdioServer:
    """`python -m cli.main serve ...` with helpers to talk to it."""

    def __init__(self, args: Iterable[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env or serve_env(),
            cwd=REPO,
        )
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        self.stdin = self.proc.stdin
        self._out: queue.Queue[bytes | None] = queue.Queue()
        self._err: queue.Queue[bytes | None] = queue.Queue()
        self.stdout_lines: list[bytes] = []
        self.stderr_lines: list[bytes] = []
        for stream, sink in ((self.proc.stdout, self._out), (self.proc.stderr, self._err)):
            threading.Thread(target=_drain, args=(stream, sink), daemon=True).start()
        self._next_id = 1000

    # -- sending -----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.stdin.write(data)
        self.stdin.flush()

    def send(self, *messages: dict[str, Any]) -> None:
        self.write(b"".join(json.dumps(m).encode() + b"\n" for m in messages))

    def close_stdin(self) -> None:
        self.stdin.close()

    # -- receiving ---------------------------------------------------------------

    def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        line = self._out.get(timeout=timeout)
        if line is None:
            raise EOFError(f"server closed stdout; stderr: {self.stderr_text()}")
        self.stdout_lines.append(line)
        msg = json.loads(line)
        assert isinstance(msg, dict)
        return msg

    def recv_many(self, n: int, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        return [self.recv(timeout) for _ in range(n)]

    def no_more_output(self, wait: float = 0.5) -> bool:
        try:
            line = self._out.get(timeout=wait)
        except queue.Empty:
            return True
        if line is not None:
            self.stdout_lines.append(line)
        return line is None

    def request(self, method: str, params: Any = None, **extra: Any) -> dict[str, Any]:
        """Send one request and wait for its answer (no other traffic expected)."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, **extra}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        answer = self.recv()
        assert answer.get("id") == self._next_id, answer
        return answer

    def initialize(self, name: str = "test-client", **capabilities: Any) -> dict[str, Any]:
        params: dict[str, Any] = {"clientInfo": {"name": name, "version": "1.2.3"}}
        if capabilities:
            params["capabilities"] = capabilities
        answer = self.request("initialize", params)
        self.send({"method": "initialized"})
        return answer

    def stderr_text(self) -> str:
        while True:
            try:
                line = self._err.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.stderr_lines.append(line)
        return b"".join(self.stderr_lines).decode("utf-8", "replace")

    def wait_stderr(self, needle: str, timeout: float = TIMEOUT) -> str:
        """Block until stderr contains `needle`; returns all stderr so far."""
        import time

        deadline = time.monotonic() + timeout
        while needle not in self.stderr_text():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{needle!r} not in stderr: {self.stderr_text()}")
            try:
                line = self._err.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            if line is None:
                raise EOFError(f"stderr closed without {needle!r}: {self.stderr_text()}")
            self.stderr_lines.append(line)
        return self.stderr_text()

    def wait(self, timeout: float = TIMEOUT) -> int:
        code = self.proc.wait(timeout=timeout)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> StdioServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
