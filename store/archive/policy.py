"""Retention policy, storage statistics and the audit log."""

from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from store import codec
from store.archive import tables as t
from store.archive.select import parse_duration_ms
from store.archive.service import HasEngine, Report, archive_threads
from store.archive.trash import trash_purge
from store.clock import now_ms
from store.errors import InvalidInput
from store.sql import schema as s

POLICY_FILE = "rollouts-retention.toml"


@dataclass
class Policy:
    """Keep the newest N threads per cwd; archive, vault and purge by age (ms)."""

    keep_newest: int | None = None
    archive_after_ms: int | None = None
    vault_after_ms: int | None = None
    purge_trash_after_ms: int | None = None
    compress: bool = True

    @staticmethod
    def load(path: Path, *, required: bool = False) -> Policy:
        """Read `[retention]` from a TOML file; a missing file is an empty policy
        unless `required` (a file the user named)."""
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh).get("retention", {})
        except FileNotFoundError:
            if required:
                raise InvalidInput(f"no such policy file: {path}") from None
            return Policy()
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"{path}: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidInput(f"{path}: [retention] must be a table")

        def dur(key: str) -> int | None:
            v = data.get(key)
            return None if v is None else parse_duration_ms(str(v))

        keep = data.get("keep_newest")
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 0):
            raise InvalidInput(f"{path}: keep_newest must be a whole number >= 0, not {keep!r}")
        compress = data.get("compress", True)
        if not isinstance(compress, bool):
            raise InvalidInput(f"{path}: compress must be true or false, not {compress!r}")
        return Policy(
            keep_newest=keep,
            archive_after_ms=dur("archive_after"),
            vault_after_ms=dur("vault_after"),
            purge_trash_after_ms=dur("purge_trash_after"),
            compress=compress,
        )


def _candidates(store: HasEngine, policy: Policy, older_ms: int, archived: bool) -> list[str]:
    """Threads older than `older_ms`, except the newest N of each cwd."""
    now = now_ms()
    th = s.threads
    seen: dict[str, int] = {}
    out = []
    with store.engine.connect() as conn:
        vaulted = set(conn.execute(select(t.vault.c.thread_id)).scalars())
        rows = conn.execute(  # streamed: one thread row at a time
            select(th.c.id, th.c.cwd, th.c.updated_at_ms, th.c.archived).order_by(
                th.c.cwd, th.c.updated_at_ms.desc(), th.c.id.desc()
            )
        )
        for tid, cwd, updated, is_archived in rows:
            seen[cwd] = seen.get(cwd, 0) + 1
            if policy.keep_newest is not None and seen[cwd] <= policy.keep_newest:
                continue
            if updated < now - older_ms and bool(is_archived) == archived and tid not in vaulted:
                out.append(str(tid))
    return out


def retain(store: HasEngine, policy: Policy, *, dry_run: bool = False) -> dict[str, Any]:
    """Apply `policy`: archive, then vault, then purge the trash."""
    out: dict[str, Any] = {}
    if policy.archive_after_ms is not None:
        ids = _candidates(store, policy, policy.archive_after_ms, archived=False)
        out["archive"] = archive_threads(
            store, ids, compress=policy.compress, dry_run=dry_run
        ).to_json()
    if policy.vault_after_ms is not None:
        ids = _candidates(store, policy, policy.vault_after_ms, archived=True)
        if dry_run and policy.archive_after_ms is not None:
            ids += _candidates(store, policy, policy.vault_after_ms, archived=False)
        out["vault"] = archive_threads(store, ids, vault=True, dry_run=dry_run).to_json()
    if policy.purge_trash_after_ms is not None:
        cutoff = now_ms() - policy.purge_trash_after_ms
        with store.engine.connect() as conn:
            ids = list(
                conn.execute(
                    select(t.trash.c.thread_id).where(t.trash.c.deleted_at_ms <= cutoff).distinct()
                ).scalars()
            )
        rep = trash_purge(store, ids=ids, dry_run=dry_run) if ids else Report(dry_run=dry_run)
        out["purge"] = rep.to_json()
    return out


def audit_log(
    store: HasEngine, *, thread_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest audit entries: every move, vault, restore, delete and purge."""
    q = select(t.audit).order_by(t.audit.c.id.desc()).limit(limit)
    if thread_id:
        q = q.where(t.audit.c.thread_id == thread_id)
    with store.engine.connect() as conn:
        return [
            {
                "at": r["at_ms"] // 1000,
                "op": r["op"],
                "threadId": r["thread_id"],
                "path": r["path"],
                "bytesBefore": r["bytes_before"],
                "bytesAfter": r["bytes_after"],
                "detail": codec.loads(r["detail"]),
            }
            for r in conn.execute(q).mappings()
        ]


def _state(archived: Any, compressed: Any, vaulted: Any) -> Any:
    from sqlalchemy import case

    return case(
        (vaulted.is_not(None), "vaulted"),
        (compressed.is_(True), "compressed"),
        (archived.is_(True), "archived"),
        else_="active",
    )


def stats(store: HasEngine) -> dict[str, Any]:
    """Storage by project, source, month and state; tokens by model and day."""
    f, th = s.rollout_files, s.threads
    state = _state(f.c.archived, f.c.compressed, t.vault.c.file_id).label("state")
    base = select(f.c.size, th.c.cwd, th.c.source_kind, th.c.created_at_ms, state).select_from(
        f.join(th, th.c.id == f.c.thread_id).outerjoin(t.vault, t.vault.c.file_id == f.c.id)
    )
    by: dict[str, dict[str, dict[str, int]]] = {
        "project": {},
        "source": {},
        "month": {},
        "state": {},
    }
    with store.engine.connect() as conn:
        for size, cwd, source, created, st in conn.execute(base):
            m = time.strftime("%Y-%m", time.gmtime(created / 1000))
            for key, val in (("project", cwd), ("source", source), ("month", m), ("state", st)):
                slot = by[key].setdefault(val or "", {"files": 0, "bytes": 0})
                slot["files"] += 1
                slot["bytes"] += int(size)
        trash_n, trash_b = conn.execute(
            select(func.count(), func.coalesce(func.sum(t.trash.c.size), 0))
        ).one()
        by["state"]["trash"] = {"files": int(trash_n), "bytes": int(trash_b)}
        tokens: dict[str, dict[str, int]] = {}
        for model, created, total in conn.execute(
            select(th.c.model, th.c.created_at_ms, th.c.tokens_total)
        ):
            day = time.strftime("%Y-%m-%d", time.gmtime(created / 1000))
            key = f"{model or ''}\t{day}"
            tokens.setdefault(key, {"threads": 0, "tokens": 0})
            tokens[key]["threads"] += 1
            tokens[key]["tokens"] += int(total or 0)
        from store.archive.vault import totals

        vault_totals = totals(conn)
    return {
        **by,
        "tokens": [
            {"model": k.split("\t")[0], "day": k.split("\t")[1], **v}
            for k, v in sorted(tokens.items())
        ],
        "vault": vault_totals,
    }
