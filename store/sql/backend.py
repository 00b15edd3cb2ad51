"""The SQLAlchemy backend (SQLite and PostgreSQL) of the thread store."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select

from store import codec
from store.codex_home import SESSIONS
from store.errors import InvalidCursor, InvalidInput, NotFound
from store.ingest import IngestSummary, ProgressFn, ingest
from store.rollout.framing import CHUNK_SIZE, DEFAULT_MAX_LINE_BYTES, open_stream
from store.rollout.naming import validate_thread_id
from store.rows import is_visible_turn
from store.search import SearchFilters, SearchPage
from store.search import api as search_api
from store.search import schema as search_schema
from store.sql import migrate
from store.sql import schema as s
from store.sql.engine import make_engine, write_tx
from store.wire import thread_json, turn_json

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
_SORT_COLUMNS = {
    "created_at": s.threads.c.created_at_ms,
    "updated_at": s.threads.c.updated_at_ms,
    "recency_at": s.threads.c.recency_at_ms,
}


def _encode_cursor(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(codec.dumpb(payload)).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str, sort_key: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = codec.loads(raw)
        value, tid, key = data["v"], data["id"], data["k"]
    except (binascii.Error, ValueError, KeyError, TypeError, codec.JSONDecodeError):
        raise InvalidCursor(f"invalid cursor: {cursor!r}") from None
    if not isinstance(value, int) or not isinstance(tid, str) or key != sort_key:
        raise InvalidCursor(f"invalid cursor: {cursor!r} (made for another sort order)")
    return value, tid


class SqlThreadStore:
    """Threads indexed in a SQL database (SQLite or PostgreSQL)."""

    def __init__(
        self,
        url: str,
        *,
        auto_upgrade: bool = False,
        default_provider: str = "openai",
        engine: Engine | None = None,
    ) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self.default_provider = default_provider
        migrate.ensure_current(self.engine, auto_upgrade=auto_upgrade, url_for_message=_safe(url))

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
    ) -> IngestSummary:
        """Index rollout files (CODEX_HOMEs, session folders or files)."""
        return ingest(
            self.engine,
            [Path(p) for p in paths],
            workers=workers,
            max_line_bytes=max_line_bytes,
            on_progress=on_progress,
        )

    # -- reading ------------------------------------------------------------------

    def _thread_rows(self, where: Any, order: Any, limit: int | None) -> list[dict[str, Any]]:
        t = s.threads
        q = (
            select(
                t,
                s.thread_names.c.name.label("_name"),
                s.roots.c.path.label("_root"),
                s.rollout_files.c.rel_path.label("_rel"),
            )
            .outerjoin(s.thread_names, s.thread_names.c.thread_id == t.c.id)
            .outerjoin(s.rollout_files, s.rollout_files.c.id == t.c.live_file_id)
            .outerjoin(s.roots, s.roots.c.id == s.rollout_files.c.root_id)
            .where(where)
            .order_by(*order)
        )
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def _to_json(
        self, row: dict[str, Any], turns: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        path = str(Path(row["_root"]) / row["_rel"]) if row["_root"] and row["_rel"] else None
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

    def list_threads(
        self,
        *,
        cursor: str | None = None,
        limit: int | None = None,
        sort_key: str = "created_at",
        ascending: bool = False,
        archived: bool | None = None,
    ) -> dict[str, Any]:
        """A page of threads: `{"data": [Thread], "nextCursor": str | None}`.

        Keyset pagination on (sort value, id): threads that share a timestamp
        are never skipped or repeated, and cursors stay valid as threads arrive.
        """
        col = _SORT_COLUMNS.get(sort_key)
        if col is None:
            raise InvalidInput(f"unknown sort key {sort_key!r}: use one of {sorted(_SORT_COLUMNS)}")
        n = DEFAULT_LIMIT if limit is None else max(1, min(MAX_LIMIT, limit))
        conds: list[Any] = []
        if archived is not None:
            conds.append(s.threads.c.archived == archived)
        if cursor:
            value, tid = _decode_cursor(cursor, sort_key)
            if ascending:
                conds.append(or_(col > value, and_(col == value, s.threads.c.id > tid)))
            else:
                conds.append(or_(col < value, and_(col == value, s.threads.c.id < tid)))
        order = (
            [col.asc(), s.threads.c.id.asc()] if ascending else [col.desc(), s.threads.c.id.desc()]
        )
        rows = self._thread_rows(and_(True, *conds), order, n + 1)
        more = len(rows) > n
        rows = rows[:n]
        next_cursor = None
        if more and rows:
            last = rows[-1]
            next_cursor = _encode_cursor({"k": sort_key, "v": last[col.name], "id": last["id"]})
        return {"data": [self._to_json(r) for r in rows], "nextCursor": next_cursor}

    def list_turns(self, thread_id: str) -> list[dict[str, Any]]:
        """Every turn of a thread with its items, in order (app-server `Turn`s)."""
        tid = validate_thread_id(thread_id)
        with self.engine.connect() as conn:
            exists = conn.execute(select(s.threads.c.id).where(s.threads.c.id == tid)).first()
            if exists is None:
                raise NotFound(f"thread not found: {tid}")
            turn_rows = [
                dict(r)
                for r in conn.execute(
                    select(s.turns).where(s.turns.c.thread_id == tid).order_by(s.turns.c.position)
                ).mappings()
            ]
            by_turn: dict[int, list[dict[str, Any]]] = {}
            for pos, data in conn.execute(
                select(s.items.c.turn_position, s.items.c.data)
                .where(s.items.c.thread_id == tid)
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
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(s.roots.c.path, s.rollout_files.c.rel_path, s.rollout_files.c.is_segment)
                .join(s.roots, s.roots.c.id == s.rollout_files.c.root_id)
                .where(s.rollout_files.c.thread_id == tid)
                .order_by(s.rollout_files.c.is_segment, s.rollout_files.c.rel_path)
            ).all()
        if not rows:
            raise NotFound(f"thread not found: {tid}")
        root, rel = Path(rows[0][0]), str(rows[0][1])
        path = (root / rel).resolve()
        if not path.is_relative_to(root.resolve()):
            raise InvalidInput(f"stored path {rel!r} leads outside its root {root}")
        if not path.exists():
            raise NotFound(f"rollout file of thread {tid} is gone: {path} (run `rollouts import`)")
        return path

    def export(self, thread_id: str) -> Iterator[bytes]:
        """The original JSONL bytes of the thread's main rollout file, in chunks."""
        path = self.main_file(thread_id)
        with open_stream(path) as stream:
            while True:
                chunk = stream.read(CHUNK_SIZE)
                if not chunk:
                    return
                yield chunk


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database>"


__all__ = ["SESSIONS", "SqlThreadStore"]
