"""The SQLAlchemy backend (SQLite and PostgreSQL) of the thread store."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from store import codec
from store.errors import Conflict, InvalidCursor, InvalidInput, NotFound, WrongState
from store.ingest import IngestSummary, ProgressFn, ingest
from store.rollout.framing import DEFAULT_MAX_LINE_BYTES, read_chunks
from store.rollout.naming import validate_thread_id
from store.rows import is_visible_turn
from store.search import SearchFilters, SearchPage
from store.search import api as search_api
from store.search import schema as search_schema
from store.sql import history, listing, migrate, mutations, pages
from store.sql import schema as s
from store.sql.engine import make_engine, read_connection, snapshot_connection, write_tx
from store.sql.listing import ListQuery, clamp_limit
from store.wire import session_response, thread_json, turn_json

LINEAGE_MAX_DEPTH = 1000  # a fork chain longer than this is cut (it would be a cycle)


class SqlThreadStore:
    """Threads indexed in a SQL database (SQLite or PostgreSQL)."""

    def __init__(
        self,
        url: str,
        *,
        auto_upgrade: bool = False,
        default_provider: str = "openai",
        engine: Engine | None = None,
        codex_home: Path | None = None,
    ) -> None:
        self.url = url
        self.codex_home = codex_home
        self.engine = engine or make_engine(url)
        self.default_provider = default_provider
        try:
            migrate.ensure_current(
                self.engine, auto_upgrade=auto_upgrade, url_for_message=_safe(url)
            )
        except BaseException:
            # A refused store must not leave pooled connections behind.
            if engine is None:
                self.engine.dispose()
            raise

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> SqlThreadStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ingest -------------------------------------------------------------------

    def ingest(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        workers: int | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        on_progress: ProgressFn | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> IngestSummary:
        """Index rollout files (CODEX_HOMEs, session folders or files).

        `stop()` is asked between threads: when True, the import writes what it
        has read and returns early (the next import reads the rest).
        """
        return ingest(
            self.engine,
            [Path(p) for p in paths],
            workers=workers,
            max_line_bytes=max_line_bytes,
            on_progress=on_progress,
            stop=stop,
        )

    # -- reading ------------------------------------------------------------------

    def _thread_rows(self, where: Any, order: Any, limit: int | None) -> list[dict[str, Any]]:
        q = _THREAD_PAGE.where(where).order_by(*order)
        if limit is not None:
            q = q.limit(limit)
        return self._fetch_rows(q, {})

    def _fetch_rows(self, stmt: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
        with read_connection(self.engine) as conn:
            result = conn.execute(stmt, values)
            keys = list(result.keys())
            return [dict(zip(keys, r, strict=True)) for r in result.all()]

    def _to_json(
        self, row: dict[str, Any], turns: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        root, rel = row["_root"], row["_rel"]
        # Stored roots are absolute and normalized, rel paths relative: a plain join.
        path = f"{root.rstrip('/')}/{rel}" if root and rel else None
        if row["_o_set"]:
            for col in ("git_sha", "git_branch", "git_origin_url"):
                if row[f"_o_{col}_set"]:
                    row[col] = row[f"_o_{col}"]
        return thread_json(
            row, name=row["_name"], path=path, default_provider=self.default_provider, turns=turns
        )

    def get_thread(self, thread_id: str, *, include_turns: bool = False) -> dict[str, Any]:
        """The app-server `Thread` of one thread (`turns` filled on request)."""
        tid = validate_thread_id(thread_id)
        rows = self._thread_rows(s.threads.c.id == tid, [s.threads.c.id], 1)
        if not rows:
            raise NotFound(f"thread not found: {tid}")
        turns = self.list_turns(tid) if include_turns else None
        return self._to_json(rows[0], turns)

    def list_threads(self, query: ListQuery | None = None, **params: Any) -> dict[str, Any]:
        """A page of threads: `{"data": [Thread], "nextCursor", "backwardsCursor"}`.

        Takes a `ListQuery` or its fields as keywords (`cursor`, `limit`,
        `sort_key`, `sort_direction`, `model_providers`, `source_kinds`,
        `archived`, `cwd`, `search_term`, ...), with Codex's thread/list
        defaults. Keyset pagination on (sort value, id): threads that share a
        timestamp are never skipped or repeated, and cursors stay valid as
        threads arrive.
        """
        q = query or ListQuery(**params)
        if query is None and "default_provider" not in params:
            q.default_provider = self.default_provider
        n = clamp_limit(q.limit)
        stmt, values = listing.page_statement(q, self.engine.dialect.name, _THREAD_PAGE, n + 1)
        rows = self._fetch_rows(stmt, values)
        more = len(rows) > n
        rows = rows[:n]
        return {
            "data": [self._to_json(r) for r in rows],
            "nextCursor": listing.next_cursor(q, rows[-1]) if more else None,
            "backwardsCursor": listing.backwards_cursor(q, rows[0]) if rows else None,
        }

    def lineage(self, thread_id: str) -> dict[str, Any]:
        """A thread's forks: `{"thread", "ancestors", "descendants", "missingAncestorId"}`.

        `ancestors` runs from the thread's source (`forkedFromId`) up to the
        first thread that is not a fork; `missingAncestorId` names a source
        that is not in the store (deleted or never imported), where the walk
        stops. `descendants` holds every fork of a fork below the thread,
        oldest first; their `forkedFromId` gives the tree.
        """
        t = s.threads
        thread = self.get_thread(thread_id)
        ancestors: list[dict[str, Any]] = []
        seen = {thread["id"]}
        missing: str | None = None
        parent = thread["forkedFromId"]
        while parent is not None and parent not in seen and len(seen) <= LINEAGE_MAX_DEPTH:
            seen.add(parent)
            rows = self._thread_rows(t.c.id == parent, [t.c.id], 1)
            if not rows:
                missing = parent
                break
            ancestors.append(self._to_json(rows[0]))
            parent = ancestors[-1]["forkedFromId"]
        tree = select(t.c.id).where(t.c.forked_from_id == thread["id"]).cte(recursive=True)
        child = t.alias("child")
        tree = tree.union(select(child.c.id).where(child.c.forked_from_id == tree.c.id))
        rows = self._thread_rows(
            t.c.id.in_(select(tree.c.id)) & (t.c.id != thread["id"]),
            [t.c.created_at_ms, t.c.id],
            None,
        )
        return {
            "thread": thread,
            "ancestors": ancestors,
            "descendants": [self._to_json(r) for r in rows],
            "missingAncestorId": missing,
        }

    def list_turns(self, thread_id: str) -> list[dict[str, Any]]:
        """Every turn of a thread with its items, in order (app-server `Turn`s)."""
        tid = validate_thread_id(thread_id)
        with snapshot_connection(self.engine) as conn:
            segs = history.segments(conn, tid)
            if not segs:
                raise NotFound(f"thread not found: {tid}")
            turn_rows = history.turn_rows(conn, tid, segs)
            by_turn: dict[int, list[dict[str, Any]]] = {}
            for pos, data in conn.execute(
                select(s.items.c.turn_position, s.items.c.data)
                .where(history.items_where(segs))
                .order_by(s.items.c.position)
            ):
                by_turn.setdefault(pos, []).append(codec.loads(data))
        out = []
        for r in turn_rows:
            items = by_turn.get(r["position"], [])
            if is_visible_turn(
                r["status"], r["is_open"], r["explicit"], r["saw_compaction"], len(items)
            ):
                out.append(turn_json(r, items))
        return out

    def list_items(self, thread_id: str, turn_id: str | None = None) -> list[dict[str, Any]]:
        """Items of a thread (or of one of its turns), in order."""
        turns = self.list_turns(thread_id)
        return [item for t in turns if turn_id is None or t["id"] == turn_id for item in t["items"]]

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                "threads": conn.execute(select(func.count()).select_from(s.threads)).scalar_one(),
                "turns": conn.execute(select(func.count()).select_from(s.turns)).scalar_one(),
                "items": conn.execute(select(func.count()).select_from(s.items)).scalar_one(),
                "files": conn.execute(
                    select(func.count()).select_from(s.rollout_files)
                ).scalar_one(),
            }

    def skipped_lines(self, thread_id: str | None = None) -> list[dict[str, Any]]:
        """Lines that could not be indexed: file, line, byte offset, reason."""
        q = (
            select(
                s.roots.c.path,
                s.rollout_files.c.rel_path,
                s.rollout_files.c.thread_id,
                s.skipped_lines.c.line,
                s.skipped_lines.c.byte_offset,
                s.skipped_lines.c.length,
                s.skipped_lines.c.reason,
            )
            .join(s.rollout_files, s.rollout_files.c.id == s.skipped_lines.c.file_id)
            .join(s.roots, s.roots.c.id == s.rollout_files.c.root_id)
            .order_by(s.rollout_files.c.id, s.skipped_lines.c.line)
        )
        if thread_id is not None:
            q = q.where(s.rollout_files.c.thread_id == validate_thread_id(thread_id))
        with self.engine.connect() as conn:
            return [
                {
                    "path": str(Path(r[0]) / r[1]),
                    "threadId": r[2],
                    "line": r[3] + 1,
                    "byteOffset": r[4],
                    "length": r[5],
                    "reason": r[6],
                }
                for r in conn.execute(q)
            ]

    # -- search -------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        substring: bool = False,
        filters: SearchFilters | None = None,
        sort: str = "relevance",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> SearchPage:
        """Items matching `query` (word syntax, or a literal with `substring`)."""
        return search_api.search(
            self.engine,
            query,
            substring=substring,
            filters=filters,
            sort=sort,
            limit=limit,
            cursor=cursor,
            default_provider=self.default_provider,
        )

    def reindex(self) -> None:
        """Rebuild the search index from the stored items."""
        with write_tx(self.engine) as conn:
            search_schema.reindex(conn)

    # -- export -------------------------------------------------------------------

    def main_file(self, thread_id: str) -> Path:
        """The thread's main rollout file (not a revert segment), on disk."""
        tid = validate_thread_id(thread_id)
        path = mutations.thread_file(self, tid, missing=f"thread not found: {tid}").path
        if not path.exists():
            raise NotFound(f"rollout file of thread {tid} is gone: {path} (run `rollouts import`)")
        return path

    def export(self, thread_id: str) -> Iterator[bytes]:
        """The original JSONL bytes of the thread's main rollout file, in chunks.

        The id and the file are checked now, not at the first chunk, so a
        caller learns of a bad id before it creates an output file.
        """
        return read_chunks(self.main_file(thread_id))

    # -- pages of turns and items (thread/turns/list, thread/items/list) ---------------

    def _require_history(self, conn: Any, tid: str) -> list[history.Segment]:
        """Where the thread's history is stored (see store.sql.history); NotFound if nowhere."""
        segs = history.segments(conn, tid)
        if not segs:
            raise NotFound(f"thread not loaded: {tid}")
        return segs

    def list_turns_page(
        self,
        thread_id: str,
        *,
        cursor: str | None = None,
        limit: int | None = None,
        sort_direction: str = "desc",
        items_view: str = "summary",
    ) -> dict[str, Any]:
        """`thread/turns/list`: a page of turns, newest first by default.

        Cursors are Codex's JSON strings `{"turnId": ..., "includeAnchor": bool}`.
        `items_view`: `full`, `summary` (first user message and last agent
        message of each turn) or `notLoaded` (no items).
        """
        tid = validate_thread_id(thread_id)
        if sort_direction not in ("asc", "desc"):
            raise InvalidInput(f"unknown sortDirection {sort_direction!r}: expected asc or desc")
        if items_view not in ("full", "summary", "notLoaded"):
            raise InvalidInput(f"unknown itemsView {items_view!r}: full, summary or notLoaded")
        n = clamp_limit(limit)
        with snapshot_connection(self.engine) as conn:
            segs = self._require_history(conn, tid)
            turns = pages.visible_turns(conn, tid, segs)
            if sort_direction == "desc":
                turns.reverse()
            start = 0
            if cursor:
                anchor, include = pages.decode_turn_cursor(cursor)
                idx = next((i for i, r in enumerate(turns) if r["turn_id"] == anchor), None)
                if idx is None:
                    raise InvalidCursor(f"invalid cursor: {cursor}")
                start = idx if include else idx + 1
            page = turns[start : start + n]
            more = start + n < len(turns)
            items: dict[int, list[dict[str, Any]]] = {}
            if page and items_view != "notLoaded":
                positions = [r["position"] for r in page]
                for pos, data in conn.execute(
                    select(s.items.c.turn_position, s.items.c.data)
                    .where(history.items_where(segs), s.items.c.turn_position.in_(positions))
                    .order_by(s.items.c.position)
                ):
                    items.setdefault(pos, []).append(codec.loads(data))
        data = []
        for r in page:
            its = items.get(r["position"], [])
            turn = turn_json(r, pages.summary_items(its) if items_view == "summary" else its)
            turn["itemsView"] = items_view
            data.append(turn)
        return {
            "data": data,
            "nextCursor": pages.encode_turn_cursor(page[-1]["turn_id"], False) if more else None,
            "backwardsCursor": pages.encode_turn_cursor(page[0]["turn_id"], True) if page else None,
        }

    def list_items_page(
        self,
        thread_id: str,
        *,
        turn_id: str | None = None,
        cursor: Any = None,
        limit: int | None = None,
        sort_direction: str = "asc",
    ) -> dict[str, Any]:
        """`thread/items/list`: a page of `ThreadItemEntry`s, oldest first by default."""
        tid = validate_thread_id(thread_id)
        if sort_direction not in ("asc", "desc"):
            raise InvalidInput(f"unknown sortDirection {sort_direction!r}: expected asc or desc")
        n = clamp_limit(limit)
        with snapshot_connection(self.engine) as conn:
            segs = self._require_history(conn, tid)
            turns = pages.visible_turns(conn, tid, segs)
            if turn_id is not None:
                turns = [r for r in turns if r["turn_id"] == turn_id]
                if not turns:
                    raise NotFound(f"turn not found: {turn_id}")
            turn_ids = {r["position"]: r["turn_id"] for r in turns}
            q = select(
                s.items.c.position, s.items.c.turn_position, s.items.c.created_at_ms, s.items.c.data
            ).where(history.items_where(segs), s.items.c.turn_position.in_(list(turn_ids)))
            after = pages.decode_item_cursor(conn, segs, cursor, turn_id)
            if after is not None:
                pos, include = after
                if sort_direction == "asc":
                    q = q.where(s.items.c.position >= pos if include else s.items.c.position > pos)
                else:
                    q = q.where(s.items.c.position <= pos if include else s.items.c.position < pos)
            order = (
                s.items.c.position.asc() if sort_direction == "asc" else s.items.c.position.desc()
            )
            rows = conn.execute(q.order_by(order).limit(n + 1)).all()
        more = len(rows) > n
        rows = rows[:n]
        data = [
            {
                "turnId": turn_ids[r[1]],
                "item": codec.loads(r[3]),
                "startedAtMs": None,
                "completedAtMs": r[2],
            }
            for r in rows
        ]
        return {
            "data": data,
            "nextCursor": pages.encode_item_cursor(rows[-1][0], False) if more else None,
            "backwardsCursor": pages.encode_item_cursor(rows[0][0], True) if rows else None,
        }

    def extra_methods(self) -> dict[str, Any]:
        """JSON-RPC methods this backend answers beyond the ThreadStore contract."""
        from store.search.wire import search_occurrences_wire, search_threads_wire

        return {
            "thread/search": lambda params: search_threads_wire(self, params),
            "thread/searchOccurrences": lambda params: search_occurrences_wire(self, params),
        }

    # -- writes (see store.sql.mutations) ------------------------------------------

    def set_name(self, thread_id: str, name: str) -> None:
        mutations.set_name(self, thread_id, name)

    def update_metadata(self, thread_id: str, *, git_info: dict[str, Any]) -> dict[str, Any]:
        mutations.update_git(self, thread_id, git_info)
        return self.get_thread(thread_id)

    def create_thread(self, **params: Any) -> dict[str, Any]:
        return self.get_thread(mutations.create_thread(self, **params))

    def append_items(self, thread_id: str, items: list[Any]) -> int:
        return mutations.append_items(self, thread_id, items)

    def archive(self, thread_id: str) -> list[str]:
        """thread/archive: move the thread to archived_sessions/ (journaled); its id."""
        from store.archive.service import archive_threads

        tid = validate_thread_id(thread_id)
        _single(archive_threads(self, [tid]), tid, "no rollout found")
        return [tid]

    def unarchive(self, thread_id: str) -> dict[str, Any]:
        """thread/unarchive: move it back to sessions/YYYY/MM/DD/; the stored thread."""
        from store.archive.service import unarchive_threads

        tid = validate_thread_id(thread_id)
        _single(unarchive_threads(self, [tid]), tid, "no archived rollout found")
        return self.get_thread(tid)

    def delete(self, thread_id: str) -> list[str]:
        """thread/delete: move the thread to the trash (restorable until purged)."""
        from store.archive.service import delete_threads

        tid = validate_thread_id(thread_id)
        _single(delete_threads(self, [tid]), tid, "no rollout found")
        return [tid]

    def fork(self, thread_id: str, *, last_turn_id: str | None = None) -> dict[str, Any]:
        """Fork a thread (up to and including `last_turn_id`); returns the new Thread.

        The Thread comes without its turns; `resume` (or `get_thread` with
        turns) reads the history.
        """
        return self.get_thread(mutations.fork(self, thread_id, last_turn_id=last_turn_id))

    def resume(self, thread_id: str) -> dict[str, Any]:
        """The thread with its history and the session settings to continue it."""
        f = mutations.active_thread_file(self, thread_id)
        thread = self.get_thread(f.thread_id, include_turns=True)
        return session_response(thread, mutations.session_settings(f.path))


