"""Streaming line framing for rollout files (plain `.jsonl` and `.jsonl.zst`).

Invariants:
- memory is bounded by the chunk size plus `max_line_bytes`, whatever the file
  size or line length; a longer line is reported with its head only;
- offsets are positions in the *decompressed* stream, so a file that Codex
  compresses or decompresses keeps its ingest position;
- a final line without a newline is reported with `terminated=False`; callers
  decide whether it is complete (a file still being written) or not.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

CHUNK_SIZE = 1 << 20
DEFAULT_MAX_LINE_BYTES = 8 << 20
# Bytes kept from a line that is too long to parse: enough to see its envelope
# (`{"timestamp":...,"ordinal":...,"type":"compacted",...`).
HEAD_OF_LONG_LINE = 512
FINGERPRINT_BYTES = 4096


@dataclass(slots=True)
class RawLine:
    number: int  # 0-based physical line number in the file
    offset: int  # byte offset of the first byte of the line
    end: int  # byte offset just after the line (after its newline if any)
    data: bytes  # the line without its newline; only the head when too long
    too_long: bool
    terminated: bool


def is_compressed(path: str | os.PathLike[str]) -> bool:
    return str(path).endswith(".zst")


def open_stream(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a rollout for reading as a byte stream of its JSONL content."""
    raw = open(path, "rb")  # noqa: SIM115 - returned to the caller
    if not is_compressed(path):
        return raw
    reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=True)
    return io.BufferedReader(reader, CHUNK_SIZE)


def skip_to(stream: BinaryIO, offset: int, compressed: bool) -> None:
    """Position `stream` at `offset` of the content (decompressing if needed)."""
    if offset <= 0:
        return
    if not compressed:
        stream.seek(offset)
        return
    left = offset
    while left > 0:
        got = stream.read(min(left, CHUNK_SIZE))
        if not got:
            break
        left -= len(got)


def iter_lines(
    stream: BinaryIO,
    *,
    start_offset: int = 0,
    start_number: int = 0,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    stop_at: int | None = None,
) -> Iterator[RawLine]:
    """Yield the lines of `stream` from its current position.

    `start_offset`/`start_number` say where that position is. With `stop_at`,
    reading stops at that content offset (used for history bases, which
    inherit a prefix of another rollout).
    """
    offset = start_offset
    number = start_number
    pending: list[bytes] = []  # pieces of the current unfinished line
    pending_len = 0
    too_long = False
    line_start = offset
    pos = offset  # content offset of the next unread byte
    while True:
        want = CHUNK_SIZE
        if stop_at is not None:
            want = min(want, stop_at - pos)
            if want <= 0:
                break
        chunk = stream.read(want)
        if not chunk:
            break
        start = 0
        n = len(chunk)
        while start < n:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                piece_len = n - start
                if not too_long:
                    if pending_len + piece_len > max_line_bytes:
                        too_long = True
                        head = b"".join(pending) + chunk[start : start + HEAD_OF_LONG_LINE]
                        pending = [head[:HEAD_OF_LONG_LINE]]
                    else:
                        pending.append(chunk[start:])
                pending_len += piece_len
                break
            piece_len = nl - start
            total = pending_len + piece_len
            if too_long or total > max_line_bytes:
                head = b"".join(pending) + chunk[start : start + HEAD_OF_LONG_LINE]
                data = head[:HEAD_OF_LONG_LINE]
                is_long = True
            elif pending:
                pending.append(chunk[start:nl])
                data = b"".join(pending)
                is_long = False
            else:
                data = chunk[start:nl]
                is_long = False
            end = line_start + total + 1
            yield RawLine(number, line_start, end, data, is_long, True)
            number += 1
            line_start = end
            pending = []
            pending_len = 0
            too_long = False
            start = nl + 1
        pos += n
    if pending_len:
        data = b"".join(pending)
        yield RawLine(number, line_start, line_start + pending_len, data, too_long, False)


def fingerprint(path: str | os.PathLike[str], start: int, length: int) -> str:
    """sha256 (hex) of `length` content bytes at `start` (decompressing if needed)."""
    if length <= 0:
        return ""
    with open_stream(path) as stream:
        skip_to(stream, start, is_compressed(path))
        data = stream.read(length)
    return hashlib.sha256(data).hexdigest()


def head_fingerprint(path: str | os.PathLike[str], content_size: int) -> tuple[int, str]:
    """(length, hash) of the first bytes of the file's content."""
    length = min(content_size, FINGERPRINT_BYTES)
    return length, fingerprint(path, 0, length)


def content_size(path: Path) -> int:
    """Size of the JSONL content (decompressed size for `.zst`)."""
    if not is_compressed(path):
        return path.stat().st_size
    total = 0
    with open_stream(path) as stream:
        while True:
            got = stream.read(CHUNK_SIZE)
            if not got:
                return total
            total += len(got)


def read_chunks(path: str | os.PathLike[str], limit: int | None = None) -> Iterator[bytes]:
    """The content of a rollout file (decompressed) in chunks, up to `limit` bytes."""
    with open_stream(path) as stream:
        left = limit
        while left is None or left > 0:
            chunk = stream.read(CHUNK_SIZE if left is None else min(left, CHUNK_SIZE))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk
