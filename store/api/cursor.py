"""`thread/list` cursors in Codex's own syntax: `<RFC 3339 time>[|<thread id>]`.

Codex 0.169 hands out `2026-11-21T15:36:21Z|<uuid>` (created_at, second
precision) and `2026-11-21T15:36:21.987Z|<uuid>` (updated_at / recency_at,
millisecond precision), and accepts RFC 3339 or the rollout file-name style
`2026-11-21T15-36-21`, with or without the `|<uuid>` tail. We read and write
the same strings, so a client can page through either server with the same
cursor, but we treat `(time, id)` as a keyset position: the next page holds
the threads strictly after that pair in the sort order. Threads created in
the same second are therefore never skipped (Codex skips them), and a cursor
stays valid while new threads arrive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from store.errors import InvalidCursor, InvalidInput
from store.rollout.naming import validate_thread_id

_CURSOR = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})T(?P<h>\d{2})[:-](?P<m>\d{2})[:-](?P<s>\d{2})"
    r"(?:\.(?P<frac>\d{1,9}))?(?P<tz>Z|[+-]\d{2}:\d{2})?"
    r"(?:\|(?P<id>[^|]+))?$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Cursor:
    """A position in a thread listing: a time in ms and, optionally, a thread id."""

    ms: int
    thread_id: str | None


def parse_cursor(raw: str) -> Cursor:
    """Parse a Codex-style cursor; anything else is `InvalidCursor: invalid cursor: <raw>`."""
    m = _CURSOR.match(raw) if isinstance(raw, str) and len(raw) <= 200 else None
    if m is None:
        raise InvalidCursor(f"invalid cursor: {raw}")
    try:
        base = datetime.fromisoformat(f"{m['date']}T{m['h']}:{m['m']}:{m['s']}")
    except ValueError:
        raise InvalidCursor(f"invalid cursor: {raw}") from None
    tz = m["tz"]
    if tz is None or tz == "Z":
        base = base.replace(tzinfo=UTC)
    else:
        sign = 1 if tz[0] == "+" else -1
        offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        base = base.replace(tzinfo=UTC) - sign * offset
    frac = (m["frac"] or "").ljust(3, "0")[:3]
    ms = (base - _EPOCH) // timedelta(milliseconds=1) + int(frac)
    thread_id = None
    if m["id"] is not None:
        try:
            thread_id = validate_thread_id(m["id"])
        except InvalidInput:
            raise InvalidCursor(f"invalid cursor: {raw}") from None
    return Cursor(ms, thread_id)


def _utc(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def format_seconds(ms: int) -> str:
    """`2026-11-21T15:36:21Z`: whole seconds, as Codex writes created_at cursors."""
    return _utc(ms - ms % 1000).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_millis(ms: int, *, always_fraction: bool = False) -> str:
    """`2026-11-21T15:36:21.987Z`; the fraction only when non-zero unless asked for."""
    t = _utc(ms)
    if ms % 1000 == 0 and not always_fraction:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
