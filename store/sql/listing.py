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

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    and_,
    bindparam,
    false,
    func,
    literal,
    or_,
    select,
)

from store import codec
from store.api.cursor import format_millis, format_seconds, parse_cursor
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


# A page query is planned in two steps: `_plan` checks the parameters and
# splits them into a *shape* (which clauses the WHERE has) and the values to
# bind; `page_statement` builds one SQLAlchemy statement per shape, with bind
# parameters, and keeps it. Re-using the statement object skips SQLAlchemy's
# statement building and cache-key generation, which otherwise cost more than
# the query itself on a page of 50.
_STATEMENTS: dict[tuple[Any, ...], Any] = {}
_MAX_STATEMENTS = 512


def _plan(q: ListQuery) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """(shape, bind values) of every filter of the query, the cursor included."""
    if q.sort_direction not in ("asc", "desc"):
        raise InvalidInput(f"unknown sortDirection {q.sort_direction!r}: expected asc or desc")
    _sort_columns(q.sort_key)
    archived = None if q.archived is None else bool(q.archived)
    shape: list[Any] = [q.sort_key, q.sort_direction, archived, bool(q.include_empty)]
    values: dict[str, Any] = {}
    # Providers: None = the default one; [] = every provider.
    names = [q.default_provider] if q.model_providers is None else list(q.model_providers)
    if q.model_providers is not None and not names:
        shape.append("providers:any")
    else:
        shape.append(("providers", q.default_provider in names))
        values["providers"] = names
    if not q.source_kinds:
        shape.append("sources:interactive")
    else:
        wanted: set[str] = set()
        for kind in q.source_kinds:
            if kind not in SOURCE_KINDS:
                raise InvalidInput(
                    f"unknown source kind {kind!r}: expected one of {list(SOURCE_KINDS)}"
                )
            wanted.update(_SUBAGENT_KINDS if kind == "subAgent" else (kind,))
        if "unknown" in wanted:
            wanted.add("custom")  # custom sources have no kind of their own in the enum
        shape.append("sources")
        values["kinds"] = sorted(wanted)
    if q.cwd is not None:
        paths = _cwd_paths(q.cwd, q.base_cwd)
        shape.append("cwd" if paths else "cwd:none")
        values["cwds"] = paths
    if q.search_term:
        shape.append("search")
        values["term"] = q.search_term
    if q.excluded_thread_ids:
        if len(q.excluded_thread_ids) > MAX_EXCLUDED:
            raise InvalidInput(f"excludedThreadIds takes at most {MAX_EXCLUDED} ids")
        shape.append("excluded")
        values["excluded"] = [validate_thread_id(x) for x in q.excluded_thread_ids]
    if q.originators:
        shape.append("originators")
        values["originators"] = list(q.originators)
    if q.parent_thread_id is not None and q.ancestor_thread_id is not None:
        raise InvalidInput("parentThreadId and ancestorThreadId are mutually exclusive")
    if q.parent_thread_id is not None:
        shape.append("parent")
        values["lineage"] = _lineage_id(q.parent_thread_id, "parent")
    elif q.ancestor_thread_id is not None:
        shape.append("ancestor")
        values["lineage"] = _lineage_id(q.ancestor_thread_id, "ancestor")
    if q.cursor:
        cur = parse_cursor(q.cursor)
        if cur.thread_id is None:
            # A bare time (Codex's backwardsCursor, or a hand-made one): strictly
            # older (desc) or newer (asc) than that instant.
            shape.append("cursor:time")
            values["cursor_ms"] = cur.ms
        else:
            shape.append("cursor:keyset")
            values["cursor_key"] = cur.ms // 1000 if q.sort_key == "created_at" else cur.ms
            values["cursor_id"] = cur.thread_id
    return tuple(shape), values


def _cwd_paths(cwd: str | Sequence[str], base: str) -> list[str]:
    raw = [cwd] if isinstance(cwd, str) else list(cwd)
    paths = []
    for entry in raw:
        if not isinstance(entry, str) or not entry or "\0" in entry:
            raise InvalidParam("cwd", f"invalid thread/list cwd filter `{entry}`: not a path")
        paths.append(os.path.normpath(os.path.join(base, os.path.expanduser(entry))))
    return paths


