"""`rollouts watch`: keep the store in step with a CODEX_HOME that Codex is writing.

Registered on the main app by cli.main through `register`. The watch
runs in the main thread so that Ctrl-C and SIGTERM only set a stop flag: the
round in progress finishes its transaction and the command exits 0.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cli.common import DbOpt, HomeOpt, cli_store, err, handle_errors, stop_on_signals
from store import codec
from store.config import codex_home
from store.watch import DEFAULT_POLL_INTERVAL, WatchBatch, resolve_home, watch

# Errors that are the normal state of a file Codex has only just created.
_QUIET_ERRORS = ("empty file",)


def watch_command(
    home_arg: Annotated[
        Path | None, typer.Argument(help="CODEX_HOME to follow (default: --codex-home).")
    ] = None,
    db: DbOpt = None,
    home: HomeOpt = None,
    poll: Annotated[
        bool, typer.Option("--poll", help="Poll file sizes and times instead of inotify.")
    ] = False,
    interval: Annotated[
        float, typer.Option(help="Seconds between polls (with --poll).", min=0.05)
    ] = DEFAULT_POLL_INTERVAL,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON line per round on stdout.")
    ] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Report every round.")] = False,
) -> None:
    """Index new and changed rollouts as Codex writes them, until Ctrl-C."""
    target = home_arg or codex_home(home)
    stop = threading.Event()

    def on_batch(batch: WatchBatch) -> None:
        _report(batch, as_json=as_json, verbose=verbose)
        if batch.startup:
            mode = f"polling every {interval:g} s" if poll else "inotify"
            err.print(f"watching {target} ({mode}); Ctrl-C stops", highlight=False)

    def on_error(exc: Exception) -> None:
        err.print(f"[red]error:[/red] {escape(str(exc))} (retrying)", highlight=False)

    with handle_errors():
        root = resolve_home(target)
    with cli_store(db, root) as st:
        # The first round imports the whole home, which takes a while on a new store.
        err.print(f"importing {root} before watching it", highlight=False)
        with stop_on_signals(stop, "stopping after the current round"):
            watch(
                st.engine,
                root,
                stop=stop,
                poll=poll,
                poll_interval=interval,
                on_batch=on_batch,
                on_error=on_error,
            )
    err.print("stopped", highlight=False)


def _report(batch: WatchBatch, *, as_json: bool, verbose: bool) -> None:
    out = batch.summary.to_json()
    if as_json:
        line = {
            "startup": batch.startup,
            "paths": batch.paths,
            "seconds": round(batch.seconds, 4),
            **out,
        }
        sys.stdout.write(codec.dumps(line) + "\n")
        sys.stdout.flush()
    if verbose or batch.startup:
        what = "start-up import" if batch.startup else f"{batch.paths} changed paths"
        err.print(
            f"{what}: {out['threads']} threads written, {out['items']} items, "
            f"{out['removed']} files removed, {out['errors']} errors "
            f"({batch.seconds * 1000:.0f} ms)",
            highlight=False,
        )
    for e in out["error_details"]:
        if verbose or not e["error"].startswith(_QUIET_ERRORS):
            err.print(f"  {escape(e['path'])}: {escape(e['error'])}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("watch")(watch_command)
