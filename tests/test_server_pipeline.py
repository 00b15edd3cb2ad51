"""The server pipeline in-process, on a real store: serialization, ordering, broadcast.

The handler is the real `ThreadApi` with a recorder in front that slows some
calls down and notes when each ran, so overlap and order can be observed;
it also answers one test method that emits notifications, as thread/name/set
and friends will. Clients talk over real sockets (TCP streams, WebSockets).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from store import open_store
from store.api.methods import ThreadApi
from store.api.rpc import Notification, Reply
from store.server import ServerOptions, serve_stream, serve_websocket
from tests.conftest import CORPUS, copy_home
from tests.helpers import EVERY_THREAD

NOTE = "thread/name/updated"


class Recorder:
    """ThreadApi plus delays per threadId and a log of (threadId, start, end)."""

    def __init__(self, store: Any, delays: dict[str, float] | None = None) -> None:
        self.api = ThreadApi(store)
        self.delays = delays or {}
        self.runs: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()

    def handle(self, method: str, params: Any) -> Reply:
        if method == "test/notify":
            note = Notification(NOTE, {"threadId": "t", "threadName": "n"}, params["broadcast"])
            return Reply({}, [note])
        tid = params.get("threadId", "") if isinstance(params, dict) else ""
        start = time.monotonic()
        time.sleep(self.delays.get(tid, 0.0))
        reply = self.api.handle(method, params)
        with self._lock:
            self.runs.append((tid, start, time.monotonic()))
        return reply


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Any:
    home = copy_home(CORPUS / "codex-0.169.0", tmp_path / "home")
    with open_store(db_url, auto_upgrade=True, codex_home=home) as st:
        assert st.ingest([home]).errors == 0
        yield st


def _ids(store: Any) -> list[str]:
    return [t["id"] for t in store.list_threads(limit=100, **EVERY_THREAD)["data"]]


class LineClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, *msgs: dict[str, Any]) -> None:
        self.writer.write(b"".join(json.dumps(m).encode() + b"\n" for m in msgs))
        await self.writer.drain()

    async def recv(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), 30)
        assert line, "server closed the stream"
        return json.loads(line)  # type: ignore[no-any-return]

    async def initialize(self, **caps: Any) -> None:
        await self.send(
            {
                "id": "init",
                "method": "initialize",
                "params": {"clientInfo": {"name": "t", "version": "1"}, "capabilities": caps},
            }
        )
        assert "result" in await self.recv()


def _with_stream_server(
    handler: Recorder, body: Callable[[LineClient], Awaitable[None]], workers: int = 4
) -> None:
    """Run `serve_stream` behind a TCP socket and `body` as its client."""

    async def main() -> None:
        done = asyncio.Event()

        async def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await serve_stream(handler, r, w, options=ServerOptions(workers=workers))
            done.set()

        server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        async with server:
            await body(LineClient(reader, writer))
            writer.close()
            await asyncio.wait_for(done.wait(), 30)

    asyncio.run(main())


def test_same_thread_serialized_others_concurrent(store: Any) -> None:
    a, b = _ids(store)[:2]
    rec = Recorder(store, {a: 0.1, b: 0.1})

    async def body(c: LineClient) -> None:
        await c.initialize()
        reqs = [
            {"id": i, "method": "thread/read", "params": {"threadId": a if i % 2 else b}}
            for i in range(8)
        ]
        await c.send(*reqs)
        order = [(await c.recv())["id"] for _ in reqs]
        # Per thread, answers come in the order asked.
        assert [i for i in order if i % 2] == [1, 3, 5, 7]
        assert [i for i in order if not i % 2] == [0, 2, 4, 6]

    _with_stream_server(rec, body)
    for tid in (a, b):
        spans = sorted((s, e) for t, s, e in rec.runs if t == tid)
        assert len(spans) == 4
        assert all(prev_end <= start for (_, prev_end), (start, _) in itertools.pairwise(spans))
    # ...while the two threads ran side by side.
    a_spans = [(s, e) for t, s, e in rec.runs if t == a]
    b_spans = [(s, e) for t, s, e in rec.runs if t == b]
    assert any(s1 < e2 and s2 < e1 for s1, e1 in a_spans for s2, e2 in b_spans)


def test_answers_leave_as_they_finish(store: Any) -> None:
    slow = _ids(store)[0]
    rec = Recorder(store, {slow: 0.5})

    async def body(c: LineClient) -> None:
        await c.initialize()
        await c.send(
            {"id": 1, "method": "thread/read", "params": {"threadId": slow}},
            {"id": 2, "method": "thread/list", "params": {"limit": 2}},
        )
        assert [(await c.recv())["id"] for _ in range(2)] == [2, 1]

    _with_stream_server(rec, body)


@pytest.mark.parametrize("opt_out", [False, True])
def test_response_before_its_notification(store: Any, opt_out: bool) -> None:
    async def body(c: LineClient) -> None:
        await c.initialize(optOutNotificationMethods=[NOTE] if opt_out else [])
        for i in range(20):
            await c.send({"id": i, "method": "test/notify", "params": {"broadcast": i % 2 == 0}})
        seen = []
        expected = 20 if opt_out else 40
        for _ in range(expected):
            msg = await c.recv()
            seen.append(msg.get("id", msg.get("method")))
        for i in range(20):
            pos = seen.index(i)
            if not opt_out:
                assert NOTE in seen[pos + 1 :], "a notification must follow its response"
        assert (NOTE in seen) is not opt_out
        # The next answer proves nothing else was queued.
        await c.send({"id": "end", "method": "thread/list", "params": {"limit": 1}})
        assert (await c.recv())["id"] == "end"

    _with_stream_server(Recorder(store), body)


def test_broadcast_reaches_initialized_websocket_clients(store: Any) -> None:
    async def main() -> None:
        bound: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            serve_websocket(Recorder(store), "127.0.0.1", 0, on_listening=bound.set_result)
        )
        url = await asyncio.wait_for(bound, 30)
        init = {
            "id": 0,
            "method": "initialize",
            "params": {"clientInfo": {"name": "ws", "version": "1"}},
        }
        async with connect(url) as one, connect(url) as two, connect(url) as stranger:
            for ws in (one, two):
                await ws.send(json.dumps(init))
                assert "result" in json.loads(await ws.recv())
            await one.send(
                json.dumps({"id": 1, "method": "test/notify", "params": {"broadcast": True}})
            )
            assert json.loads(await one.recv()) == {"id": 1, "result": {}}
            assert json.loads(await one.recv())["method"] == NOTE
            assert json.loads(await asyncio.wait_for(two.recv(), 10))["method"] == NOTE
            # Connection-scoped notifications stay with the requester.
            await two.send(
                json.dumps({"id": 2, "method": "test/notify", "params": {"broadcast": False}})
            )
            assert json.loads(await two.recv())["id"] == 2
            assert json.loads(await two.recv())["method"] == NOTE
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(one.recv(), 0.3)
            # Never initialized: no broadcasts.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(stranger.recv(), 0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