def _thread_page_select() -> Any:
    """The columns of a wire `Thread` (and of its list cursors), with name, overrides and path.

    Only what `store.wire.thread_json` reads: not the large per-thread texts
    (session_meta, reducer state, first user message), which a page of 50
    threads would otherwise fetch for nothing.
    """
    t, o = s.threads, s.thread_overrides
    wire = [
        "id",
        "session_id",
        "forked_from_id",
        "parent_thread_id",
        "preview",
        "history_mode",
        "model_provider",
        "model",
        "reasoning_effort",
        "created_at_ms",
        "created_at_s",
        "updated_at_ms",
        "recency_at_ms",
        "cwd",
        "cli_version",
        "originator",
        "source",
        "thread_source",
        "agent_nickname",
        "agent_role",
        "git_sha",
        "git_branch",
        "git_origin_url",
    ]
    return (
        select(
            *(t.c[name] for name in wire),
            s.thread_names.c.name.label("_name"),
            o.c.thread_id.isnot(None).label("_o_set"),
            *(o.c[c].label(f"_o_{c}") for c in ("git_sha", "git_branch", "git_origin_url")),
            *(
                o.c[f"{c}_set"].label(f"_o_{c}_set")
                for c in ("git_sha", "git_branch", "git_origin_url")
            ),
            s.roots.c.path.label("_root"),
            s.rollout_files.c.rel_path.label("_rel"),
        )
        .outerjoin(s.thread_names, s.thread_names.c.thread_id == t.c.id)
        .outerjoin(o, o.c.thread_id == t.c.id)
        .outerjoin(s.rollout_files, s.rollout_files.c.id == t.c.live_file_id)
        .outerjoin(s.roots, s.roots.c.id == s.rollout_files.c.root_id)
    )


_THREAD_PAGE = _thread_page_select()


def _single(report: Any, tid: str, message: str) -> None:
    """Turn one thread's skip in an archive report into Codex's error.

    A thread that is missing or already in the target state gets Codex's
    "<message> for thread id <id>"; anything else (a busy file) is a Conflict.
    """
    exc = report.errors.get(tid)
    if isinstance(exc, (NotFound, WrongState)):
        raise NotFound(f"{message} for thread id {tid}")
    if exc is not None:
        raise Conflict(f"thread {tid}: {exc}")


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database>"


__all__ = ["SqlThreadStore"]
