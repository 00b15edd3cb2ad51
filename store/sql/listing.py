"""`thread/list` as SQL: Codex's filters and defaults, keyset pagination.

Semantics follow the Codex 0.169 app-server (docs/codex-thread-api.md 6.4),
with the documented improvements: pages are keyset positions on
`(sort value, thread id)`, and a thread is listed once even when it has
revert segment files (Codex lists every segment file as its own entry).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, literal, or_, select, true

from store import codec
from store.api.cursor import Cursor, format_millis, format_seconds, parse_cursor
from store.errors import InvalidInput, InvalidParam
from store.rollout.naming import validate_thread_id
from store.sql import schema as s

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
MAX_EXCLUDED = 100
SORT_KEYS = ("created_at", "updated_at", "recency_at")
SOURCE_KINDS = (
    "cli",
    "vscode",
    "exec",
    "appServer",
    "subAgent",
    "subAgentReview",
    "subAgentCompact",
    "subAgentThreadSpawn",
    "subAgentOther",
    "unknown",
)
_SUBAGENT_KINDS = ("subAgentReview", "subAgentCompact", "subAgentThreadSpawn", "subAgentOther")
# Codex's "interactive" sources, listed when sourceKinds is omitted or empty.
_INTERACTIVE_CUSTOM = ("atlas", "chatgpt")

t = s.threads


@dataclass
class ListQuery:
    """The parameters of one `thread/list` page, with Codex's defaults.

    `model_providers=None` means "the default provider only" and `source_kinds`
    empty or None means "interactive sources only", as in Codex. `archived=None`
    (a library extension) lists archived and active threads together.
    """

    cursor: str | None = None
    limit: int | None = None
    sort_key: str = "created_at"
    sort_direction: str = "desc"
    model_providers: Sequence[str] | None = None
    source_kinds: Sequence[str] | None = None
    archived: bool | None = False
    cwd: str | Sequence[str] | None = None
    search_term: str | None = None
    excluded_thread_ids: Sequence[str] | None = None
    originators: Sequence[str] | None = None
    parent_thread_id: str | None = None
    ancestor_thread_id: str | None = None
    include_empty: bool = False  # threads without a first user message (Codex hides them)
    default_provider: str = "openai"
    base_cwd: str = field(default_factory=os.getcwd)


def clamp_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    return max(1, min(MAX_LIMIT, limit))


def _source_clause(kinds: Sequence[str] | None) -> ColumnElement[bool]:
    if not kinds:
        custom = [codec.dumps({"custom": name}) for name in _INTERACTIVE_CUSTOM]
        return or_(t.c.source_kind.in_(["cli", "vscode"]), t.c.source.in_(custom))
    wanted: set[str] = set()
    for kind in kinds:
        if kind not in SOURCE_KINDS:
            raise InvalidInput(
                f"unknown source kind {kind!r}: expected one of {list(SOURCE_KINDS)}"
            )
        wanted.update(_SUBAGENT_KINDS if kind == "subAgent" else (kind,))
    if "unknown" in wanted:
        wanted.add("custom")  # custom sources have no kind of their own in the enum
    return t.c.source_kind.in_(sorted(wanted))


def _provider_clause(providers: Sequence[str] | None, default: str) -> ColumnElement[bool]:
    names = [default] if providers is None else list(providers)
    if providers is not None and not names:
        return true()
    clause: ColumnElement[bool] = t.c.model_provider.in_(names)
    if default in names:
        # A rollout that names no provider was written with the default one.
        clause = or_(clause, t.c.model_provider.is_(None))
    return clause


def _cwd_clause(cwd: str | Sequence[str], base: str) -> ColumnElement[bool]:
    raw = [cwd] if isinstance(cwd, str) else list(cwd)
    if not raw:
        return false()
    paths = []
    for entry in raw:
        if not isinstance(entry, str) or not entry or "\0" in entry:
            raise InvalidParam("cwd", f"invalid thread/list cwd filter `{entry}`: not a path")
        paths.append(os.path.normpath(os.path.join(base, os.path.expanduser(entry))))
    return t.c.cwd.in_(paths)


def _search_clause(term: str, dialect: str) -> ColumnElement[bool]:
    """Case-sensitive substring of the name or the preview, as Codex matches titles."""
    if dialect == "postgresql":
        return or_(func.strpos(t.c.preview, term) > 0, func.strpos(s.thread_names.c.name, term) > 0)
    return or_(func.instr(t.c.preview, term) > 0, func.instr(s.thread_names.c.name, term) > 0)


def _lineage_clause(q: ListQuery) -> ColumnElement[bool] | None:
    if q.parent_thread_id is not None and q.ancestor_thread_id is not None:
        raise InvalidInput("parentThreadId and ancestorThreadId are mutually exclusive")
    if q.parent_thread_id is not None:
        parent = _lineage_id(q.parent_thread_id, "parent")
        return t.c.parent_thread_id == parent
    if q.ancestor_thread_id is not None:
        ancestor = _lineage_id(q.ancestor_thread_id, "ancestor")
        tree = select(t.c.id).where(t.c.parent_thread_id == ancestor).cte(recursive=True)
        child = t.alias("child")
        tree = tree.union(select(child.c.id).where(child.c.parent_thread_id == tree.c.id))
        in_tree: ColumnElement[bool] = t.c.id.in_(select(tree.c.id))
        return in_tree
    return None


def _lineage_id(value: str, what: str) -> str:
    try:
        return validate_thread_id(value)
    except InvalidInput as exc:
        raise InvalidInput(f"invalid {what} thread id: {exc}") from None


def _sort_columns(sort_key: str) -> tuple[Any, Any]:
    """(keyset column, precise millisecond column) of a sort key."""
    if sort_key == "created_at":
        return t.c.created_at_s, t.c.created_at_ms
    if sort_key == "updated_at":
        return t.c.updated_at_ms, t.c.updated_at_ms
    if sort_key == "recency_at":
        return t.c.recency_at_ms, t.c.recency_at_ms
    raise InvalidInput(f"unknown sortKey {sort_key!r}: expected one of {list(SORT_KEYS)}")


def _cursor_clause(q: ListQuery, cur: Cursor, desc: bool) -> ColumnElement[bool]:
    key, precise = _sort_columns(q.sort_key)
    if cur.thread_id is None:
        # A bare time (Codex's backwardsCursor, or a hand-made one): strictly
        # older (desc) or newer (asc) than that instant.
        bound: ColumnElement[bool] = precise < cur.ms if desc else precise > cur.ms
        return bound
    value = cur.ms // 1000 if q.sort_key == "created_at" else cur.ms
    if desc:
        return or_(key < value, and_(key == value, t.c.id < cur.thread_id))
    return or_(key > value, and_(key == value, t.c.id > cur.thread_id))


def where_clause(q: ListQuery, dialect: str) -> ColumnElement[bool]:
    """Every filter of the query, the cursor included."""
    if q.sort_direction not in ("asc", "desc"):
        raise InvalidInput(f"unknown sortDirection {q.sort_direction!r}: expected asc or desc")
    conds: list[ColumnElement[bool]] = []
    if q.archived is not None:
        conds.append(t.c.archived == bool(q.archived))
    conds.append(_provider_clause(q.model_providers, q.default_provider))
    conds.append(_source_clause(q.source_kinds))
    if q.cwd is not None:
        conds.append(_cwd_clause(q.cwd, q.base_cwd))
    if q.search_term:
        conds.append(_search_clause(q.search_term, dialect))
    if q.excluded_thread_ids:
        if len(q.excluded_thread_ids) > MAX_EXCLUDED:
            raise InvalidInput(f"excludedThreadIds takes at most {MAX_EXCLUDED} ids")
        conds.append(t.c.id.not_in([validate_thread_id(x) for x in q.excluded_thread_ids]))
    if q.originators:
        conds.append(t.c.originator.in_(list(q.originators)))
    lineage = _lineage_clause(q)
    if lineage is not None:
        conds.append(lineage)
    if not q.include_empty:
        # Codex lists a thread only once it has a preview (a first user message).
        conds.append(t.c.preview != "")
    if q.cursor:
        conds.append(_cursor_clause(q, parse_cursor(q.cursor), q.sort_direction == "desc"))
    return and_(literal(True), *conds)


def order_by(q: ListQuery) -> list[Any]:
    key, _ = _sort_columns(q.sort_key)
    if q.sort_direction == "asc":
        return [key.asc(), t.c.id.asc()]
    return [key.desc(), t.c.id.desc()]


def next_cursor(q: ListQuery, last: dict[str, Any]) -> str:
    """Codex's cursor for the page after `last`: its sort time and its id."""
    if q.sort_key == "created_at":
        return f"{format_seconds(last['created_at_s'] * 1000)}|{last['id']}"
    ms = last["updated_at_ms"] if q.sort_key == "updated_at" else last["recency_at_ms"]
    return f"{format_millis(ms)}|{last['id']}"


def backwards_cursor(q: ListQuery, first: dict[str, Any]) -> str:
    """Codex's delta-sync cursor: the first item's time, 1 ms towards the page.

    Passed back with the opposite sortDirection it lists that first item and
    everything after it.
    """
    _, precise = _sort_columns(q.sort_key)
    ms = first[precise.name]
    return format_millis(ms - 1 if q.sort_direction == "desc" else ms + 1, always_fraction=True)
