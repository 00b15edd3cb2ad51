"""`rollouts archive | unarchive | restore | delete | trash | retain | log | stats`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import DbOpt, HomeOpt, JsonOpt, cli_store, err, print_json, run_with_progress
from store.archive import policy as pol
from store.archive import service as svc
from store.archive import trash as tr
from store.archive.select import Filters, parse_duration_ms, parse_size, resolve_ids, select_threads
from store.config import codex_home
from store.errors import InvalidInput

Ids = Annotated[list[str] | None, typer.Argument(help="Thread ids.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")]
trash_app = typer.Typer(help="Deleted threads: list, restore, purge.", no_args_is_help=True)


def _print_report(out: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(out)
        return
    for line in out.get("recovered", []):
        err.print(f"recovered: {line}", highlight=False)
    for item in out["items"]:
        print(f"{item['action']:10} {item['threadId']}  {item['path']}")
    for skip in out["skipped"]:
        err.print(f"skipped {skip['threadId']}: {skip['reason']}", highlight=False)
    verb = "would change" if out["dryRun"] else "changed"
    freed = out["bytesBefore"] - out["bytesAfter"]
    err.print(
        f"{verb} {out['threads']} threads: {out['bytesBefore']:,} → {out['bytesAfter']:,} "
        f"bytes on disk ({freed:,} freed)"
    )


def _ids(st: Any, ids: list[str] | None, f: Filters | None = None) -> list[str]:
    """The named ids; else the threads the filters select (commands without
    filters pass none)."""
    if ids:
        return resolve_ids(ids)
    if f is None:
        raise InvalidInput("name one or more thread ids")
    if f.empty():
        raise InvalidInput("name thread ids or give a filter (--older-than, --cwd, ...)")
    return select_threads(st.engine, f)


def register(app: typer.Typer) -> None:
    """Add the archive commands to the `rollouts` app."""
    app.add_typer(trash_app, name="trash")

    @app.command()
    def archive(
        ids: Ids = None,
        older_than: Annotated[str | None, typer.Option(help="Not updated for e.g. 30d.")] = None,
        cwd: Annotated[str | None, typer.Option(help="Project folder (and below).")] = None,
        source: Annotated[str | None, typer.Option(help="cli, vscode, exec, ...")] = None,
        provider: Annotated[str | None, typer.Option(help="Model provider.")] = None,
        larger_than: Annotated[str | None, typer.Option(help="e.g. 100MB.")] = None,
        search: Annotated[str | None, typer.Option("--search", "--name")] = None,
        compress: Annotated[bool, typer.Option(help="Write .jsonl.zst (verified).")] = False,
        vault: Annotated[bool, typer.Option(help="Move the bytes into the database.")] = False,
        dry_run: DryRun = False,
        db: DbOpt = None,
        home: HomeOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Archive threads (Codex layout), optionally compressed or into the vault."""
        with cli_store(db, home) as st:
            f = Filters(
                older_than_ms=parse_duration_ms(older_than) if older_than else None,
                cwd=cwd,
                source=source,
                provider=provider,
                larger_than=parse_size(larger_than) if larger_than else None,
                search=search,
                archived=None if (compress or vault) else False,
            )
            chosen = _ids(st, ids, f)
            rep = run_with_progress(
                lambda cb: svc.archive_threads(
                    st, chosen, compress=compress, vault=vault, dry_run=dry_run, on_progress=cb
                ),
                quiet=as_json,
                label="vaulting" if vault else "compressing" if compress else "archiving",
            )
        _print_report(rep.to_json(), as_json)

    @app.command()
    def unarchive(
        ids: Ids = None,
        dry_run: DryRun = False,
        db: DbOpt = None,
        home: HomeOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Move archived (or vaulted) threads back to sessions/YYYY/MM/DD/."""
        with cli_store(db, home) as st:
            chosen = _ids(st, ids)
            rep = run_with_progress(
                lambda cb: svc.unarchive_threads(st, chosen, dry_run=dry_run, on_progress=cb),
                quiet=as_json,
                label="unarchiving",
            )
        _print_report(rep.to_json(), as_json)

    @app.command()
    def restore(
        ids: Ids = None,
        dry_run: DryRun = False,
        db: DbOpt = None,
        home: HomeOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Write vaulted threads back to their files, byte for byte."""
        with cli_store(db, home) as st:
            chosen = _ids(st, ids)
            rep = run_with_progress(
                lambda cb: svc.restore_threads(st, chosen, dry_run=dry_run, on_progress=cb),
                quiet=as_json,
                label="restoring",
            )
        _print_report(rep.to_json(), as_json)

    @app.command()
    def delete(
        ids: Ids = None,
        grace: Annotated[str, typer.Option(help="Days in the trash before purge.")] = "30d",
        dry_run: DryRun = False,
        db: DbOpt = None,
        home: HomeOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Move threads to the trash (restorable until purged)."""
        with cli_store(db, home) as st:
            chosen, grace_ms = _ids(st, ids), parse_duration_ms(grace)
            rep = run_with_progress(
                lambda cb: svc.delete_threads(
                    st, chosen, grace_ms=grace_ms, dry_run=dry_run, on_progress=cb
                ),
                quiet=as_json,
                label="deleting",
            )
        _print_report(rep.to_json(), as_json)

    @app.command()
    def retain(
        keep_newest: Annotated[int | None, typer.Option(help="Keep N newest per cwd.")] = None,
        archive_after: Annotated[str | None, typer.Option()] = None,
        vault_after: Annotated[str | None, typer.Option()] = None,
        purge_trash_after: Annotated[str | None, typer.Option()] = None,
        config: Annotated[Path | None, typer.Option(help="Policy TOML ([retention]).")] = None,
        dry_run: DryRun = False,
        db: DbOpt = None,
        home: HomeOpt = None,
    ) -> None:
        """Apply the retention policy (options override CODEX_HOME/rollouts-retention.toml)."""
        with cli_store(db, home) as st:
            if config is not None:
                p = pol.Policy.load(config, required=True)
            else:
                p = pol.Policy.load(codex_home(home) / pol.POLICY_FILE)
            if keep_newest is not None:
                p.keep_newest = keep_newest
            for name, val in (
                ("archive_after_ms", archive_after),
                ("vault_after_ms", vault_after),
                ("purge_trash_after_ms", purge_trash_after),
            ):
                if val is not None:
                    setattr(p, name, parse_duration_ms(val))
            out = pol.retain(st, p, dry_run=dry_run)
        print_json(out)

    @app.command("log")
    def log_(
        thread: Annotated[str | None, typer.Option(help="Only this thread.")] = None,
        limit: Annotated[int, typer.Option()] = 100,
        db: DbOpt = None,
        home: HomeOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """The audit log of every move, vault, restore and delete."""
        with cli_store(db, home) as st:
            rows = pol.audit_log(st, thread_id=thread, limit=limit)
        if as_json:
            print_json(rows)
            return
        for r in rows:
            print(
                f"{r['at']} {r['op']:9} {r['threadId']} {r['path']} "
                f"{r['bytesBefore']}→{r['bytesAfter']}"
            )

    @app.command()
    def stats(db: DbOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
        """Storage by project, source, month and state; tokens by model and day."""
        with cli_store(db, home) as st:
            out = pol.stats(st)
        if as_json:
            print_json(out)
            return
        for key in ("state", "source", "month", "project"):
            print(f"== {key}")
            for k, v in sorted(out[key].items(), key=lambda kv: -kv[1]["bytes"]):
                print(f"  {v['bytes']:>14,}  {v['files']:>6} files  {k}")
        print(f"== vault {out['vault']}")


@trash_app.command("list")
def trash_list(db: DbOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Deleted threads waiting for purge."""
    with cli_store(db, home) as st:
        rows = tr.trash_list(st)
    if as_json:
        print_json(rows)
        return
    for r in rows:
        print(
            f"{r['threadId']}  {r['size']:>12,}  purge after {r['purgeAfter']}  {r['title'][:60]}"
        )


@trash_app.command("restore")
def trash_restore(
    ids: Annotated[list[str], typer.Argument()],
    db: DbOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Put deleted threads back and index them again."""
    with cli_store(db, home) as st:
        rep = tr.trash_restore(st, resolve_ids(ids))
    _print_report(rep.to_json(), as_json)


@trash_app.command("purge")
def trash_purge(
    ids: Ids = None,
    all_: Annotated[bool, typer.Option("--all", help="Also those still in grace.")] = False,
    dry_run: DryRun = False,
    db: DbOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove trashed threads for good (default: those past their grace period)."""
    with cli_store(db, home) as st:
        rep = tr.trash_purge(
            st, ids=resolve_ids(ids) if ids else None, expired_only=not all_, dry_run=dry_run
        )
    _print_report(rep.to_json(), as_json)
