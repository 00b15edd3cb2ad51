"""Dates for search filters: `7d`-style ages and calendar dates or times."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta

from store.errors import InvalidInput

_AGE_RE = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(value: str, *, end_of_day: bool = False, now_ms: int | None = None) -> int:
    """Unix milliseconds for `7d`/`12h`/`2w` (ago) or an ISO date / date-time.

    A date without a time means local midnight; with `end_of_day` (for --until)
    the midnight after it, so `--until 2026-01-31` includes that whole day.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    m = _AGE_RE.match(value)
    if m:
        return now - int(m.group(1)) * _UNIT_S[m.group(2).lower()] * 1000
    text = value.strip()
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"not a date: {value!r} (use e.g. 7d, 12h, 2w, 2026-01-01 or 2026-01-01T09:30)"
        ) from None
    if end_of_day and len(text) == 10:
        dt += timedelta(days=1)
    if dt.tzinfo is None:
        dt = dt.astimezone()  # local time
    return int(dt.timestamp() * 1000)
