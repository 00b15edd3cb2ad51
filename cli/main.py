"""The `rollouts` command line: parse, call the library, print.

Errors go to stderr with exit code 1 (2 for usage errors) and no traceback
unless --debug is given.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.archive import register as register_archive
from cli.common import (
    DbOpt,
    HomeOpt,
    JsonOpt,
    cli_store,
    err,
    handle_errors,
    print_json,
    run_with_progress,
    state,
    stop_on_signals,
)
from cli.fork import lineage_lines
from cli.fork import register as register_fork
from cli.search import register as register_search
from cli.serve import serve
from cli.watch import register as register_watch
from store import codec
from store.config import codex_home, database_url
from store.sql.listing import SOURCE_KINDS

app = typer.Typer(
    name="rollouts",
    help="Index, search and archive OpenAI Codex threads (rollout files).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema: upgrade, current, check.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.command("serve")(serve)


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    state.debug = debug


@app.command("import")
def import_(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="CODEX_HOMEs, session folders or rollout files.")
    ] = None,
    db: DbOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    workers: Annotated[
        int | None, typer.Option(help="Parser processes (default: up to 4).")
    ] = None,
) -> None:
    """Index rollout files into the database (only what changed since last time)."""
    targets = list(paths) if paths else [codex_home(home)]
    stop = threading.Event()
    with cli_store(db, home) as st, stop_on_signals(stop, "stopping: writing what was read"):
        summary = run_with_progress(
            lambda cb: st.ingest(targets, workers=workers, on_progress=cb, stop=stop.is_set),
            quiet=as_json,
        )
    out = summary.to_json()
    if as_json:
        print_json(out)
    if stop.is_set():
        err.print(
            f"interrupted after {out['threads']} threads; every thread written is complete. "
            "Run the same import again to finish.",
            highlight=False,
        )
        raise typer.Exit(130)
    if as_json:
        return
    err.print(
        f"{out['files']} files, {out['threads']} threads written "
        f"({out['unchanged']} unchanged), {out['turns']} turns, {out['items']} items, "
        f"{out['bytes'] / 1e6:.1f} MB read, {out['skipped_lines']} lines skipped, "
        f"{out['errors']} errors"
    )
    for e in out["error_details"][:20]:
        err.print(f"  {escape(e['path'])}: {escape(e['error'])}", highlight=False)


@app.command("list")
def list_(
    db: DbOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    all_: Annotated[
        bool,
        typer.Option("--all", help="Archived threads too, and threads with no user message yet."),
    ] = False,
    archived: Annotated[bool, typer.Option("--archived", help="Only archived threads.")] = False,
    cursor: Annotated[str | None, typer.Option(help="nextCursor of the previous page.")] = None,
    limit: Annotated[int, typer.Option(help="Page size (1-100).")] = 25,
    sort: Annotated[str, typer.Option(help="created_at, updated_at or recency_at.")] = "created_at",
    asc: Annotated[bool, typer.Option("--asc", help="Oldest first.")] = False,
    provider: Annotated[
        list[str] | None, typer.Option("--provider", help="Only these model providers.")
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option("--source", help="Only these source kinds (cli, vscode, exec, ...)."),
    ] = None,
    cwd: Annotated[
        list[str] | None, typer.Option("--cwd", help="Only threads started in this folder.")
    ] = None,
    search: Annotated[
        str | None, typer.Option("--search", help="Substring of the name or first message.")
    ] = None,
) -> None:
    """List threads, newest first: `{"data": [Thread], "nextCursor", "backwardsCursor"}`.

    Unlike Codex's own list, every provider and source is shown unless
    --provider/--source narrow it.
    """
    arch: bool | None = None if all_ else archived
    with cli_store(db, home) as st:
        page = st.list_threads(
            cursor=cursor,
            limit=limit,
            sort_key=sort,
            sort_direction="asc" if asc else "desc",
            archived=arch,
            model_providers=provider or [],
            source_kinds=source or list(SOURCE_KINDS),
            cwd=cwd or None,
            search_term=search,
            include_empty=all_,
        )
    if as_json:
        print_json(page)
        return
    console = Console()
    table = Table(show_header=True, header_style="bold")
    for col in ("id", "created", "name / preview", "cwd", "source"):
        table.add_column(col, overflow="fold")
    from datetime import datetime

    for t in page["data"]:
        created = datetime.fromtimestamp(t["createdAt"]).strftime("%Y-%m-%d %H:%M")
        title = (
            t["name"] or t["preview"].splitlines()[0][:80] if (t["name"] or t["preview"]) else ""
        )
        src = t["source"] if isinstance(t["source"], str) else codec.dumps(t["source"])
        table.add_row(t["id"], created, escape(title), escape(t["cwd"] or ""), escape(src))
    console.print(table)
    if page["nextCursor"]:
        # Never wrapped: the cursor is meant to be copied.
        console.print(f"more: --cursor {page['nextCursor']}", highlight=False, soft_wrap=True)


@app.command("show")
def show(
    thread_id: Annotated[str, typer.Argument(help="Thread id (UUID).")],
    db: DbOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    lineage: Annotated[
        bool,
        typer.Option(
            "--lineage",
            help="The forks around the thread instead: "
            "{thread, ancestors, descendants, missingAncestorId} with --json.",
        ),
    ] = False,
) -> None:
    """Show a thread with its turns (`Thread` with `turns` filled, with --json)."""
    with cli_store(db, home) as st:
        if lineage:
            tree = st.lineage(thread_id)
        else:
            thread = st.get_thread(thread_id, include_turns=True)
    if lineage:
        if as_json:
            print_json(tree)
        else:
            sys.stdout.write("".join(line + "\n" for line in lineage_lines(tree)))
        return
    if as_json:
        print_json(thread)
        return
    console = Console()
    title = escape(thread["name"] or thread["preview"][:100])
    console.print(f"[bold]{title}[/bold]", highlight=False)
    console.print(
        f"{thread['id']}  {thread['cwd']}  {thread['modelProvider']}/{thread['model']}",
        highlight=False,
        markup=False,
    )
    for i, turn in enumerate(thread["turns"], 1):
        console.print(
            f"\n[bold cyan]turn {i}[/bold cyan] {escape(turn['id'])} ({turn['status']})",
            highlight=False,
        )
        for item in turn["items"]:
            console.print(
                f"  [dim]{item['type']}[/dim] {escape(_item_text(item)[:300])}",
                highlight=False,
                markup=True,
            )


def _item_text(item: dict[str, Any]) -> str:
    from store.rows import search_text

    return search_text(item).replace("\n", " ")


@app.command("export")
def export(
    thread_id: Annotated[str, typer.Argument(help="Thread id (UUID).")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="File to write (default: stdout).")
    ] = None,
    db: DbOpt = None,
    home: HomeOpt = None,
) -> None:
    """Write the thread's original rollout bytes, byte for byte."""
    with cli_store(db, home) as st:
        chunks = st.export(thread_id)
        if output is None:
            for chunk in chunks:
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return
        # Whole or nothing: a failed export leaves neither OUTPUT nor a part file.
        tmp = output.with_name(output.name + ".part")
        try:
            with open(tmp, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
            os.replace(tmp, output)
        finally:
            tmp.unlink(missing_ok=True)


@app.command("skipped")
def skipped(
    thread_id: Annotated[str | None, typer.Argument(help="Only this thread.")] = None,
    db: DbOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Lines that could not be indexed, with file, line number and reason."""
    with cli_store(db, home) as st:
        rows = st.skipped_lines(thread_id)
    if as_json:
        print_json({"data": rows})
        return
    for r in rows:
        sys.stdout.write(f"{r['path']}:{r['line']}: {r['reason']}\n")


@db_app.command("upgrade")
def db_upgrade(db: DbOpt = None, home: HomeOpt = None) -> None:
    """Create or upgrade the schema to this version."""
    from store.sql import migrate
    from store.sql.engine import make_engine

    with handle_errors():
        engine = make_engine(database_url(db, codex_home(home)))
        migrate.upgrade(engine)
        err.print(f"schema at {migrate.current_revision(engine)} (head)")


@db_app.command("current")
def db_current(db: DbOpt = None, home: HomeOpt = None) -> None:
    """Print the schema revision of the database and of this version."""
    from store.sql import migrate
    from store.sql.engine import make_engine

    with handle_errors():
        engine = make_engine(database_url(db, codex_home(home)))
        current = migrate.current_revision(engine)
        head = migrate.head_revision()
        sys.stdout.write(
            f"{current or '(empty)'}{' (head)' if current == head else f' (head is {head})'}\n"
        )


@db_app.command("check")
def db_check(db: DbOpt = None, home: HomeOpt = None) -> None:
    """Exit non-zero unless the database is at head and matches the models."""
    from alembic.util.exc import CommandError

    from store.sql import migrate
    from store.sql.engine import make_engine

    with handle_errors():
        engine = make_engine(database_url(db, codex_home(home)))
        current = migrate.current_revision(engine)
        if current != migrate.head_revision():
            err.print(f"[red]out of date:[/red] at {current}, head is {migrate.head_revision()}")
            raise typer.Exit(1)
        try:
            migrate.check(engine)
        except CommandError as exc:
            err.print(f"[red]drift:[/red] {exc}")
            raise typer.Exit(1) from None
        err.print("schema up to date, no drift")


register_search(app, db_app)
register_archive(app)
register_watch(app)
register_fork(app)


def run() -> None:
    app()


if __name__ == "__main__":
    run()
