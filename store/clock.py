"""The wall clock, as the store records it: integer Unix milliseconds."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
