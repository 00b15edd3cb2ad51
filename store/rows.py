"""From a parsed thread to database rows, and back to reducer state.

Both directions live here so that what ingest writes and what a later append
reads back are defined side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from store import codec
from store.rollout.history import PENDING, HistoryReducer, ItemState, TurnState
from store.rollout.naming import RolloutName
from store.rollout.records import Skip
from store.rollout.thread import (
    FileProgress,
    ThreadMeta,
    ThreadParse,
    parse_rfc3339_ms,
    wire_source,
)


@dataclass
class ThreadRows:
    """One thread, ready to write; `from_turn` = first turn position written."""

    thread: dict[str, Any]
    turns: list[tuple[Any, ...]]  # in TURN_COLS order
    items: list[tuple[Any, ...]]  # in ITEM_COLS order
    skips: list[Skip]
    progress: FileProgress
    from_turn: int
    turn_count: int
    item_count: int
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # rollout_files rows of the thread's files (made where it was parsed: the
    # head fingerprints read the files).
    files: list[dict[str, Any]] = field(default_factory=list)


def search_text(item: dict[str, Any]) -> str:
    """The words of an item that search indexes."""
    t = item.get("type")
    parts: list[str] = []
    if t == "userMessage":
        for c in item.get("content") or []:
            if isinstance(c, dict) and isinstance(c.get("text"), str):
                parts.append(c["text"])
    elif t == "agentMessage" or t == "plan":
        parts.append(str(item.get("text") or ""))
    elif t == "reasoning":
        parts.extend(str(s) for s in item.get("summary") or [])
        parts.extend(str(s) for s in item.get("content") or [])
    elif t == "commandExecution":
        parts.append(str(item.get("command") or ""))
        parts.append(str(item.get("aggregatedOutput") or ""))
    elif t == "fileChange":
        for ch in item.get("changes") or []:
            if isinstance(ch, dict):
                parts.append(str(ch.get("path") or ""))
                parts.append(str(ch.get("diff") or ""))
    elif t == "mcpToolCall":
        parts.append(f"{item.get('server', '')} {item.get('tool', '')}")
        if item.get("arguments") is not None:
            parts.append(codec.dumps(item.get("arguments")))
    elif t == "webSearch":
        parts.append(str(item.get("query") or ""))
    elif t in ("enteredReviewMode", "exitedReviewMode"):
        parts.append(str(item.get("review") or ""))
    elif t == "hookPrompt":
        parts.extend(
            str(f.get("text", "")) for f in item.get("fragments") or [] if isinstance(f, dict)
        )
    return "\n".join(p for p in parts if p)


def _git(meta: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    git = meta.get("git")
    if not isinstance(git, dict):
        return None, None, None

    def s(key: str) -> str | None:
        v = git.get(key)
        return v if isinstance(v, str) else None

    return s("commit_hash"), s("branch"), s("repository_url")


def _opt_str(meta: dict[str, Any], key: str) -> str | None:
    v = meta.get(key)
    return v if isinstance(v, str) else None


def thread_row(
    thread_id: str,
    parse: ThreadParse,
    *,
    name: RolloutName,
    mtime_ms: int,
    archived: bool,
    total_bytes: int,
    turn_count: int,
    item_count: int,
) -> dict[str, Any]:
    m = parse.meta
    meta = m.meta
    source, source_kind = wire_source(meta.get("source"))
    created = (
        parse_rfc3339_ms(meta.get("timestamp"))
        or name.timestamp_ms()
        or m.first_line_ts_ms
        or mtime_ms
    )
    sha, branch, origin = _git(meta)
    tokens = m.tokens or {}
    reducer = parse.reducer
    state = {
        "next_item": reducer.next_item,
        "position": reducer.position,
        "envelope": parse.progress.envelope,
        **m.state(),
    }
    agent_role = _opt_str(meta, "agent_role") or _opt_str(meta, "agent_type")
    return {
        "id": thread_id,
        "session_id": _opt_str(meta, "session_id") or thread_id,
        "forked_from_id": _opt_str(meta, "forked_from_id"),
        "parent_thread_id": _opt_str(meta, "parent_thread_id"),
        "preview": m.preview,
        "first_user_message": m.first_user_message,
        "model_provider": _opt_str(meta, "model_provider"),
        "model": m.model,
        "reasoning_effort": m.reasoning_effort,
        "cwd": _opt_str(meta, "cwd") or "",
        "cli_version": _opt_str(meta, "cli_version") or "",
        "originator": _opt_str(meta, "originator"),
        "source": codec.dumps(source),
        "source_kind": source_kind,
        "thread_source": _opt_str(meta, "thread_source"),
        "agent_nickname": _opt_str(meta, "agent_nickname"),
        "agent_role": agent_role,
        "agent_path": _opt_str(meta, "agent_path"),
        "git_sha": sha,
        "git_branch": branch,
        "git_origin_url": origin,
        "created_at_ms": created,
        "created_at_s": created // 1000,
        "updated_at_ms": mtime_ms,
        "recency_at_ms": m.last_user_ts_ms or mtime_ms,
        "archived": archived,
        "archived_at_ms": mtime_ms if archived else None,
        "history_mode": _opt_str(meta, "history_mode") or "legacy",
        "reducer_mode": reducer.mode,
        "reducer_state": codec.dumps(state),
        "tokens_input": tokens.get("input_tokens"),
        "tokens_cached_input": tokens.get("cached_input_tokens"),
        "tokens_output": tokens.get("output_tokens"),
        "tokens_reasoning_output": tokens.get("reasoning_output_tokens"),
        "tokens_total": tokens.get("total_tokens"),
        "turn_count": turn_count,
        "item_count": item_count,
        "bytes": total_bytes,
        "live_file_id": None,
        "meta": codec.dumps(meta),
    }


# Column order of the tuples `turn_rows` makes (plain tuples: cheap to pickle
# from a worker and to hand to executemany/COPY).
TURN_COLS = (
    "thread_id",
    "position",
    "turn_id",
    "root_turn_id",
    "status",
    "error",
    "started_at",
    "completed_at",
    "duration_ms",
    "explicit",
    "saw_compaction",
    "is_open",
    "first_line",
    "last_line",
    "item_count",
)
ITEM_COLS = (
    "thread_id",
    "turn_position",
    "position",
    "item_id",
    "item_type",
    "line",
    "created_at_ms",
    "data",
    "search_text",
)
Row = tuple[Any, ...]


def turn_rows(
    thread_id: str, reducer: HistoryReducer, from_turn: int
) -> tuple[list[Row], list[Row], int, int]:
    """(turn rows, item rows, visible turn count, item count) from `from_turn` on."""
    finished = reducer.turns
    all_turns: list[tuple[TurnState, bool]] = [(t, False) for t in finished]
    if reducer.current is not None:
        all_turns.append((reducer.current, True))
    t_rows: list[Row] = []
    i_rows: list[Row] = []
    item_pos = sum(len(t.items) for t, _ in all_turns[:from_turn])
    for pos in range(from_turn, len(all_turns)):
        turn, is_open = all_turns[pos]
        t_rows.append(
            (
                thread_id,
                pos,
                turn.id,
                turn.root_turn_id,
                turn.status,
                codec.dumps(turn.error) if turn.error is not None else None,
                turn.started_at,
                turn.completed_at,
                turn.duration_ms,
                turn.explicit,
                turn.saw_compaction,
                is_open,
                turn.first_line,
                turn.last_line,
                len(turn.items),
            )
        )
        for it in turn.items:
            data = it.data
            ts = it.ts
            i_rows.append(
                (
                    thread_id,
                    pos,
                    item_pos,
                    str(data.get("id") or ""),
                    str(data.get("type") or ""),
                    it.line,
                    parse_rfc3339_ms(ts) if isinstance(ts, str) else ts,
                    codec.dumps(data),
                    search_text(data),
                )
            )
            item_pos += 1
    visible = sum(
        1
        for t, is_open in all_turns
        if is_visible_turn(t.status, is_open, t.explicit, t.saw_compaction, len(t.items))
    )
    return t_rows, i_rows, visible, item_pos


def is_visible_turn(
    status: str, is_open: bool, explicit: bool, saw_compaction: bool, item_count: int
) -> bool:
    """Whether a stored turn row is a turn Codex would show.

    An open implicit turn with nothing in it is not a turn (yet), and a
    paginated turn that only items have named waits for its lifecycle record.
    """
    if status == PENDING:
        return False
    return not is_open or explicit or saw_compaction or item_count > 0


def load_reducer(
    mode: str,
    state: dict[str, Any],
    turn_rows_db: list[dict[str, Any]],
    item_rows_db: list[dict[str, Any]],
) -> HistoryReducer:
    """Rebuild a reducer from the rows `turn_rows` wrote."""
    reducer = HistoryReducer(mode)
    by_turn: dict[int, list[ItemState]] = {}
    for r in item_rows_db:
        by_turn.setdefault(r["turn_position"], []).append(
            ItemState(codec.loads(r["data"]), r["line"], r["created_at_ms"])
        )
    for r in turn_rows_db:
        turn = TurnState(
            id=r["turn_id"],
            status=r["status"],
            explicit=bool(r["explicit"]),
            items=by_turn.get(r["position"], []),
            error=codec.loads(r["error"]) if r["error"] else None,
            started_at=r["started_at"],
            completed_at=r["completed_at"],
            duration_ms=r["duration_ms"],
            root_turn_id=r["root_turn_id"],
            saw_compaction=bool(r["saw_compaction"]),
            first_line=r["first_line"],
            last_line=r["last_line"],
        )
        if r["is_open"]:
            reducer.current = turn
        else:
            reducer.turns.append(turn)
    reducer.next_item = int(state.get("next_item", 1))
    reducer.position = int(state.get("position", 0))
    reducer.dirty_from = len(reducer.turns)
    return reducer


def load_meta(row: dict[str, Any], state: dict[str, Any]) -> ThreadMeta:
    tokens = {
        "input_tokens": row["tokens_input"],
        "cached_input_tokens": row["tokens_cached_input"],
        "output_tokens": row["tokens_output"],
        "reasoning_output_tokens": row["tokens_reasoning_output"],
        "total_tokens": row["tokens_total"],
    }
    return ThreadMeta(
        id=row["id"],
        seen_meta=bool(state.get("seen_meta")),
        meta=codec.loads(row["meta"]),
        preview=row["preview"],
        first_user_message=row["first_user_message"],
        model=row["model"],
        reasoning_effort=row["reasoning_effort"],
        tokens={k: v for k, v in tokens.items() if v is not None} or None,
        first_line_ts_ms=state.get("first_line_ts_ms"),
        last_line_ts_ms=state.get("last_line_ts_ms"),
        last_user_ts_ms=state.get("last_user_ts_ms"),
    )
