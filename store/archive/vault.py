"""The vault: rollout content inside the database, chunked, deduplicated, zstd.

A multi-GB rollout never sits in memory: it is split into content-defined
chunks (store.archive.chunking), uploaded in small write transactions, and
read back chunk by chunk. Chunks are keyed by the sha256 of their raw bytes,
so repeated content is stored once, across all files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import zstandard
from sqlalchemy import Connection, Engine, delete, exists, func, insert, select, update

from store.archive import chunking
from store.archive import tables as t
from store.clock import now_ms
from store.errors import Conflict
from store.sql.engine import write_tx

UPLOAD_BATCH_BYTES = 8 << 20
READ_BATCH = 256
READ_BYTES = 8 << 20
ZSTD_LEVEL = 6


@dataclass(frozen=True)
class Blob:
    id: int
    sha256: str
    size: int


def new_blob(conn: Connection) -> int:
    """An empty, incomplete blob (to be filled by an `Uploader`)."""
    res = conn.execute(insert(t.blobs).values(size=0, complete=False, created_at_ms=now_ms()))
    pk = res.inserted_primary_key
    assert pk is not None
    return int(pk[0])


class Uploader:
    """Streams the content of many files into their blobs, several files per transaction.

    Chunks wait in a buffer shared by all files and go to the database, new
    ones compressed, one write transaction per `UPLOAD_BATCH_BYTES`; so small
    files share transactions and a big one never sits in memory.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self.pending: list[tuple[int, int, str, bytes]] = []  # blob, seq, hash, raw
        self.pending_bytes = 0

    def add(self, blob_id: int, stream: BinaryIO) -> tuple[str, int]:
        """Queue the content of `stream` as blob `blob_id`; its (sha256, size), hashed on the way."""
        h = hashlib.sha256()
        size = 0
        for seq, piece in enumerate(chunking.split(stream)):
            h.update(piece)
            size += len(piece)
            self.pending.append((blob_id, seq, hashlib.sha256(piece).hexdigest(), piece))
            self.pending_bytes += len(piece)
            if self.pending_bytes >= UPLOAD_BATCH_BYTES:
                self.flush()
        return h.hexdigest(), size

    def flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending, self.pending_bytes = self.pending, [], 0
        with write_tx(self.engine) as conn:
            hashes = list({hx for _b, _s, hx, _p in batch})
            present: set[str] = set()
            for i in range(0, len(hashes), 500):
                present.update(
                    conn.execute(
                        select(t.chunks.c.hash).where(t.chunks.c.hash.in_(hashes[i : i + 500]))
                    ).scalars()
                )
            new: dict[str, dict[str, object]] = {}
            for _b, _s, hx, piece in batch:
                if hx not in present and hx not in new:
                    new[hx] = {"hash": hx, "raw_len": len(piece), "data": self.cctx.compress(piece)}
            if new:
                conn.execute(insert(t.chunks), list(new.values()))
            conn.execute(
                insert(t.blob_chunks),
                [{"blob_id": b, "seq": q, "chunk_hash": hx} for b, q, hx, _p in batch],
            )


def finish(engine: Engine, conn: Connection, blob_id: int, sha: str, size: int) -> Blob:
    """Check an uploaded blob against what was sent and mark it complete.

    Reads the blob back from the database (`verify`) before anything relies
    on it; when a complete blob with the same content exists, the new one is
    dropped and the existing one returned (whole-file deduplication).
    """
    got_sha, got_size = verify(engine, blob_id, conn)
    if (got_sha, got_size) != (sha, size):
        raise Conflict(f"vault check failed for blob {blob_id}: read back differs from the file")
    twin = conn.execute(
        select(t.blobs.c.id).where(
            t.blobs.c.sha256 == sha, t.blobs.c.complete.is_(True), t.blobs.c.id != blob_id
        )
    ).first()
    if twin is not None:
        drop_blob(conn, blob_id)
        return Blob(int(twin[0]), sha, size)
    conn.execute(
        update(t.blobs).where(t.blobs.c.id == blob_id).values(sha256=sha, size=size, complete=True)
    )
    return Blob(blob_id, sha, size)


