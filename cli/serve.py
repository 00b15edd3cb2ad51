"""`rollouts serve`: the Codex app-server thread API over stdio or WebSocket.

stdout carries only the protocol; logs go to stderr (`ROLLOUTS_LOG`,
`LOG_FORMAT=json`). EOF on stdin, SIGTERM and Ctrl-C stop the server with
exit code 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from cli.common import DbOpt, HomeOpt, cli_store, handle_errors
from store.config import codex_home
from store.errors import InvalidInput
from store.server import ServerOptions, configure_logging, serve_stdio, serve_websocket

log = logging.getLogger("store.server")


def parse_listen(url: str) -> tuple[str, int] | None:
    """`stdio://` -> None; `ws://HOST:PORT` -> (host, port); anything else is an error."""
    if url in ("stdio://", "stdio", "-"):
        return None
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "ws" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise InvalidInput(
            f"unsupported --listen {url!r}: use stdio:// or ws://HOST:PORT (port 0: any free port)"
        )
    return parts.hostname, port


def serve(
    listen: Annotated[
        str, typer.Option(help="stdio:// (newline-delimited JSON) or ws://HOST:PORT.")
    ] = "stdio://",
    db: DbOpt = None,
    home: HomeOpt = None,
    workers: Annotated[
        int, typer.Option(envvar="ROLLOUTS_SERVE_WORKERS", min=1, help="Database threads.")
    ] = ServerOptions.workers,
    queue_size: Annotated[
        int,
        typer.Option(
            envvar="ROLLOUTS_SERVE_QUEUE_SIZE",
            min=1,
            help="Requests in flight before new ones get -32001 (overloaded).",
        ),
    ] = ServerOptions.queue_size,
) -> None:
    """Answer the Codex app-server thread API (JSON-RPC) from the store."""
    configure_logging()
    with handle_errors():
        address = parse_listen(listen)
        home_dir = codex_home(home)
    options = ServerOptions(workers=workers, queue_size=queue_size, codex_home=home_dir)
    # cli_store: an unreachable or locked database, or a taken port, is one
    # line on stderr and exit 1, never a traceback (--debug shows it).
    with cli_store(db, home_dir) as st:
        if address is None:
            _run(serve_stdio(st, options=options))
        else:
            _run(serve_websocket(st, *address, options=options))


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run the server until it ends, or until SIGTERM/SIGINT, without a traceback."""

    async def until_signal() -> None:
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            log.info("stopping on signal")

    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C during shutdown
        asyncio.run(until_signal())
