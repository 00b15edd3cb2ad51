"""The Codex app-server JSON-RPC protocol over a `ThreadStore`: stdio and WebSocket.

Embedding: every entry point takes a store (wrapped in `ThreadApi`) or any
object with `handle(method, params) -> Reply`, so another program can serve
its own store or its own API on its own streams:

    import asyncio
    from store import open_store
    from store.server import serve_stdio, serve_stream, serve_websocket

    with open_store() as st:
        asyncio.run(serve_stdio(st))                        # like `rollouts serve`
        # asyncio.run(serve_websocket(st, "127.0.0.1", 0))  # ws://, until cancelled
        # await serve_stream(st, reader, writer)            # any asyncio stream pair

The functions return when the client goes away (stdio, stream) or when
cancelled (WebSocket); they never touch signal handlers or logging setup,
which belong to the program (see `cli/serve.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from store.api.methods import ThreadApi
from store.server.core import RpcHandler, Server, ServerOptions, Transport
from store.server.logs import configure_logging
from store.server.transports import serve_stdio_on, serve_websocket_on, stream_transport

__all__ = [
    "RpcHandler",
    "Server",
    "ServerOptions",
    "Transport",
    "as_handler",
    "configure_logging",
    "serve_stdio",
    "serve_stream",
    "serve_websocket",
]


def as_handler(target: Any) -> RpcHandler:
    """`target` itself if it already answers `handle()`, else `ThreadApi(target)`."""
    if callable(getattr(target, "handle", None)):
        return target  # type: ignore[no-any-return]
    return ThreadApi(target)


async def serve_stream(
    target: Any,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    options: ServerOptions | None = None,
) -> None:
    """Serve one client over an asyncio stream pair (newline-delimited JSON).

    Returns when the client closes its side, after answering everything it
    sent; the writer is closed then.
    """
    try:
        async with Server(as_handler(target), options) as server:
            await server.serve_connection(stream_transport(reader, writer), "stream")
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def serve_stdio(target: Any, *, options: ServerOptions | None = None) -> None:
    """Serve this process's stdin/stdout until stdin ends (after answering everything)."""
    async with Server(as_handler(target), options) as server:
        await serve_stdio_on(server)


async def serve_websocket(
    target: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    options: ServerOptions | None = None,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve WebSocket clients on host:port (0: any free port) until cancelled.

    `on_listening` gets the bound `ws://host:port` URL once the socket is open.
    """
    async with Server(as_handler(target), options) as server:
        await serve_websocket_on(server, host, port, on_listening=on_listening)
