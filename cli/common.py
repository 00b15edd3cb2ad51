"""What every `rollouts` command shares: options, the store opener, errors, output.

Command modules (cli.main, cli.search, cli.archive, cli.watch, cli.serve)
import from here and never from each other, so `python -m cli.main` and the
`rollouts` script build the same app.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import OperationalError

from store import RolloutsError, SqlThreadStore, codec, open_store

err = Console(stderr=True)

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db", envvar="ROLLOUTS_DB", help="SQLAlchemy URL (default: CODEX_HOME/rollouts.sqlite)."
    ),
]
HomeOpt = Annotated[
    Path | None,
    typer.Option("--codex-home", envvar="CODEX_HOME", help="Codex home (default: ~/.codex)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


class _State:
    debug = False  # --debug: let tracebacks through


state = _State()


def print_json(value: Any) -> None:
    sys.stdout.write(codec.dumps_pretty(value) + "\n")


T = TypeVar("T")


@contextmanager
def stop_on_signals(stop: threading.Event, message: str) -> Iterator[None]:
    """Ctrl-C and SIGTERM set `stop` (saying `message` once) instead of raising."""

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        if not stop.is_set():
            err.print(message, highlight=False)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def cli_store(db: str | None, home: Path | None) -> Iterator[SqlThreadStore]:
    """Open the store for one command; errors become one clear line and exit 1."""
    with handle_errors():
        st = open_store(db, codex_home=home)
    try:
        with handle_errors():
            yield st
    finally:
        st.close()


def _fail(message: str) -> typer.Exit:
    # escape: the message may hold user text with [brackets]; soft_wrap: a
    # long path stays on one line, copyable.
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


@contextmanager
def handle_errors() -> Iterator[None]:
    try:
        yield
    except RolloutsError as exc:
        if state.debug:
            raise
        raise _fail(str(exc)) from None
    except OSError as exc:
        if state.debug:
            raise
        raise _fail(str(exc)) from None
    except OperationalError as exc:
        # The database is unreachable, refuses us, or is locked past the timeout.
        if state.debug:
            raise
        raise _fail("database: " + " ".join(str(exc.orig or exc).split())) from None


def run_with_progress(
    fn: Callable[[Callable[[int, int], None] | None], T], *, quiet: bool, label: str = "indexing"
) -> T:
    """`fn(on_progress)` under a byte progress bar on a terminal (fn(None) otherwise)."""
    if quiet or not sys.stderr.isatty():
        return fn(None)
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def cb(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return fn(cb)
