"""Content-defined chunking of rollout content, for deduplication in the vault.

Rollouts repeat themselves: every session of a Codex version starts with the
same 20 KB of base instructions, a compaction or a fork re-embeds the same
base64 image and replays whole stretches of history, inside one file and
across files. But no two lines are byte-equal: each starts with its own
timestamp (and ids). So boundaries are chosen by the content itself, inside
lines too:

- every run of base64 characters of at least `BIG_RUN` bytes (an image, a
  file attachment) is cut out as its own chunk(s), counted from the run's
  start, so the same image gives the same chunks wherever it is embedded;
- elsewhere a chunk may end after an *anchor*: a line end or an escaped
  newline (`\\n` inside a JSON string, i.e. a line of the text a message or
  an instruction carries). It ends there when a hash of the `WINDOW` bytes
  before the anchor hits a 1-in-`MODULUS` condition and the chunk has
  `MIN_CHUNK` bytes; always at `MAX_CHUNK` bytes. Equal text therefore gets
  equal boundaries wherever it sits, and a line whose only difference is its
  timestamp shares every chunk after its first anchor.

Anchors are found by the regex engine and only from `MIN_CHUNK` bytes into a
chunk on, so Python code runs a few times per chunk, not per byte.
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
MIN_CHUNK = 1 << 10
MAX_CHUNK = 1 << 20
MODULUS = 4
WINDOW = 32

# A base64 run starting where no base64 character precedes it, so the regex
# engine tries each run once (linear time) instead of from every position.
_RUN = re.compile(rb"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{%d,}={0,2}" % BIG_RUN)
_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_ANCHOR = re.compile(rb"\n|\\n")


class _TextChunker:
    """Groups text (not big runs) into chunks that end after chosen anchors."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.scan = 0  # where in buf to look for the next anchor

    def feed(self, text: bytes) -> Iterator[bytes]:
        buf = self.buf
        buf += text
        while True:
            m = _ANCHOR.search(buf, max(self.scan, MIN_CHUNK))
            if m is None or m.end() > MAX_CHUNK:
                if len(buf) < MAX_CHUNK:
                    # Look again at the last byte: it may be the `\` of a `\n`.
                    self.scan = max(len(buf) - 1, 0)
                    return
                yield bytes(buf[:MAX_CHUNK])
                del buf[:MAX_CHUNK]
                self.scan = 0
                continue
            end = m.end()
            if zlib.crc32(buf[max(0, end - WINDOW) : end]) % MODULUS == 0:
                yield bytes(buf[:end])
                del buf[:end]  # O(1) at the front of a bytearray
                self.scan = 0
            else:
                self.scan = end

    def flush(self) -> Iterator[bytes]:
        if self.buf:
            yield bytes(self.buf)
            self.buf.clear()
        self.scan = 0


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
