"""Tables of the archive service, in the store's one `metadata`.

Invariants:
- a chunk is stored once, keyed by the sha256 of its raw bytes (content
  addressing): the same base64 image or replayed history in many rollouts
  costs its bytes once;
- a blob is the ordered list of chunks of one file's content; a blob is only
  used once `complete` (its sha256 checked after upload);
- every chunk row is referenced by some blob's `archive_blob_chunks` row from
  the transaction that inserts it on, so garbage collection never races an
  upload (both run under the store's write lock);
- a vaulted file keeps its `rollout_files` row (the thread stays listed) and
  gains an `archive_vault` row; a trashed file has no `rollout_files` row but
  an `archive_trash` row that holds its bytes (a file in the trash folder, or
  a blob);
- `archive_journal` holds every operation from intent to commit, so the next
  run finishes or rolls back one that was interrupted.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)

from store.sql.schema import BigId, metadata

journal = Table(
    "archive_journal",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("op", String(20), nullable=False),  # archive, unarchive, restore, delete, ...
    Column("thread_id", String(36)),
    Column("state", String(12), nullable=False),  # open, done, aborted
    Column("plan", Text, nullable=False),  # JSON: the file steps, replayable
    Column("message", Text),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Index(None, "state"),
)

chunks = Table(
    "archive_chunks",
    metadata,
    Column("hash", String(64), primary_key=True),  # sha256 of the raw bytes
    Column("raw_len", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),  # zstd frame of the raw bytes
)

blobs = Table(
    "archive_blobs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("sha256", String(64)),  # of the whole content; NULL while uploading
    Column("size", BigInteger, nullable=False, default=0),
    Column("complete", Boolean, nullable=False, default=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Index(None, "sha256"),
)

blob_chunks = Table(
    "archive_blob_chunks",
    metadata,
    Column("blob_id", BigId, ForeignKey("archive_blobs.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("chunk_hash", String(64), nullable=False),
    Index(None, "chunk_hash"),
)

vault = Table(
    "archive_vault",
    metadata,
    Column("file_id", BigId, ForeignKey("rollout_files.id", ondelete="CASCADE"), primary_key=True),
    Column("thread_id", String(36), nullable=False),
    Column("blob_id", BigId, ForeignKey("archive_blobs.id"), nullable=False),
    Column("source_rel", Text, nullable=False),  # where the file was when vaulted
    Column("mtime_ns", BigInteger, nullable=False),  # the file's mtime, given back on restore
    Column("vaulted_at_ms", BigInteger, nullable=False),
    Index(None, "thread_id"),
    Index(None, "blob_id"),
)

trash = Table(
    "archive_trash",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("thread_id", String(36), nullable=False),
    Column("root_id", Integer, ForeignKey("roots.id", ondelete="CASCADE"), nullable=False),
    Column("rel_path", Text, nullable=False),  # where the file goes back to
    Column("trash_rel", Text),  # the file in the trash folder, or NULL ...
    Column("blob_id", BigId, ForeignKey("archive_blobs.id")),  # ... its bytes in the vault
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("title", Text, nullable=False, default=""),
    Column("cwd", Text, nullable=False, default=""),
    Column("deleted_at_ms", BigInteger, nullable=False),
    Column("purge_after_ms", BigInteger, nullable=False),
    Index(None, "thread_id"),
    Index(None, "blob_id"),
)

audit = Table(
    "archive_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("op", String(20), nullable=False),
    Column("thread_id", String(36)),
    Column("path", Text, nullable=False, default=""),
    Column("bytes_before", BigInteger, nullable=False, default=0),
    Column("bytes_after", BigInteger, nullable=False, default=0),
    Column("detail", Text, nullable=False, default="{}"),
    Index(None, "at_ms"),
    Index(None, "thread_id"),
)
