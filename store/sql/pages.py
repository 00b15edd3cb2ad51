"""Cursors and views of `thread/turns/list` and `thread/items/list`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from store import codec
from store.errors import InvalidCursor, InvalidInput
from store.rows import is_visible_turn
from store.sql import history
from store.sql import schema as s


def is_shown(row: dict[str, Any]) -> bool:
    """Whether a stored turn row is a turn Codex shows (see rows.is_visible_turn)."""
    return is_visible_turn(
        row["status"], row["is_open"], row["explicit"], row["saw_compaction"], row["item_count"]
    )


def visible_turns(
    conn: Any, thread_id: str, segs: list[history.Segment] | None = None
) -> list[dict[str, Any]]:
    """The turn rows Codex shows, in order."""
    return [r for r in history.turn_rows(conn, thread_id, segs) if is_shown(r)]


def encode_turn_cursor(turn_id: str, include_anchor: bool) -> str:
    """Codex's turn cursor: the JSON text `{"turnId": ..., "includeAnchor": ...}`."""
    return codec.dumps({"turnId": turn_id, "includeAnchor": include_anchor})


def decode_turn_cursor(cursor: str) -> tuple[str, bool]:
    try:
        data = codec.loads(cursor)
        turn_id, include = data["turnId"], data.get("includeAnchor", False)
    except (codec.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise InvalidCursor(f"invalid cursor: {cursor}") from None
    if not isinstance(turn_id, str) or not isinstance(include, bool):
        raise InvalidCursor(f"invalid cursor: {cursor}")
    return turn_id, include


def summary_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary view of a turn: its first user message and its last agent message."""
    first_user = next((i for i in items if i.get("type") == "userMessage"), None)
    last_agent = next((i for i in reversed(items) if i.get("type") == "agentMessage"), None)
    return [i for i in (first_user, last_agent) if i is not None]


def encode_item_cursor(position: int, include_anchor: bool) -> str:
    return codec.dumps({"position": position, "includeAnchor": include_anchor})


def decode_item_cursor(
    conn: Any, segs: list[history.Segment], cursor: Any, turn_id: str | None
) -> tuple[int, bool] | None:
    """(item position, include it) of a string cursor or an `{type: item, itemId}` anchor."""
    if cursor is None:
        return None
    if isinstance(cursor, dict):
        if cursor.get("type") != "item" or not isinstance(cursor.get("itemId"), str):
            raise InvalidCursor(f"invalid cursor: {codec.dumps(cursor)}")
        if not turn_id:
            raise InvalidInput("an item anchor cursor requires a non-empty turnId")
        pos = conn.execute(
            select(s.items.c.position).where(
                history.items_where(segs), s.items.c.item_id == cursor["itemId"]
            )
        ).scalar()
        if pos is None:
            raise InvalidCursor(f"invalid cursor: item {cursor['itemId']} is not in this thread")
        return int(pos), False
    if not isinstance(cursor, str):
        raise InvalidCursor(f"invalid cursor: {cursor!r}")
    try:
        data = codec.loads(cursor)
        pos, include = data["position"], data["includeAnchor"]
    except (codec.JSONDecodeError, KeyError, TypeError):
        raise InvalidCursor(f"invalid cursor: {cursor}") from None
    if not isinstance(pos, int) or isinstance(pos, bool) or not isinstance(include, bool):
        raise InvalidCursor(f"invalid cursor: {cursor}")
    return pos, include
