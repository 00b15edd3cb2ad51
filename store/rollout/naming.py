"""Rollout file names: `rollout-<YYYY-MM-DDThh-mm-ss>-<uuid>[_<segment uuid>].jsonl[.zst]`.

The timestamp is the creator's local wall-clock time; Codex reads it as UTC
when it needs one, and so do we (for sorting and unarchive folders only).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from store.errors import InvalidInput

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_NAME = re.compile(
    rf"^rollout-(?P<ts>\d{{4}}-\d{{2}}-\d{{2}}T\d{{2}}-\d{{2}}-\d{{2}})-(?P<id>{_UUID})"
    rf"(?:_(?P<seg>{_UUID}))?\.jsonl(?P<zst>\.zst)?$"
)
_LOOSE_ID = re.compile(rf"(?P<id>{_UUID})(?:_(?P<seg>{_UUID}))?\.jsonl(?:\.zst)?$")


@dataclass(frozen=True, slots=True)
class RolloutName:
    timestamp: str | None  # "YYYY-MM-DDThh-mm-ss" as written
    thread_id: str | None
    segment_id: str | None
    compressed: bool

    @property
    def rollout_id(self) -> str | None:
        return self.segment_id or self.thread_id

    def timestamp_ms(self) -> int | None:
        if self.timestamp is None:
            return None
        dt = datetime.strptime(self.timestamp, "%Y-%m-%dT%H-%M-%S").replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)


def parse_name(name: str) -> RolloutName:
    m = _NAME.match(name)
    if m:
        return RolloutName(
            m.group("ts"),
            m.group("id").lower(),
            (m.group("seg") or "").lower() or None,
            bool(m.group("zst")),
        )
    m2 = _LOOSE_ID.search(name)
    if m2:
        return RolloutName(
            None,
            m2.group("id").lower(),
            (m2.group("seg") or "").lower() or None,
            name.endswith(".zst"),
        )
    return RolloutName(None, None, None, name.endswith(".zst"))


def is_rollout_file(name: str) -> bool:
    return name.endswith((".jsonl", ".jsonl.zst")) and name != "session_index.jsonl"


def validate_thread_id(value: str) -> str:
    """A thread id as Codex writes them: a UUID, returned lowercase hyphenated."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(f"invalid thread id: {_shown(value)} is not a UUID") from None
    text = str(parsed)
    if text != value.lower():
        raise InvalidInput(f"invalid thread id: {_shown(value)} is not a hyphenated UUID")
    return text


def _shown(value: object, limit: int = 80) -> str:
    """`value` for an error message: a hostile 10 KB id must not flood the terminal."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str) else len(text)
    return f"{text[:limit]}... ({size} characters)"
