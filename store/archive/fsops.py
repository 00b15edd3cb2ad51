"""File steps of the archive service: each one atomic or idempotent.

Every step leaves a state the journal can finish from: files are written to a
temporary name in the destination folder, flushed, checked and only then
renamed into place; a source is removed only once its bytes are safe elsewhere.
`crash_point` lets the crash tests kill the process (SIGKILL) between steps.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, cast

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


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return cast(Callable[[int], int], fn)


_SYNCFS = _load_syncfs() if sys.platform.startswith("linux") else None


class DirSync:
    """Files and folders to make durable together, once per batch phase.

    A batch of file steps writes temporary copies and renames and unlinks in
    a few folders. `flush` makes all of it durable before anything that
    depends on it (the next phase, the database commit) runs: on Linux with
    one `syncfs` per file system, else with one fsync per file and folder.
    """

    def __init__(self) -> None:
        self.files: set[Path] = set()
        self.dirs: set[Path] = set()

    def add(self, *paths: Path) -> None:
        self.dirs.update(paths)

    def add_file(self, path: Path) -> None:
        self.files.add(path)

    def flush(self) -> None:
        paths = sorted(self.files | self.dirs)
        self.files.clear()
        self.dirs.clear()
        if _SYNCFS is not None:
            devices: dict[int, Path] = {}
            for p in paths:
                with contextlib.suppress(FileNotFoundError):
                    devices.setdefault(os.stat(p).st_dev, p)
            for p in devices.values():
                fd = os.open(p, os.O_RDONLY)
                try:
                    if _SYNCFS(fd) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, os.strerror(err), str(p))
                finally:
                    os.close(fd)
            return
        for p in paths:
            with contextlib.suppress(FileNotFoundError):  # gone: nothing to make durable
                fsync_dir(p)  # works for files too (read-only descriptor)


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


def write_chunks(
    dst: Path, chunks: Iterable[bytes], sync: DirSync | None = None
) -> tuple[str, int]:
    """Write `chunks` to dst's temporary name and flush it to disk (no rename).

    Returns (sha256, size) of what was written, hashed on the way (one pass).
    With `sync` the flush is left to `sync.flush()` (once for a batch).
    """
    tmp = tmp_path(dst)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    size = 0
    with open(tmp, "wb") as raw:
        for c in chunks:
            raw.write(c)
            h.update(c)
            size += len(c)
        _flush(raw, tmp, sync)
    return h.hexdigest(), size


def _flush(raw: BinaryIO, tmp: Path, sync: DirSync | None) -> None:
    raw.flush()
    if sync is None:
        os.fsync(raw.fileno())
    else:
        sync.add_file(tmp)


def write_compressed(dst: Path, src: Path, sync: DirSync | None = None) -> tuple[str, int]:
    """Compress src into dst's temporary name, checked, flushed (no rename); one read of src.

    Each compressed piece is decompressed again on the way and hashed, so the
    returned (sha256, size) is that of what the written file decompresses to;
    the caller compares it with the source's (`hash_of_read`), also taken on
    the way, so the source is read once and the output never re-read.
    """
    tmp = tmp_path(dst)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    h_in = hashlib.sha256()
    h_out = hashlib.sha256()
    n_in = n_out = 0
    cobj = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()
    dobj = zstandard.ZstdDecompressor().decompressobj()

    def emit(raw: BinaryIO, piece: bytes) -> None:
        nonlocal n_out
        if piece:
            raw.write(piece)
            plain = dobj.decompress(piece)
            h_out.update(plain)
            n_out += len(plain)

    with open(src, "rb") as fin, open(tmp, "wb") as raw:
        while chunk := fin.read(CHUNK_SIZE):
            h_in.update(chunk)
            n_in += len(chunk)
            emit(raw, cobj.compress(chunk))
        emit(raw, cobj.flush())
        _flush(raw, tmp, sync)
    if (h_out.hexdigest(), n_out) != (h_in.hexdigest(), n_in):
        drop_tmp(dst)
        raise OSError(f"compressed copy of {src} does not decompress to the original")
    return h_in.hexdigest(), n_in


def commit_tmp(dst: Path, mtime_ns: int | None, sync: DirSync | None = None) -> None:
    """Rename dst's temporary file into place (atomic), keeping `mtime_ns`.

    With `sync` the folder is fsynced later, once for the batch; else now.
    """
    tmp = tmp_path(dst)
    if mtime_ns is not None:
        os.utime(tmp, ns=(mtime_ns, mtime_ns))
    os.replace(tmp, dst)
    _durable(sync, dst.parent)


def _durable(sync: DirSync | None, *dirs: Path) -> None:
    if sync is not None:
        sync.add(*dirs)
    else:
        for d in dirs:
            fsync_dir(d)


def drop_tmp(dst: Path) -> None:
    tmp_path(dst).unlink(missing_ok=True)


def move(src: Path, dst: Path, sync: DirSync | None = None) -> None:
    """Rename src to dst (same file system), creating dst's folder; never overwrites."""
    if not dst.parent.is_dir():
        dst.parent.mkdir(parents=True, exist_ok=True)
        _durable(sync, dst.parent.parent)
    if dst.exists():
        raise FileExistsError(f"{dst} already exists")
    os.rename(src, dst)
    _durable(sync, dst.parent, src.parent)


def unlink(path: Path, sync: DirSync | None = None) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    _durable(sync, path.parent)


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
