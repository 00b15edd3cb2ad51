"""Content-defined chunking of rollout content, for deduplication in the vault.

Rollouts repeat themselves: a compaction or a fork re-embeds the same base64
image and replays whole stretches of history, inside one file and across
files. Fixed-size chunks would miss all of it (one inserted byte shifts every
later chunk), so boundaries are chosen by the content itself:

- every run of base64 characters of at least `BIG_RUN` bytes (an image, a
  file attachment) is cut out as its own chunk(s), counted from the run's
  start, so the same image gives the same chunks wherever it is embedded;
- elsewhere a chunk ends at a line end when a hash of that line hits a
  1-in-`LINE_MODULUS` condition (and the chunk has `MIN_CHUNK` bytes), or at
  `MAX_CHUNK` bytes; replayed lines therefore fall back into step with the
  original after at most a few lines.

The splitter streams: it holds at most one read block plus one chunk.
The concatenation of the chunks is the input, byte for byte.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from typing import BinaryIO

READ_BLOCK = 1 << 20
BIG_RUN = 4096
RUN_PIECE = 1 << 20  # a huge base64 run is cut in pieces of this size from its start
MIN_CHUNK = 8 << 10
MAX_CHUNK = 1 << 20
LINE_MODULUS = 8

# A base64 run starting where no base64 character precedes it, so the regex
# engine tries each run once (linear time) instead of from every position.
_RUN = re.compile(rb"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{%d,}={0,2}" % BIG_RUN)
_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


class _TextChunker:
    """Groups text (not big runs) into chunks that end at chosen line ends."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, text: bytes) -> Iterator[bytes]:
        start = 0
        while True:
            nl = text.find(b"\n", start)
            if nl < 0:
                self.buf += text[start:]
                while len(self.buf) >= MAX_CHUNK:
                    yield bytes(self.buf[:MAX_CHUNK])
                    del self.buf[:MAX_CHUNK]
                return
            line_start = len(self.buf)
            self.buf += text[start : nl + 1]
            start = nl + 1
            line = memoryview(self.buf)[line_start:]
            hit = zlib.crc32(line) % LINE_MODULUS == 0
            line.release()
            if (hit and len(self.buf) >= MIN_CHUNK) or len(self.buf) >= MAX_CHUNK:
                yield bytes(self.buf)
                self.buf.clear()

    def flush(self) -> Iterator[bytes]:
        if self.buf:
            yield bytes(self.buf)
            self.buf.clear()


def _run_pieces(run: bytes) -> Iterator[bytes]:
    for i in range(0, len(run), RUN_PIECE):
        yield run[i : i + RUN_PIECE]


def split(stream: BinaryIO) -> Iterator[bytes]:
    """The content of `stream` as content-defined chunks (each ≤ MAX_CHUNK bytes)."""
    text = _TextChunker()
    carry = b""
    while True:
        block = stream.read(READ_BLOCK)
        data = carry + block if carry else block
        if not data:
            break
        end = len(data)
        if block:
            # Hold back a trailing base64 tail: it may be the start of a run
            # that continues in the next block.
            end = len(data.rstrip(_B64_CHARS))
            if end == 0 and len(data) >= RUN_PIECE + BIG_RUN:
                # One run longer than a piece: emit whole pieces from its start.
                n = (len(data) - BIG_RUN) // RUN_PIECE * RUN_PIECE
                yield from text.flush()
                yield from _run_pieces(data[:n])
                carry = data[n:]
                # The rest continues the same run: keep it from matching as a
                # new run start by leaving it in the carry for the next block.
                continue
        pos = 0
        for m in _RUN.finditer(data, 0, end):
            yield from text.feed(data[pos : m.start()])
            yield from text.flush()
            yield from _run_pieces(m.group())
            pos = m.end()
        yield from text.feed(data[pos:end])
        carry = data[end:]
        if not block:
            break
    if carry:
        yield from text.feed(carry)
    yield from text.flush()
