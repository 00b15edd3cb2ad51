"""Reading one thread: its rollout file (and the history it inherits) -> rows.

A thread's history is its live file, preceded by the prefix of another rollout
when its first `session_meta` has a `history_base` (reference forks and revert
segments). Metadata comes from the live file's first `session_meta`; history
facts (preview, model, tokens) from the whole chain, as Codex reports them.

`parse_thread` is a pure function of the files (no database), so it runs in
worker processes; `ThreadParse` is picklable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from store import codec
from store.rollout import items as conv
from store.rollout.framing import (
    DEFAULT_MAX_LINE_BYTES,
    RawLine,
    is_compressed,
    iter_lines,
    open_stream,
    skip_to,
)
from store.rollout.history import HistoryReducer, choose_mode
from store.rollout.records import (
    EVENT_MSG,
    RESPONSE_ITEM,
    SESSION_META,
    TURN_CONTEXT,
    Record,
    Skip,
    decode_line,
)

MAX_BASE_DEPTH = 32
# ThreadMeta parses at least one timestamp of this many lines.
_TS_PENDING_MAX = 64
# Fields of session_meta that are large and already in the file.
_BULKY_META = ("base_instructions", "instructions", "dynamic_tools")


def parse_rfc3339_ms(value: Any) -> int | None:
    """Unix milliseconds of an RFC 3339 timestamp, None if it is not one.

    Fast path for the form Codex writes (`2025-10-01T12:34:56.789Z`): Python
    3.11's C `fromisoformat` reads `Z` and cuts fractions past 6 digits itself,
    which is what `_slow_rfc3339_ms` does by hand for every other form, so both
    give the same value (tests/test_timestamps.py checks them on real rollouts).
    """
    if not isinstance(value, str) or not value:
        return None
    if value[-1] == "Z" and value[0].isdigit():
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return int(dt.timestamp() * 1000)
    return _slow_rfc3339_ms(value)


def _slow_rfc3339_ms(value: str) -> int | None:
    s = value.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    # Python 3.11 accepts at most 6 fraction digits; Codex writes up to 9.
    if "." in s:
        head, _, rest = s.partition(".")
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        frac, tail = rest[:i], rest[i:]
        s = f"{head}.{frac[:6]}{tail}" if frac else head + tail
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def wire_source(raw: Any) -> tuple[Any, str]:
    """(SessionSource as on the wire, ThreadSourceKind) of a session_meta source."""
    if raw is None:
        return "vscode", "vscode"
    if isinstance(raw, str):
        if raw in ("cli", "vscode", "exec"):
            return raw, raw
        if raw == "mcp":
            return "appServer", "appServer"
        return "unknown", "unknown"
    if isinstance(raw, dict) and len(raw) == 1:
        key, value = next(iter(raw.items()))
        if key == "custom":
            return {"custom": value}, "custom"
        if key == "subagent":
            kind = "subAgentOther"
            if value == "review":
                kind = "subAgentReview"
            elif value == "compact":
                kind = "subAgentCompact"
            elif isinstance(value, dict) and "thread_spawn" in value:
                kind = "subAgentThreadSpawn"
            return {"subAgent": value}, kind
    return "unknown", "unknown"


@dataclass
class ThreadMeta:
    """Thread facts accumulated while reading; becomes a `threads` row."""

    id: str | None = None
    seen_meta: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    preview: str = ""
    first_user_message: str = ""
    model: str | None = None
    reasoning_effort: str | None = None
    tokens: dict[str, int] | None = None
    first_line_ts_ms: int | None = None
    last_line_ts_ms: int | None = None
    last_user_ts_ms: int | None = None
    # Timestamps of the lines fed since `last_line_ts_ms` was last brought up to
    # date: parsed only when it is read (see `_settle_ts`), not for every line.
    _ts_pending: list[str] = field(default_factory=list, repr=False, compare=False)

    def on_meta(self, payload: dict[str, Any], *, own: bool) -> None:
        if self.seen_meta or not own:
            return
        self.seen_meta = True
        meta = {k: v for k, v in payload.items() if k not in _BULKY_META}
        self.meta = meta
        tid = payload.get("id")
        if isinstance(tid, str):
            self.id = tid

    def _settle_ts(self) -> None:
        """Bring `last_line_ts_ms` up to date: the last pending timestamp that parses."""
        pending = self._ts_pending
        for ts in reversed(pending):
            ms = parse_rfc3339_ms(ts)
            if ms is not None:
                self.last_line_ts_ms = ms
                break
        pending.clear()

    def on_user_text(self, text: str) -> None:
        self._settle_ts()
        self.last_user_ts_ms = self.last_line_ts_ms
        if self.first_user_message:
            return
        self.first_user_message = text
        self.preview = conv.preview_text(text)

    def feed(self, rec: Record, *, own: bool, responses_mode: bool) -> None:
        ts = rec.timestamp
        if ts is not None:
            if self.first_line_ts_ms is None:
                ms = parse_rfc3339_ms(ts)
                if ms is not None:
                    self.first_line_ts_ms = ms
                    self.last_line_ts_ms = ms
            else:
                pending = self._ts_pending
                pending.append(ts)
                if len(pending) >= _TS_PENDING_MAX:
                    self._settle_ts()
        kind = rec.kind
        p = rec.payload
        if kind == SESSION_META:
            self.on_meta(p, own=own)
        elif kind == EVENT_MSG:
            etype = p.get("type")
            if etype == "user_message":
                msg = p.get("message")
                if isinstance(msg, str):
                    if msg.strip():
                        self.on_user_text(msg)
                    elif not self.first_user_message and (p.get("images") or p.get("local_images")):
                        self.first_user_message = msg
                        self.preview = "[Image]"
            elif etype == "item_completed":
                item = p.get("item")
                if isinstance(item, dict) and item.get("type") == "UserMessage":
                    texts = [
                        str(part.get("text", ""))
                        for part in item.get("content") or []
                        if isinstance(part, dict) and part.get("type") == "text"
                    ]
                    text = "\n".join(texts)
                    if text.strip():
                        self.on_user_text(text)
            elif etype == "token_count":
                info = p.get("info")
                if isinstance(info, dict) and isinstance(info.get("total_token_usage"), dict):
                    self.tokens = {
                        k: v for k, v in info["total_token_usage"].items() if isinstance(v, int)
                    }
            elif etype == "thread_settings_applied":
                settings = p.get("thread_settings")
                if isinstance(settings, dict):
                    if isinstance(settings.get("model"), str):
                        self.model = settings["model"]
                    effort = settings.get("reasoning_effort")
                    if effort is None:
                        cm = settings.get("collaboration_mode")
                        if isinstance(cm, dict) and isinstance(cm.get("settings"), dict):
                            effort = cm["settings"].get("reasoning_effort")
                    self.reasoning_effort = effort if isinstance(effort, str) else None
        elif kind == TURN_CONTEXT:
            if isinstance(p.get("model"), str):
                self.model = p["model"]
            effort = p.get("effort")
            if effort is None:
                cm = p.get("collaboration_mode")
                if isinstance(cm, dict) and isinstance(cm.get("settings"), dict):
                    effort = cm["settings"].get("reasoning_effort")
            self.reasoning_effort = effort if isinstance(effort, str) else None
        elif (
            kind == RESPONSE_ITEM
            and responses_mode
            and p.get("type") == "message"
            and p.get("role") == "user"
        ):
            text = conv.message_text(p)
            if not conv.is_context_wrapper(text):
                self.on_user_text(text)

    # -- persistence of the accumulator between ingests --------------------------

    def state(self) -> dict[str, Any]:
        self._settle_ts()
        return {
            "seen_meta": self.seen_meta,
            "first_line_ts_ms": self.first_line_ts_ms,
            "last_line_ts_ms": self.last_line_ts_ms,
            "last_user_ts_ms": self.last_user_ts_ms,
        }


@dataclass
class FileProgress:
    """How far the live file has been read, and what was skipped."""

    offset: int = 0
    line_count: int = 0
    last_ordinal: int | None = None
    envelope: bool | None = None
    skips: list[Skip] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    base_rollout_id: str | None = None
    base_end_offset: int | None = None
    base_end_ordinal: int | None = None


@dataclass
class ThreadParse:
    """Everything ingest needs to write one thread."""

    meta: ThreadMeta
    reducer: HistoryReducer
    progress: FileProgress
    error: str | None = None


BaseResolver = Callable[[str], Path | None]


class _Chain:
    """Reads the inherited prefix of a history base (recursively)."""

    def __init__(self, resolve: BaseResolver, max_line_bytes: int) -> None:
        self.resolve = resolve
        self.max_line_bytes = max_line_bytes

    def records(
        self, rollout_id: str, end_offset: int | None, end_ordinal: int | None, depth: int
    ) -> Iterator[Record | Skip]:
        if depth > MAX_BASE_DEPTH:
            raise ValueError(f"history base chain deeper than {MAX_BASE_DEPTH} files")
        path = self.resolve(rollout_id)
        if path is None:
            raise ValueError(f"history base rollout {rollout_id} not found")
        envelope: bool | None = None
        first = True
        with open_stream(path) as stream:
            for raw in iter_lines(stream, max_line_bytes=self.max_line_bytes, stop_at=end_offset):
                rec = decode_line(raw, envelope=envelope)
                if rec is None:
                    continue
                if isinstance(rec, Record):
                    if envelope is None:
                        envelope = not rec.bare
                    if first and rec.kind == SESSION_META:
                        first = False
                        base = rec.payload.get("history_base")
                        if isinstance(base, dict) and isinstance(base.get("thread_id"), str):
                            end = base.get("end_byte_offset")
                            end_ord = base.get("end_ordinal_exclusive")
                            yield from self.records(
                                base["thread_id"],
                                end if isinstance(end, int) else None,
                                end_ord if isinstance(end_ord, int) else None,
                                depth + 1,
                            )
                    if (
                        end_ordinal is not None
                        and rec.ordinal is not None
                        and rec.ordinal >= end_ordinal
                    ):
                        continue
                yield rec


def _envelope_of(rec: Record) -> bool:
    return not rec.bare


def parse_thread(
    path: Path,
    *,
    resolve_base: BaseResolver,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    start: tuple[ThreadMeta, HistoryReducer, FileProgress] | None = None,
) -> ThreadParse:
    """Read `path` (from the start, or continuing from `start`)."""
    if start is not None:
        meta, reducer, progress = start
        progress.skips = [s for s in progress.skips if s.offset < progress.offset]
    else:
        meta = ThreadMeta()
        reducer = HistoryReducer("legacy")
        progress = FileProgress()
    compressed = is_compressed(path)
    error: str | None = None
    skips, kinds = progress.skips, progress.kinds
    meta_feed, reducer_feed = meta.feed, reducer.feed
    responses_mode = reducer.mode == "responses"
    with open_stream(path) as stream:
        skip_to(stream, progress.offset, compressed)
        for raw in iter_lines(
            stream,
            start_offset=progress.offset,
            start_number=progress.line_count,
            max_line_bytes=max_line_bytes,
        ):
            if not raw.terminated and not _complete_json(raw):
                # A line still being written: wait for its newline.
                skips.append(
                    Skip(raw.number, raw.offset, raw.end, "truncated last line (no newline yet)")
                )
                break
            rec = decode_line(raw, envelope=progress.envelope)
            progress.offset = raw.end
            progress.line_count = raw.number + 1
            if rec is None:
                continue
            if isinstance(rec, Skip):
                skips.append(rec)
                if rec.kind is not None:
                    kinds[rec.kind] = kinds.get(rec.kind, 0) + 1
                    reducer.huge_line(rec.kind, _as_record(rec))
                continue
            if progress.envelope is None:
                progress.envelope = _envelope_of(rec)
                own_meta = rec.payload if rec.kind == SESSION_META else None
                reducer.mode = choose_mode(own_meta, progress.envelope)
                responses_mode = reducer.mode == "responses"
                if own_meta is not None:
                    base = own_meta.get("history_base")
                    if isinstance(base, dict) and isinstance(base.get("thread_id"), str):
                        end = base.get("end_byte_offset")
                        end_ord = base.get("end_ordinal_exclusive")
                        progress.base_rollout_id = base["thread_id"]
                        progress.base_end_offset = end if isinstance(end, int) else None
                        progress.base_end_ordinal = end_ord if isinstance(end_ord, int) else None
                        try:
                            _feed_base(meta, reducer, resolve_base, max_line_bytes, progress)
                        except (OSError, ValueError) as exc:
                            error = f"history base: {exc}"
            if rec.ordinal is not None:
                progress.last_ordinal = rec.ordinal
            kinds[rec.kind] = kinds.get(rec.kind, 0) + 1
            meta_feed(rec, own=True, responses_mode=responses_mode)
            reducer_feed(rec)
    meta._settle_ts()
    return ThreadParse(meta, reducer, progress, error)


def _feed_base(
    meta: ThreadMeta,
    reducer: HistoryReducer,
    resolve: BaseResolver,
    max_line_bytes: int,
    progress: FileProgress,
) -> None:
    assert progress.base_rollout_id is not None
    chain = _Chain(resolve, max_line_bytes)
    for rec in chain.records(
        progress.base_rollout_id, progress.base_end_offset, progress.base_end_ordinal, 1
    ):
        if isinstance(rec, Skip):
            if rec.kind is not None:
                reducer.huge_line(rec.kind, _as_record(rec))
            continue
        meta.feed(rec, own=False, responses_mode=False)
        reducer.feed(rec)


def _as_record(skip: Skip) -> Record:
    return Record(skip.kind or "", {}, None, None, skip.line, skip.offset, skip.end)


def _complete_json(raw: RawLine) -> bool:
    """An unterminated last line counts only if it is a whole JSON object."""
    if raw.too_long:
        return False
    try:
        return isinstance(codec.loads(raw.data), dict)
    except codec.JSONDecodeError:
        return False


