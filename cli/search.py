"""`rollouts search` and `rollouts db reindex`.

Registered by cli.main through `register`; the store opener, options and
JSON printer come from cli.common, so both commands behave like every other
one (errors, --db, --codex-home).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.common import DbOpt, HomeOpt, cli_store, print_json
from store.search import SearchFilters, SearchPage
from store.search.when import parse_when


def register(app: typer.Typer, db_app: typer.Typer) -> None:
    """Add `search` to `app` and `reindex` to `db_app`."""

    @app.command("search")
    def search(
        query: Annotated[str, typer.Argument(help='Words, "phrases", prefix*, -excluded.')],
        db: DbOpt = None,
        home: HomeOpt = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
        substring: Annotated[
            bool, typer.Option("--substring", help="Find QUERY literally (case-insensitive).")
        ] = False,
        limit: Annotated[int, typer.Option(help="Hits per page (1-100).")] = 25,
        cursor: Annotated[str | None, typer.Option(help="nextCursor of the previous page.")] = None,
        sort: Annotated[str, typer.Option(help="relevance or newest.")] = "relevance",
        cwd: Annotated[
            str | None, typer.Option(help="Threads run in this folder or below.")
        ] = None,
        provider: Annotated[str | None, typer.Option(help="Model provider.")] = None,
        source: Annotated[
            list[str] | None, typer.Option(help="Source kind (cli, vscode, exec, ...); repeatable.")
        ] = None,
        item_type: Annotated[
            list[str] | None,
            typer.Option(
                "--type", help="Item type (userMessage, commandExecution, ...); repeatable."
            ),
        ] = None,
        thread: Annotated[
            list[str] | None, typer.Option(help="Only this thread; repeatable.")
        ] = None,
        since: Annotated[str | None, typer.Option(help="From: 7d, 12h, 2026-01-01 ...")] = None,
        until: Annotated[
            str | None, typer.Option(help="Before: 7d, 2026-01-31 (whole day) ...")
        ] = None,
        all_: Annotated[bool, typer.Option("--all", help="Archived threads too.")] = False,
        archived: Annotated[
            bool, typer.Option("--archived", help="Only archived threads.")
        ] = False,
    ) -> None:
        """Search every item of every thread: messages, commands, output, patches, tools."""
        with cli_store(db, home) as st:
            filters = SearchFilters(
                cwd=cwd,
                model_provider=provider,
                sources=tuple(source or ()),
                archived=None if all_ else archived,
                since_ms=parse_when(since) if since else None,
                until_ms=parse_when(until, end_of_day=True) if until else None,
                item_types=tuple(item_type or ()),
                thread_ids=tuple(thread or ()),
            )
            page = st.search(
                query, substring=substring, filters=filters, sort=sort, limit=limit, cursor=cursor
            )
        if as_json:
            print_json(page.to_json())
        else:
            _print_table(page)

    @db_app.command("reindex")
    def reindex(db: DbOpt = None, home: HomeOpt = None) -> None:
        """Rebuild the search index from the stored items."""
        with cli_store(db, home) as st:
            st.reindex()
        Console(stderr=True).print("search index rebuilt")


def _print_table(page: SearchPage) -> None:
    console = Console()
    table = Table(show_header=True, header_style="bold")
    for col in ("when", "thread", "cwd", "type", "match"):
        table.add_column(col, overflow="fold")
    for h in page.hits:
        when = (
            datetime.fromtimestamp(h.time_ms / 1000).strftime("%Y-%m-%d %H:%M")
            if h.time_ms is not None
            else ""
        )
        title = h.thread_name or (h.thread_preview.splitlines() or [""])[0][:60]
        snippet = Text(h.snippet)
        for start, end in h.matches:
            snippet.stylize("bold yellow", start, end)
        table.add_row(when, Text(f"{title}\n{h.thread_id}"), Text(h.cwd), h.item_type, snippet)
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}", highlight=False)
    elif not page.hits:
        console.print("no matches", highlight=False)
