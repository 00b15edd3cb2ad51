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
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from store import RolloutsError, open_store
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
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="ROLLOUTS_DB",
            help="SQLAlchemy URL (default: CODEX_HOME/rollouts.sqlite).",
        ),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option("--codex-home", envvar="CODEX_HOME", help="Codex home (default: ~/.codex)."),
    ] = None,
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
    try:
        address = parse_listen(listen)
        home_dir = codex_home(home)
        st = open_store(db, codex_home=home_dir)
    except (RolloutsError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise typer.Exit(1) from None
    options = ServerOptions(workers=workers, queue_size=queue_size, codex_home=home_dir)
    try:
        if address is None:
            _run(serve_stdio(st, options=options))
        else:
            _run(serve_websocket(st, *address, options=options))
    except OSError as exc:  # e.g. the port is taken
        sys.stderr.write(f"error: {exc}\n")
        raise typer.Exit(1) from None
    finally:
        st.close()


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
