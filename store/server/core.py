"""The request pipeline shared by every transport: read -> admit -> handle -> write.

Invariants this module keeps:
- Memory is bounded. A server admits at most `queue_size` requests at a time
  (waiting or running, over all connections); one more gets -32001 at once,
  before any work is done. Each connection has a bounded outbox; a request's
  worker waits for room (backpressure on the client that asked), while a
  broadcast to a connection whose outbox is full disconnects that slow client
  rather than stall everyone.
- `ThreadApi.handle` is synchronous (SQLAlchemy), so it runs in a thread pool of
  `workers` threads; as many requests are in flight and they are answered in
  the order they finish, not the order they came.
- Requests naming the same `threadId` run one after the other, in arrival
  order (a write must not race a read of the same thread); others run
  concurrently. Waiting requests park in a per-thread queue and hold no worker.
- A request's response is queued before its notifications, and a connection
  writes its outbox in order, so clients see the response first (Codex's
  tests rely on it for thread/started, thread/archived, ...).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from store.api.methods import experimental_use, rpc_error
from store.api.rpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    OVERLOADED,
    OVERLOADED_MESSAGE,
    Notification,
    Reply,
    RpcError,
)
from store.errors import RolloutsError
from store.server import protocol as p

log = logging.getLogger("store.server")

# Frames written per transport call: large enough to batch a burst of answers
# into one write, small enough to keep latency flat.
WRITE_BATCH = 256


class RpcHandler(Protocol):
    """What the server needs from the API: `store.api.methods.ThreadApi` is one."""

    def handle(self, method: str, params: Any) -> Reply: ...


class Transport(Protocol):
    """One client connection's frames: stdio lines or WebSocket text messages."""

    async def recv(self) -> bytes | str | None:
        """The next frame, or None once the client is gone (EOF, closed socket)."""
        ...

    async def send(self, frames: list[bytes]) -> None:
        """Write frames in order; raise ConnectionError (or OSError) if the client is gone."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ServerOptions:
    """Tuning of the pipeline; the defaults suit a desktop client and a few tools.

    workers: threads running `handle` (database calls) at once.
    queue_size: requests admitted (waiting or running) before -32001 overload.
    outbox_size: frames queued for writing, per connection.
    codex_home: reported by `initialize` (default: $CODEX_HOME or ~/.codex).
    """

    workers: int = 4
    queue_size: int = 128
    outbox_size: int = 256
    codex_home: Path | None = None

    def __post_init__(self) -> None:
        for name in ("workers", "queue_size", "outbox_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"ServerOptions.{name} must be at least 1")


@dataclass
class _Job:
    conn: Connection
    request: p.Request

    @property
    def key(self) -> str | None:
        params = self.request.params
        tid = params.get("threadId") if isinstance(params, dict) else None
        return tid if isinstance(tid, str) else None


@dataclass
class _Outcome:
    response: bytes
    notifications: list[tuple[Notification, bytes]] = field(default_factory=list)


class Server:
    """Serves one `RpcHandler` to any number of connections.

    Use as an async context manager (it owns the worker tasks and thread pool),
    then `await server.serve_connection(transport)` per client.
    """

    def __init__(self, api: RpcHandler, options: ServerOptions | None = None) -> None:
        self.api = api
        self.options = options or ServerOptions()
        from store.config import codex_home

        self.codex_home = codex_home(self.options.codex_home)
        self.connections: set[Connection] = set()
        self._admitted = 0
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._parked: dict[str, deque[_Job]] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None

    async def __aenter__(self) -> Server:
        self._executor = ThreadPoolExecutor(self.options.workers, thread_name_prefix="rollouts-rpc")
        self._workers = [
            asyncio.create_task(self._worker(), name=f"rpc-worker-{i}")
            for i in range(self.options.workers)
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._executor is not None:
            # Running database calls finish; queued ones are dropped.
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    async def serve_connection(self, transport: Transport, name: str = "client") -> None:
        """Serve one client until it disconnects, answering everything it asked."""
        conn = Connection(self, transport, name)
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)

    # -- admission and scheduling -------------------------------------------------

    def submit(self, job: _Job) -> bool:
        """Admit a request, or return False when the server is saturated."""
        if self._admitted >= self.options.queue_size:
            return False
        self._admitted += 1
        self._queue.put_nowait(job)
        return True

    async def _worker(self) -> None:
        while True:
            job = await self._queue.get()
            await self._run_serialized(job)

    async def _run_serialized(self, job: _Job) -> None:
        """Run `job`, then every job that parked behind it on the same thread id."""
        key = job.key
        if key is not None:
            if key in self._parked:
                self._parked[key].append(job)
                return
            self._parked[key] = deque()
        current: _Job | None = job
        try:
            while current is not None:
                await self._run(current)
                current = self._next_for(key)
        finally:
            if current is not None and key is not None:  # cancelled mid-run: unblock
                self._parked.pop(key, None)

    def _next_for(self, key: str | None) -> _Job | None:
        if key is None:
            return None
        waiting = self._parked[key]
        if waiting:
            return waiting.popleft()
        del self._parked[key]
        return None

    async def _run(self, job: _Job) -> None:
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(self._executor, self._call, job.request)
            await job.conn.send(outcome.response)
            for note, frame in outcome.notifications:
                if note.broadcast:
                    await self.broadcast(note.method, frame, origin=job.conn)
                else:
                    await job.conn.notify(note.method, frame)
        finally:
            self._admitted -= 1
            job.conn.request_done()

    def _call(self, req: p.Request) -> _Outcome:
        """In a pool thread: handle one request and encode its answer."""
        try:
            reply = self.api.handle(req.method, req.params)
            return _Outcome(
                p.response(req.id, reply.result),
                [(n, p.notification(n.method, n.params)) for n in reply.notifications],
            )
        except RpcError as exc:
            return _Outcome(p.error_response(req.id, exc))
        except RolloutsError as exc:  # from a handler other than ThreadApi
            return _Outcome(p.error_response(req.id, rpc_error(exc)))
        except Exception as exc:
            log.exception("internal error answering %s (id %r)", req.method, req.id)
            err = RpcError(INTERNAL_ERROR, f"Internal error: {type(exc).__name__}: {exc}")
            return _Outcome(p.error_response(req.id, err))

    async def broadcast(self, method: str, frame: bytes, origin: Connection | None = None) -> None:
        """Send a notification to every initialized connection that did not opt out.

        The origin waits for room in its outbox; any other connection whose
        outbox is full is too slow to keep up and is disconnected.
        """
        for conn in list(self.connections):
            if conn is origin:
                await conn.notify(method, frame)
            else:
                conn.offer(method, frame)


class Connection:
    """One client: reads frames, answers the handshake and errors, queues the rest."""

    def __init__(self, server: Server, transport: Transport, name: str) -> None:
        self.server = server
        self.transport = transport
        self.name = name
        self.session: p.Session | None = None
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue(server.options.outbox_size)
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._broken = False

    async def run(self) -> None:
        writer = asyncio.create_task(self._write_loop(), name=f"writer-{self.name}")
        try:
            while not self._broken:
                frame = await self.transport.recv()
                if frame is None:
                    break
                await self._on_frame(frame)
            # EOF: answer what was already admitted, then flush and stop.
            await self._idle.wait()
            await self._outbox.put(None)
            await writer
        finally:
            if not writer.done():
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
        log.debug("%s: disconnected", self.name)

    # -- outgoing ----------------------------------------------------------------

    async def send(self, frame: bytes) -> None:
        if not self._broken:
            await self._outbox.put(frame)

    def _wants(self, method: str) -> bool:
        return self.session is not None and method not in self.session.opt_out_notifications

    async def notify(self, method: str, frame: bytes) -> None:
        if self._wants(method):
            await self.send(frame)

    def offer(self, method: str, frame: bytes) -> None:
        """Queue a notification without waiting; a full outbox means a stuck client."""
        if not self._wants(method) or self._broken:
            return
        try:
            self._outbox.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("%s: not reading its notifications; disconnecting it", self.name)
            self.abort()

    def abort(self) -> None:
        """Drop the client: stop reading, discard what is queued for it."""
        self._broken = True
        asyncio.get_running_loop().create_task(self.transport.close())

    async def _write_loop(self) -> None:
        while True:
            frame = await self._outbox.get()
            batch: list[bytes] = []
            while frame is not None:
                batch.append(frame)
                if len(batch) >= WRITE_BATCH or self._outbox.empty():
                    break
                frame = self._outbox.get_nowait()
            if batch and not self._broken:
                try:
                    await self.transport.send(batch)
                except (ConnectionError, OSError) as exc:
                    log.info("%s: write failed (%s); closing", self.name, exc)
                    self.abort()
            if frame is None:
                return

    # -- incoming ----------------------------------------------------------------

    def request_done(self) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._idle.set()

    async def _on_frame(self, frame: bytes | str) -> None:
        msg = p.parse_message(frame)
        if isinstance(msg, p.Request):
            await self._on_request(msg)
        elif isinstance(msg, p.Invalid):
            if msg.id is None:
                log.warning("%s: dropping a frame: %s", self.name, msg.reason)
            else:
                await self._error(msg.id, RpcError(INVALID_REQUEST, msg.reason))
        elif isinstance(msg, p.ClientNotification):
            level = logging.DEBUG if msg.method == "initialized" else logging.INFO
            log.log(level, "%s: <- notification %s", self.name, msg.method)
        else:
            log.info(
                "%s: ignoring a response to id %r (no server requests are sent)", self.name, msg.id
            )

    async def _error(self, rid: p.RequestId, err: RpcError) -> None:
        await self.send(p.error_response(rid, err))

    async def _on_request(self, req: p.Request) -> None:
        log.debug("%s: <- %s (id %r)", self.name, req.method, req.id)
        if req.method == "initialize":
            await self._initialize(req)
            return
        if self.session is None:
            await self._error(req.id, RpcError(INVALID_REQUEST, p.NOT_INITIALIZED))
            return
        if not self.session.experimental_api:
            descriptor = experimental_use(req.method, req.params)
            if descriptor is not None:
                msg = p.experimental_required_message(descriptor)
                await self._error(req.id, RpcError(INVALID_REQUEST, msg))
                return
        if not self.server.submit(_Job(self, req)):
            log.debug("%s: overloaded, refusing %s (id %r)", self.name, req.method, req.id)
            await self._error(req.id, RpcError(OVERLOADED, OVERLOADED_MESSAGE))
            return
        self._pending += 1
        self._idle.clear()

    async def _initialize(self, req: p.Request) -> None:
        if self.session is not None:
            await self._error(req.id, RpcError(INVALID_REQUEST, p.ALREADY_INITIALIZED))
            return
        try:
            session = p.parse_initialize(req.params)
        except RpcError as exc:
            await self._error(req.id, exc)
            return
        self.session = session
        log.info(
            "%s: initialized by %s %s%s",
            self.name,
            session.client_name,
            session.client_version,
            " (experimental API)" if session.experimental_api else "",
        )
        await self.send(p.response(req.id, p.initialize_result(session, self.server.codex_home)))
