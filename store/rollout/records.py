"""Decoding rollout lines into records, for every format Codex has written.

Formats:
- envelope (Sept 2025 on): `{"timestamp", "type", "payload", "ordinal"?, "metadata"?}`;
- pre-envelope (May-Sept 2025): a bare meta object first (`id`, `timestamp`,
  `instructions`, `git`), then bare Responses API items and
  `{"record_type": "state"}` lines.

A line that cannot be decoded becomes a `Skip` with a reason; nothing here
raises on bad input. Unknown record kinds decode fine (kind kept as written).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from store.rollout.framing import RawLine

# Kinds of envelope records, as written by Codex (snake_case).
SESSION_META = "session_meta"
RESPONSE_ITEM = "response_item"
EVENT_MSG = "event_msg"
TURN_CONTEXT = "turn_context"
COMPACTED = "compacted"
# Pre-envelope `{"record_type": "state"}` lines.
STATE = "state"

_TYPE_IN_HEAD = re.compile(rb'"type"\s*:\s*"([A-Za-z0-9_]{1,64})"')


@dataclass(slots=True)
class Record:
    kind: str
    payload: dict[str, Any]
    timestamp: str | None
    ordinal: int | None  # paginated files only
    line: int  # physical line number (0-based)
    offset: int
    end: int
    bare: bool = False  # a pre-envelope line


@dataclass(slots=True)
class Skip:
    line: int
    offset: int
    end: int
    reason: str
    kind: str | None = None  # record kind when it could still be told (huge lines)


def _bad_line_reason(data: bytes, err: Exception) -> str:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start}"
    msg = str(err).split(":", 1)[0] if str(err) else "parse error"
    return f"invalid JSON ({msg})"


def decode_line(raw: RawLine, *, envelope: bool | None) -> Record | Skip | None:
    """Decode one physical line.

    `envelope`: True/False when the file's format is known, None for the first
    record of a file (which decides it). Returns None for blank lines.
    """
    data = raw.data
    if raw.too_long:
        # Keep what can be told without parsing: the kind (a huge `compacted`
        # line still marks a compaction) and the ordinal.
        kind = None
        m = _TYPE_IN_HEAD.search(data)
        if m:
            kind = m.group(1).decode("ascii")
        size = raw.end - raw.offset
        return Skip(raw.number, raw.offset, raw.end, f"line too long ({size} bytes)", kind)
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        # A blank line is no JSON either: told apart only here, so a good
        # line is not copied by strip() first.
        if not data.strip():
            return None
        if not raw.terminated:
            return Skip(raw.number, raw.offset, raw.end, "truncated last line (no newline yet)")
        return Skip(raw.number, raw.offset, raw.end, _bad_line_reason(data, err))
    if not isinstance(obj, dict):
        return Skip(raw.number, raw.offset, raw.end, "not a JSON object")
    payload = obj.get("payload")
    kind = obj.get("type")
    if (
        envelope is not False
        and isinstance(kind, str)
        and isinstance(payload, dict)
        and ("timestamp" in obj or "ordinal" in obj)
    ):
        ts = obj.get("timestamp")
        ordinal = obj.get("ordinal")
        return Record(
            kind,
            payload,
            ts if isinstance(ts, str) else None,
            ordinal if isinstance(ordinal, int) and not isinstance(ordinal, bool) else None,
            raw.number,
            raw.offset,
            raw.end,
        )
    if envelope is True:
        return Skip(raw.number, raw.offset, raw.end, "not a rollout envelope")
    # Pre-envelope format.
    if obj.get("record_type") == "state":
        return Record(STATE, obj, None, None, raw.number, raw.offset, raw.end, True)
    if envelope is None and "id" in obj and "type" not in obj:
        ts = obj.get("timestamp")
        return Record(
            SESSION_META,
            obj,
            ts if isinstance(ts, str) else None,
            None,
            raw.number,
            raw.offset,
            raw.end,
            True,
        )
    if isinstance(kind, str):
        return Record(RESPONSE_ITEM, obj, None, None, raw.number, raw.offset, raw.end, True)
    return Skip(raw.number, raw.offset, raw.end, "unrecognised line shape")
