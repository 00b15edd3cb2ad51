"""The trash: deleted threads wait here for their grace period, then are purged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from store.archive import journal
from store.archive import tables as t
from store.archive.journal import Plan, Step
from store.archive.service import HasEngine, Report, finish
from store.clock import now_ms
from store.errors import Conflict, RolloutsError
from store.sql import schema as s


def _rows(engine: Engine, where: Any = True) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                select(t.trash, s.roots.c.path.label("root"))
                .join(s.roots, s.roots.c.id == t.trash.c.root_id)
                .where(where)
                .order_by(t.trash.c.deleted_at_ms, t.trash.c.id)
            ).mappings()
        ]


def trash_list(store: HasEngine) -> list[dict[str, Any]]:
    """Deleted threads still in the trash, oldest first."""
    return [
        {
            "threadId": r["thread_id"],
            "title": r["title"],
            "cwd": r["cwd"],
            "path": str(Path(r["root"]) / r["rel_path"]),
            "inVault": r["blob_id"] is not None,
            "size": r["size"],
            "deletedAt": r["deleted_at_ms"] // 1000,
            "purgeAfter": r["purge_after_ms"] // 1000,
        }
        for r in _rows(store.engine)
    ]


def _by_thread(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["thread_id"], []).append(r)
    return out


def _run(
    store: HasEngine,
    groups: dict[str, list[dict[str, Any]]],
    make: Callable[[dict[str, Any]], Step],
    op: str,
    dry_run: bool,
) -> Report:
    engine = store.engine
    report = Report(dry_run=dry_run)
    if not dry_run:
        report.recovered = journal.recover(engine)
    plans: list[Plan] = []
    for tid, rows in groups.items():
        plan = Plan(op, tid, rows[0]["root"], rows[0]["root_id"], [make(r) for r in rows])
        if not dry_run and op == "untrash":
            try:
                _check_free(engine, plan)
            except RolloutsError as exc:
                report.skip(tid, exc)
                continue
        plans.append(plan)
    return finish(engine, report, plans, dry_run=dry_run, action=op)


def _check_free(engine: Engine, plan: Plan) -> None:
    with engine.connect() as conn:
        if conn.execute(select(s.threads.c.id).where(s.threads.c.id == plan.thread_id)).first():
            raise Conflict("a thread with this id exists again; delete it first")
    for st in plan.steps:
        if (Path(plan.root) / st.dst).exists():
            raise Conflict(f"{Path(plan.root) / st.dst} is in the way")


def trash_restore(store: HasEngine, ids: list[str], *, dry_run: bool = False) -> Report:
    """Put deleted threads back where they were and index them again."""
    rows = _rows(store.engine, t.trash.c.thread_id.in_(ids))

    def make(r: dict[str, Any]) -> Step:
        if r["blob_id"] is not None:
            return Step(
                "untrash_vault",
                None,
                "",
                r["rel_path"],
                r["size"],
                r["mtime_ns"],
                blob_id=r["blob_id"],
                trash_id=r["id"],
            )
        return Step(
            "untrash",
            None,
            r["trash_rel"],
            r["rel_path"],
            r["size"],
            r["mtime_ns"],
            trash_id=r["id"],
        )

    report = _run(store, _by_thread(rows), make, "untrash", dry_run)
    found = {r["thread_id"] for r in rows}
    report.skipped += [{"threadId": i, "reason": "not in the trash"} for i in ids if i not in found]
    return report


def trash_purge(
    store: HasEngine,
    *,
    ids: list[str] | None = None,
    expired_only: bool = True,
    dry_run: bool = False,
) -> Report:
    """Remove trashed threads for good: by id, else those past their grace period."""
    where: Any = True
    if ids:
        where = t.trash.c.thread_id.in_(ids)
    elif expired_only:
        where = t.trash.c.purge_after_ms <= now_ms()
    rows = _rows(store.engine, where)

    def make(r: dict[str, Any]) -> Step:
        return Step(
            "purge",
            None,
            r["trash_rel"] or "",
            "",
            r["size"],
            0,
            blob_id=r["blob_id"],
            trash_id=r["id"],
        )

    return _run(store, _by_thread(rows), make, "purge", dry_run)