def _interactive_clause() -> ColumnElement[bool]:
    custom = [codec.dumps({"custom": name}) for name in _INTERACTIVE_CUSTOM]
    return or_(t.c.source_kind.in_(["cli", "vscode"]), t.c.source.in_(custom))


def _search_clause(dialect: str) -> ColumnElement[bool]:
    """Case-sensitive substring of the name or the preview, as Codex matches titles."""
    term: BindParameter[str] = bindparam("term")
    if dialect == "postgresql":
        return or_(func.strpos(t.c.preview, term) > 0, func.strpos(s.thread_names.c.name, term) > 0)
    return or_(func.instr(t.c.preview, term) > 0, func.instr(s.thread_names.c.name, term) > 0)


def _ancestor_clause() -> ColumnElement[bool]:
    tree = select(t.c.id).where(t.c.parent_thread_id == bindparam("lineage")).cte(recursive=True)
    child = t.alias("child")
    tree = tree.union(select(child.c.id).where(child.c.parent_thread_id == tree.c.id))
    in_tree: ColumnElement[bool] = t.c.id.in_(select(tree.c.id))
    return in_tree


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


def _where(shape: tuple[Any, ...], dialect: str) -> ColumnElement[bool]:
    """The WHERE clause of a planned shape, with bind parameters for its values."""
    sort_key, direction, archived, include_empty = shape[:4]
    conds: list[ColumnElement[bool]] = []
    if archived is not None:
        conds.append(t.c.archived == bool(archived))
    for part in shape[4:]:
        if part == "providers:any":
            continue
        if isinstance(part, tuple):  # ("providers", default provider among them)
            clause: ColumnElement[bool] = t.c.model_provider.in_(
                bindparam("providers", expanding=True)
            )
            # A rollout that names no provider was written with the default one.
            conds.append(or_(clause, t.c.model_provider.is_(None)) if part[1] else clause)
        elif part == "sources:interactive":
            conds.append(_interactive_clause())
        elif part == "sources":
            conds.append(t.c.source_kind.in_(bindparam("kinds", expanding=True)))
        elif part == "cwd":
            conds.append(t.c.cwd.in_(bindparam("cwds", expanding=True)))
        elif part == "cwd:none":
            conds.append(false())
        elif part == "search":
            conds.append(_search_clause(dialect))
        elif part == "excluded":
            conds.append(t.c.id.not_in(bindparam("excluded", expanding=True)))
        elif part == "originators":
            conds.append(t.c.originator.in_(bindparam("originators", expanding=True)))
        elif part == "parent":
            conds.append(t.c.parent_thread_id == bindparam("lineage"))
        elif part == "ancestor":
            conds.append(_ancestor_clause())
        elif part == "cursor:time":
            _, precise = _sort_columns(sort_key)
            ms: BindParameter[int] = bindparam("cursor_ms")
            conds.append(precise < ms if direction == "desc" else precise > ms)
        elif part == "cursor:keyset":
            key, _ = _sort_columns(sort_key)
            value: BindParameter[int] = bindparam("cursor_key")
            tid: BindParameter[str] = bindparam("cursor_id")
            # The plain range bound first: it is what lets both databases start
            # the index scan at the cursor instead of at the top of the index.
            if direction == "desc":
                conds.append(key <= value)
                conds.append(or_(key < value, and_(key == value, t.c.id < tid)))
            else:
                conds.append(key >= value)
                conds.append(or_(key > value, and_(key == value, t.c.id > tid)))
    if not include_empty:
        # Codex lists a thread only once it has a preview (a first user message).
        conds.append(t.c.preview != "")
    return and_(literal(True), *conds)


def page_statement(q: ListQuery, dialect: str, base: Any, limit: int) -> tuple[Any, dict[str, Any]]:
    """The statement for one page (`base` filtered, ordered, limited) and its bind values.

    `base` is a select of the threads table (and joins); the statement is
    built once per (base, dialect, shape, limit) and re-used.
    """
    shape, values = _plan(q)
    key = (id(base), dialect, shape, limit)
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        if len(_STATEMENTS) >= _MAX_STATEMENTS:
            _STATEMENTS.clear()
        stmt = base.where(_where(shape, dialect)).order_by(*order_by(q)).limit(limit)
        _STATEMENTS[key] = stmt
    return stmt, values


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