def read(engine: Engine, blob_id: int, conn: Connection | None = None) -> Iterator[bytes]:
    """The raw content of a blob, chunk by chunk (at most READ_BYTES of chunks in memory).

    Reads through `conn` when given (e.g. inside a write transaction). Each
    page first looks at the sizes of the next READ_BATCH chunks, then fetches
    the data of as many as fit in READ_BYTES (at least one): small chunks
    come many per query, 1 MiB image pieces a few at a time.
    """
    dctx = zstandard.ZstdDecompressor()
    seq = 0
    bc, ch = t.blob_chunks.c, t.chunks.c
    while True:
        sizes = select(bc.seq, ch.raw_len).join(t.chunks, ch.hash == bc.chunk_hash)
        sizes = sizes.where(bc.blob_id == blob_id, bc.seq >= seq).order_by(bc.seq).limit(READ_BATCH)
        page = _rows(engine, conn, sizes)
        if not page:
            return
        last, total = page[0][0], 0
        for row_seq, raw_len in page:
            if total and total + raw_len > READ_BYTES:
                break
            last, total = row_seq, total + raw_len
        q = (
            select(bc.seq, ch.data, ch.raw_len)
            .join(t.chunks, ch.hash == bc.chunk_hash)
            .where(bc.blob_id == blob_id, bc.seq >= seq, bc.seq <= last)
            .order_by(bc.seq)
        )
        for row_seq, data, raw_len in _rows(engine, conn, q):
            if row_seq != seq:
                raise Conflict(f"vault blob {blob_id} is missing chunk {seq}")
            yield dctx.decompress(bytes(data), max_output_size=raw_len)
            seq += 1


def _rows(engine: Engine, conn: Connection | None, q: Any) -> list[Any]:
    if conn is not None:
        return list(conn.execute(q).all())
    with engine.connect() as c:
        return list(c.execute(q).all())


def verify(engine: Engine, blob_id: int, conn: Connection | None = None) -> tuple[str, int]:
    """(sha256, size) of the blob as read back from the database."""
    h = hashlib.sha256()
    size = 0
    for piece in read(engine, blob_id, conn):
        h.update(piece)
        size += len(piece)
    return h.hexdigest(), size


def get(conn: Connection, blob_id: int) -> Blob | None:
    row = conn.execute(
        select(t.blobs.c.sha256, t.blobs.c.size).where(
            t.blobs.c.id == blob_id, t.blobs.c.complete.is_(True)
        )
    ).first()
    return None if row is None else Blob(blob_id, str(row[0]), int(row[1]))


def is_referenced(conn: Connection, blob_id: int) -> bool:
    in_vault = conn.execute(select(exists().where(t.vault.c.blob_id == blob_id))).scalar()
    in_trash = conn.execute(select(exists().where(t.trash.c.blob_id == blob_id))).scalar()
    return bool(in_vault or in_trash)


def release(conn: Connection, blob_id: int) -> None:
    """Drop the blob if nothing refers to it any more (inside a write transaction)."""
    if not is_referenced(conn, blob_id):
        drop_blob(conn, blob_id)


def drop_blob(conn: Connection, blob_id: int) -> None:
    """Delete a blob and every chunk no other blob uses."""
    last = -1
    while True:
        rows = conn.execute(
            select(t.blob_chunks.c.seq, t.blob_chunks.c.chunk_hash)
            .where(t.blob_chunks.c.blob_id == blob_id, t.blob_chunks.c.seq > last)
            .order_by(t.blob_chunks.c.seq)
            .limit(500)
        ).all()
        if not rows:
            break
        last = rows[-1][0]
        hashes = {r[1] for r in rows}
        conn.execute(
            delete(t.blob_chunks).where(
                t.blob_chunks.c.blob_id == blob_id, t.blob_chunks.c.seq <= last
            )
        )
        # One index probe per chunk (EXISTS stops at the first reference): a
        # chunk shared by thousands of blobs must not cost thousands of rows.
        still = set(
            conn.execute(
                select(t.chunks.c.hash).where(
                    t.chunks.c.hash.in_(hashes),
                    exists().where(t.blob_chunks.c.chunk_hash == t.chunks.c.hash),
                )
            ).scalars()
        )
        gone = hashes - still
        if gone:
            conn.execute(delete(t.chunks).where(t.chunks.c.hash.in_(gone)))
    conn.execute(delete(t.blobs).where(t.blobs.c.id == blob_id))


def totals(conn: Connection) -> dict[str, int]:
    """Logical bytes in complete blobs vs raw and stored bytes of the chunks."""
    logical = conn.execute(
        select(func.coalesce(func.sum(t.blobs.c.size), 0)).where(t.blobs.c.complete.is_(True))
    ).scalar_one()
    unique_raw, stored = conn.execute(
        select(
            func.coalesce(func.sum(t.chunks.c.raw_len), 0),
            func.coalesce(func.sum(func.length(t.chunks.c.data)), 0),
        )
    ).one()
    return {"logical": int(logical), "uniqueRaw": int(unique_raw), "stored": int(stored)}
