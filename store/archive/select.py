"""Choosing threads for the archive service: ids, or filters over the index."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from sqlalchemy import Engine, and_, func, or_, select

from store.errors import InvalidInput
from store.rollout.naming import validate_thread_id
from store.sql import schema as s

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w|y)?\s*$", re.I)
_DUR_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.I)


def parse_duration_ms(text: str) -> int:
    """'30d', '12h', '2w', '90' (days) → milliseconds."""
    m = _DURATION.match(text)
    if not m:
        raise InvalidInput(f"not a duration: {text!r} (use e.g. 30d, 12h, 2w)")
    unit = (m.group(2) or "d").lower()
    return int(float(m.group(1)) * _DUR_UNITS[unit] * 1000)


def parse_size(text: str) -> int:
    """'100MB', '2GiB', '500k', '1024' → bytes."""
    m = _SIZE.match(text)
    if not m:
        raise InvalidInput(f"not a size: {text!r} (use e.g. 100MB, 2GiB)")
    unit = (m.group(2) or "").lower()
    base = 1024 if "i" in unit else 1000
    power = {"k": 1, "m": 2, "g": 3, "t": 4}.get(unit[:1], 0)
    return int(float(m.group(1)) * base**power)


@dataclass
class Filters:
    """What to select; every given filter must match (AND)."""

    older_than_ms: int | None = None  # last update older than now - this
    cwd: str | None = None  # the folder or anything below it
    source: str | None = None  # thread source kind (cli, vscode, exec, subAgent, ...)
    provider: str | None = None
    larger_than: int | None = None  # bytes of the thread's files
    search: str | None = None  # substring of name, preview or first message
    archived: bool | None = None

    def empty(self) -> bool:
        return all(
            v is None
            for v in (
                self.older_than_ms,
                self.cwd,
                self.source,
                self.provider,
                self.larger_than,
                self.search,
            )
        )


def resolve_ids(ids: list[str]) -> list[str]:
    out: list[str] = []
    for i in ids:
        tid = validate_thread_id(i)
        if tid not in out:
            out.append(tid)
    return out


def select_threads(engine: Engine, f: Filters, *, now_ms: int | None = None) -> list[str]:
    """Ids of the threads matching `f`, oldest first."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    th = s.threads
    conds = []
    if f.older_than_ms is not None:
        conds.append(th.c.updated_at_ms < now - f.older_than_ms)
    if f.cwd is not None:
        base = f.cwd.rstrip("/") or "/"
        conds.append(or_(th.c.cwd == base, th.c.cwd.startswith(base.rstrip("/") + "/")))
    if f.source is not None:
        conds.append(th.c.source_kind == f.source)
    if f.provider is not None:
        conds.append(func.coalesce(th.c.model_provider, "") == f.provider)
    if f.archived is not None:
        conds.append(th.c.archived == f.archived)
    if f.search:
        like = f"%{f.search.lower()}%"
        conds.append(
            or_(
                func.lower(th.c.preview).like(like),
                func.lower(th.c.first_user_message).like(like),
                th.c.id.in_(
                    select(s.thread_names.c.thread_id).where(
                        func.lower(s.thread_names.c.name).like(like)
                    )
                ),
            )
        )
    if f.larger_than is not None:
        sizes = (
            select(s.rollout_files.c.thread_id)
            .group_by(s.rollout_files.c.thread_id)
            .having(func.sum(s.rollout_files.c.size) > f.larger_than)
        )
        conds.append(th.c.id.in_(sizes))
    q = select(th.c.id).where(and_(True, *conds)).order_by(th.c.updated_at_ms, th.c.id)
    with engine.connect() as conn:
        return [str(r) for r in conn.execute(q).scalars()]
