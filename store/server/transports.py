"""Transports: newline-delimited JSON over byte streams (stdio) and WebSocket.

Both turn a client into `recv()`/`send()` of whole frames for `core.Server`.
Lines are split here rather than with `StreamReader.readline` so that an
over-long line (a client bug or an attack) is dropped with a log line instead
of growing a buffer without bound or killing the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from store.server.core import Server

log = logging.getLogger("store.server")

# The largest frame accepted (a thread/inject_items request can carry big items).
MAX_FRAME_BYTES = 16 * 1024 * 1024
READ_CHUNK = 64 * 1024


class LineReader:
    """Split a chunked byte stream into lines of at most `max_line` bytes."""

    def __init__(
        self, read_chunk: Callable[[], Awaitable[bytes]], max_line: int = MAX_FRAME_BYTES
    ) -> None:
        self._read_chunk = read_chunk
        self._max_line = max_line
        self._buf = bytearray()
        self._scanned = 0
        self._eof = False
        self._discarding = False

    async def readline(self) -> bytes | None:
        """The next line without its newline; None at end of stream."""
        while True:
            nl = self._buf.find(b"\n", self._scanned)
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                self._scanned = 0
                if self._discarding:
                    self._discarding = False
                    continue
                return line
            self._scanned = len(self._buf)
            if len(self._buf) > self._max_line:
                if not self._discarding:
                    log.warning("dropping a line longer than %d bytes", self._max_line)
                self._discarding = True
                self._buf.clear()
                self._scanned = 0
            if self._eof:
                # A last line without its newline still counts, as in Codex.
                tail, self._buf = bytes(self._buf), bytearray()
                if tail and not self._discarding:
                    return tail
                return None
            chunk = await self._read_chunk()
            if chunk:
                self._buf += chunk
            else:
                self._eof = True


class LineTransport:
    """Newline-delimited JSON: one message per line, both directions."""

    def __init__(
        self,
        read_chunk: Callable[[], Awaitable[bytes]],
        write: Callable[[bytes], Awaitable[None]],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self._lines = LineReader(read_chunk)
        self._write = write
        self._close = close
        self._closed = False

    async def recv(self) -> bytes | None:
        while not self._closed:
            try:
                line = await self._lines.readline()
            except (ConnectionError, OSError):
                return None
            if line is None:
                return None
            line = line.strip()
            if line:  # blank lines are allowed between messages
                return line
        return None

    async def send(self, frames: list[bytes]) -> None:
        await self._write(b"\n".join(frames) + b"\n")

    async def close(self) -> None:
        self._closed = True
        await self._close()


def stream_transport(reader: asyncio.StreamReader, writer: Any) -> LineTransport:
    """A transport over asyncio streams (`writer` needs write/drain/close)."""

    async def read_chunk() -> bytes:
        return await reader.read(READ_CHUNK)

    async def write(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    async def close() -> None:
        with contextlib.suppress(Exception):
            writer.close()

    return LineTransport(read_chunk, write, close)


def stdio_transport(stdin: IO[bytes], stdout: IO[bytes]) -> LineTransport:
    """A transport over blocking files (stdin/stdout: pipes, terminals or plain files).

    A daemon thread reads stdin, so a regular file works as well as a pipe, and
    a blocked read never delays exit; it waits for room in a one-chunk queue,
    which is the backpressure on a client that writes faster than we answer.
    Writes go through one dedicated thread, so a slow reader of stdout blocks
    only the writer, never the event loop.
    """
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1)
    fd = stdin.fileno()

    def pump() -> None:
        while True:
            try:
                data = os.read(fd, READ_CHUNK)
            except OSError as exc:
                log.info("stdin: %s", exc)
                data = b""
            try:
                asyncio.run_coroutine_threadsafe(chunks.put(data), loop).result()
            except RuntimeError:  # the loop is gone: the server has stopped
                return
            if not data:
                return

    threading.Thread(target=pump, name="rollouts-stdin", daemon=True).start()
    pool = ThreadPoolExecutor(1, thread_name_prefix="rollouts-stdout")

    def write_all(data: bytes) -> None:
        stdout.write(data)
        stdout.flush()

    async def write(data: bytes) -> None:
        try:
            await loop.run_in_executor(pool, write_all, data)
        except BrokenPipeError as exc:
            raise ConnectionError("stdout closed") from exc

    async def close() -> None:
        pool.shutdown(wait=False)

    return LineTransport(chunks.get, write, close)


async def serve_stdio_on(server: Server) -> None:
    """Serve stdin/stdout until stdin ends; stray prints go to stderr meanwhile."""
    stdout = sys.stdout.buffer
    saved = sys.stdout
    sys.stdout = sys.stderr
    transport = stdio_transport(sys.stdin.buffer, stdout)
    try:
        await server.serve_connection(transport, "stdio")
    finally:
        sys.stdout = saved
        await transport.close()


class WebSocketTransport:
    """One JSON-RPC message per text frame (binary frames are logged and dropped)."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws

    async def recv(self) -> str | bytes | None:
        from websockets.exceptions import ConnectionClosed

        while True:
            try:
                msg = await self._ws.recv()
            except ConnectionClosed:
                return None
            if isinstance(msg, str):
                return msg
            log.warning("dropping a binary WebSocket frame (JSON-RPC uses text frames)")

    async def send(self, frames: list[bytes]) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for frame in frames:
                await self._ws.send(frame, text=True)
        except ConnectionClosed as exc:
            raise ConnectionError(str(exc)) from exc

    async def close(self) -> None:
        await self._ws.close()


def _process_request(connection: Any, request: Any) -> Any:
    """Health checks, and no browser pages: Codex refuses any request with an Origin.

    A web page the user happens to open could otherwise drive a local server
    through the user's browser (cross-site WebSocket hijacking).
    """
    if request.path in ("/readyz", "/healthz"):
        return connection.respond(http.HTTPStatus.OK, "OK\n")
    if "Origin" in request.headers:
        log.warning("refusing a WebSocket request with an Origin header (%s)", request.path)
        return connection.respond(http.HTTPStatus.FORBIDDEN, "Forbidden\n")
    return None


async def serve_websocket_on(
    server: Server,
    host: str,
    port: int,
    *,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Accept WebSocket clients on host:port until cancelled."""
    from websockets.asyncio.server import serve

    counter = 0

    async def handler(ws: Any) -> None:
        nonlocal counter
        counter += 1
        name = f"ws#{counter}"
        log.info("%s: connected from %s", name, ws.remote_address)
        await server.serve_connection(WebSocketTransport(ws), name)

    async with serve(
        handler,
        host,
        port,
        max_size=MAX_FRAME_BYTES,
        process_request=_process_request,
        compression=None,
    ) as ws_server:
        sock = next(iter(ws_server.sockets))
        bound_host, bound_port = sock.getsockname()[:2]
        url = f"ws://{_format_host(bound_host)}:{bound_port}"
        log.info("listening on %s", url)
        if on_listening is not None:
            on_listening(url)
        await asyncio.Future()  # until cancelled


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
