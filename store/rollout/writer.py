"""Writing rollout files the way Codex does: new files, appended lines, one writer.

The store never rewrites a line of an existing rollout: new threads and forks
get new files, and appends go after the last complete line. Each write is
flushed and fsynced before the database is told about it, so an interrupted
write leaves at worst a partial last line, which ingest already treats as
"not complete yet".
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from store import codec
from store.errors import Conflict, InvalidInput


def uuid7(now_ms: int | None = None) -> str:
    """A UUIDv7 (time-ordered), the id format Codex uses for new threads."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = secrets.randbits(74)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def rfc3339_ms(ms: int) -> str:
    """`2026-11-21T15:36:23.784Z`, the timestamp format of rollout lines."""
    t = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def new_rollout_path(codex_home: Path, thread_id: str, now_ms: int) -> Path:
    """`sessions/YYYY/MM/DD/rollout-YYYY-MM-DDThh-mm-ss-<id>.jsonl`, in local time."""
    local = datetime.fromtimestamp(now_ms / 1000)
    folder = codex_home / "sessions" / local.strftime("%Y/%m/%d")
    return folder / f"rollout-{local.strftime('%Y-%m-%dT%H-%M-%S')}-{thread_id}.jsonl"


def line(kind: str, payload: dict[str, Any], ts_ms: int) -> bytes:
    """One rollout line in the `{timestamp, type, payload}` envelope, newline included."""
    return codec.dumpb({"timestamp": rfc3339_ms(ts_ms), "type": kind, "payload": payload}) + b"\n"


@contextmanager
def single_writer(path: Path, owner: str, *, create: bool = False) -> Iterator[BinaryIO]:
    """Open `path` for appending, holding an exclusive advisory lock.

    A second writer (another `rollouts` process, or a thread of this one) gets
    `Conflict: <owner> already has an active writer` instead of interleaving
    its lines. Without `create`, a missing file is an error: appending to a
    rollout that was moved or deleted must not start a new fragment of it.
    """
    flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:
        raise InvalidInput(f"{owner}: file is gone: {path}") from None
    with os.fdopen(fd, "ab") as stream:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise Conflict(f"{owner} already has an active writer") from None
            raise
        yield stream


def _ends_with_newline(path: Path) -> bool:
    size = path.stat().st_size
    if size == 0:
        return True
    with open(path, "rb") as f:
        f.seek(size - 1)
        return f.read(1) == b"\n"


def append_lines(path: Path, owner: str, lines: Iterable[bytes], *, create: bool = False) -> int:
    """Append complete lines to a rollout file (durably); returns bytes written.

    If the file ends in a partial line (a writer died mid-line), a newline is
    written first so the new lines stay parseable; the partial line is kept
    as it is and recorded as a skip by ingest.
    """
    data = b"".join(lines)
    with single_writer(path, owner, create=create) as out:
        if not _ends_with_newline(path):
            data = b"\n" + data
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    return len(data)


def create_file(path: Path, lines: Iterable[bytes]) -> None:
    """Write a new rollout file atomically: a temporary name, fsync, then link.

    The file appears complete or not at all; an existing file is never
    replaced (Conflict).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as out:
            for chunk in lines:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise Conflict(f"rollout file already exists: {path}") from None
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)
