"""File steps of the archive service: each one atomic or idempotent.

Every step leaves a state the journal can finish from: files are written to a
temporary name in the destination folder, flushed, checked and only then
renamed into place; a source is removed only once its bytes are safe elsewhere.
`crash_point` lets the crash tests kill the process (SIGKILL) between steps.
"""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Iterable
from pathlib import Path

import zstandard

from store.rollout.framing import CHUNK_SIZE, open_stream

CRASH_ENV = "ROLLOUTS_CRASH_AT"
TMP_SUFFIX = ".rollouts-tmp"
ZSTD_LEVEL = 3  # what Codex's own compression job writes


def crash_point(name: str) -> None:
    """Die like `kill -9` here when ROLLOUTS_CRASH_AT names this point (tests only)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def content_hash(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of a rollout's JSONL content (decompressed for .zst)."""
    h = hashlib.sha256()
    size = 0
    with open_stream(path) as stream:
        while chunk := stream.read(CHUNK_SIZE):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def tmp_path(dst: Path) -> Path:
    return dst.with_name(dst.name + TMP_SUFFIX)


def write_chunks(dst: Path, chunks: Iterable[bytes], *, compress: bool = False) -> None:
    """Write `chunks` to dst's temporary name and flush it to disk (no rename)."""
    tmp = tmp_path(dst)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as raw:
        if compress:
            cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
            with cctx.stream_writer(raw, closefd=False) as out:
                for c in chunks:
                    out.write(c)
        else:
            for c in chunks:
                raw.write(c)
        raw.flush()
        os.fsync(raw.fileno())


def read_chunks(path: Path) -> Iterable[bytes]:
    """The JSONL content of a rollout (decompressed for .zst), in chunks."""
    with open_stream(path) as stream:
        while chunk := stream.read(CHUNK_SIZE):
            yield chunk


def commit_tmp(dst: Path, mtime_ns: int | None) -> None:
    """Rename dst's temporary file into place (atomic), keeping `mtime_ns`."""
    tmp = tmp_path(dst)
    if mtime_ns is not None:
        os.utime(tmp, ns=(mtime_ns, mtime_ns))
    os.replace(tmp, dst)
    fsync_dir(dst.parent)


def drop_tmp(dst: Path) -> None:
    tmp_path(dst).unlink(missing_ok=True)


def move(src: Path, dst: Path) -> None:
    """Rename src to dst (same file system), creating dst's folder; never overwrites."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        raise FileExistsError(f"{dst} already exists")
    os.rename(src, dst)
    fsync_dir(dst.parent)
    fsync_dir(src.parent)


def unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)


def busy_reason(path: Path, size: int, mtime_ns: int) -> str | None:
    """Why a file looks like Codex is writing it, or None.

    Codex's newest builds keep a writer lock next to the rollout; older ones
    do not, so a size or mtime that differs from what was indexed counts too.
    """
    for lock in (path.with_name(path.name + ".lock"), path.with_suffix(".lock")):
        if lock.exists():
            return f"locked by a writer ({lock.name})"
    try:
        st = path.stat()
    except FileNotFoundError:
        return "the file is gone (run `rollouts import`)"
    if st.st_size != size or st.st_mtime_ns != mtime_ns:
        return "changed since it was indexed (Codex may be writing it); run `rollouts import` and retry"
    return None
