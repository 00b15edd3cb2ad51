"""The database schema: one definition for SQLite and PostgreSQL.

Invariants:
- times are integers: `*_ms` columns are Unix milliseconds;
- `items.data` holds the app-server `ThreadItem` JSON as text (orjson output),
  so a read hands it to the wire without re-encoding;
- a thread's history (its rows in `turns`/`items`, after any shared prefix
  from its parent: `threads.history_*`) is exactly the state of its history
  reducer: open turns included (`is_open`), so a file that grows is reduced
  further from the database alone;
- the original bytes live in the rollout files; `rollout_files` says where each
  file is and how far it has been read.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# Named constraints so that SQLite batch migrations can drop them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite only has 64-bit INTEGER; BigInteger maps to BIGINT on PostgreSQL.
# An INTEGER PRIMARY KEY on SQLite is the rowid (what FTS5 content tables use).
BigId = BigInteger().with_variant(Integer(), "sqlite")

roots = Table(
    "roots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("path", Text, nullable=False, unique=True),
    # Progress through the root's append-only session_index.jsonl.
    Column("index_offset", BigInteger, nullable=False, default=0),
    Column("index_head", String(64), nullable=False, default=""),
    Column("added_at_ms", BigInteger, nullable=False),
)

threads = Table(
    "threads",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("session_id", String(64)),
    Column("forked_from_id", String(64)),
    Column("parent_thread_id", String(64)),
    Column("preview", Text, nullable=False, default=""),
    Column("first_user_message", Text, nullable=False, default=""),
    Column("model_provider", String(200)),  # NULL: the file names none (default provider)
    Column("model", String(200)),
    Column("reasoning_effort", String(50)),
    Column("cwd", Text, nullable=False, default=""),
    Column("cli_version", String(100), nullable=False, default=""),
    Column("originator", String(200)),
    Column("source", Text, nullable=False, default="vscode"),  # wire SessionSource as JSON
    Column("source_kind", String(40), nullable=False, default="vscode"),  # ThreadSourceKind
    Column("thread_source", String(100)),
    Column("agent_nickname", Text),
    Column("agent_role", Text),
    Column("agent_path", Text),
    Column("git_sha", String(100)),
    Column("git_branch", Text),
    Column("git_origin_url", Text),
    Column("created_at_ms", BigInteger, nullable=False),
    # created_at in whole seconds: the created_at sort order of Codex (second
    # precision, ties by id), kept as a column so the keyset has an index.
    Column("created_at_s", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("recency_at_ms", BigInteger, nullable=False),
    Column("archived", Boolean, nullable=False, default=False),
    Column("archived_at_ms", BigInteger),
    Column("history_mode", String(20), nullable=False, default="legacy"),
    Column("reducer_mode", String(20), nullable=False, default="legacy"),
    Column("reducer_state", Text, nullable=False, default="{}"),
    Column("tokens_input", BigInteger),
    Column("tokens_cached_input", BigInteger),
    Column("tokens_output", BigInteger),
    Column("tokens_reasoning_output", BigInteger),
    Column("tokens_total", BigInteger),
    Column("turn_count", Integer, nullable=False, default=0),
    Column("item_count", Integer, nullable=False, default=0),
    Column("bytes", BigInteger, nullable=False, default=0),
    Column("live_file_id", BigInteger),  # rollout_files.id of the file being appended to
    Column("meta", Text, nullable=False, default="{}"),  # first session_meta, minus instructions
    # Shared history (store.sql.history): the turns at positions below
    # `history_turns`, and their items, are not stored for this thread but read
    # from `history_parent_id`'s history, their line numbers plus
    # `history_line_shift`. Set on a fork whose history starts with its
    # parent's; NULL parent: every row is the thread's own. A parent with
    # threads sharing its rows cannot be deleted (the foreign key) until they
    # get their own copies (history.detach).
    Column("history_parent_id", String(36), ForeignKey("threads.id")),
    Column("history_turns", Integer, nullable=False, default=0),
    Column("history_line_shift", BigInteger, nullable=False, default=0),
    Index(None, "archived", "created_at_s", "id"),
    Index(None, "archived", "updated_at_ms", "id"),
    Index(None, "archived", "recency_at_ms", "id"),
    # thread/list filtered by cwd, in its default order (created_at, newest first).
    Index(None, "cwd", "archived", "created_at_s", "id"),
    Index(None, "forked_from_id"),
    Index(None, "history_parent_id"),
)

rollout_files = Table(
    "rollout_files",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("root_id", Integer, ForeignKey("roots.id", ondelete="CASCADE"), nullable=False),
    Column("rel_path", Text, nullable=False),
    Column("thread_id", String(36), ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    Column("rollout_id", String(36), nullable=False),  # thread id, or the segment id
    Column("is_segment", Boolean, nullable=False, default=False),
    Column("compressed", Boolean, nullable=False, default=False),
    Column("archived", Boolean, nullable=False, default=False),
    Column("size", BigInteger, nullable=False),  # bytes on disk
    Column("mtime_ns", BigInteger, nullable=False),
    Column("head_len", Integer, nullable=False),
    Column("head_hash", String(64), nullable=False),
    # Content offset and physical line number up to which the file is indexed
    # (a trailing partial line is not consumed until its newline arrives).
    Column("offset", BigInteger, nullable=False, default=0),
    Column("line_count", BigInteger, nullable=False, default=0),
    Column("last_ordinal", BigInteger),
    Column("skipped_lines", Integer, nullable=False, default=0),
    Column("base_rollout_id", String(36)),
    Column("base_end_offset", BigInteger),
    Column("line_kinds", Text, nullable=False, default="{}"),  # counts per record kind
    Column("indexed_at_ms", BigInteger, nullable=False),
    UniqueConstraint("root_id", "rel_path"),
    Index(None, "thread_id"),
    Index(None, "rollout_id"),
)

skipped_lines = Table(
    "skipped_lines",
    metadata,
    Column("file_id", BigId, ForeignKey("rollout_files.id", ondelete="CASCADE"), primary_key=True),
    Column("line", BigInteger, primary_key=True),
    Column("byte_offset", BigInteger, nullable=False),
    Column("length", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
)

turns = Table(
    "turns",
    metadata,
    Column("thread_id", String(36), ForeignKey("threads.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("turn_id", Text, nullable=False),
    Column("root_turn_id", Text),
    Column("status", String(20), nullable=False),
    Column("error", Text),  # TurnError JSON
    Column("started_at", BigInteger),
    Column("completed_at", BigInteger),
    Column("duration_ms", BigInteger),
    Column("explicit", Boolean, nullable=False),
    Column("saw_compaction", Boolean, nullable=False),
    Column("is_open", Boolean, nullable=False),
    Column("first_line", BigInteger, nullable=False),
    Column("last_line", BigInteger, nullable=False),
    Column("item_count", Integer, nullable=False),
    Index(None, "thread_id", "turn_id"),
)

items = Table(
    "items",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("thread_id", String(36), ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    Column("turn_position", Integer, nullable=False),
    Column("position", Integer, nullable=False),  # within the thread
    Column("item_id", Text, nullable=False),
    Column("item_type", String(40), nullable=False),
    Column("line", BigInteger, nullable=False),
    Column("created_at_ms", BigInteger),
    Column("data", Text, nullable=False),  # ThreadItem JSON
    Column("search_text", Text, nullable=False, default=""),
    UniqueConstraint("thread_id", "position"),
    Index(None, "thread_id", "turn_position"),
)

thread_names = Table(
    "thread_names",
    metadata,
    Column("thread_id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("updated_at", String(64)),
    Column("root_id", Integer, ForeignKey("roots.id", ondelete="SET NULL")),
)

# Thread metadata that Codex keeps only in its state database (thread/metadata/update),
# layered over what the rollout files say. `<column>_set` tells "cleared" from "not set".
thread_overrides = Table(
    "thread_overrides",
    metadata,
    Column("thread_id", String(36), ForeignKey("threads.id", ondelete="CASCADE"), primary_key=True),
    Column("git_sha", Text),
    Column("git_branch", Text),
    Column("git_origin_url", Text),
    Column("git_sha_set", Boolean, nullable=False, default=False),
    Column("git_branch_set", Boolean, nullable=False, default=False),
    Column("git_origin_url_set", Boolean, nullable=False, default=False),
    Column("updated_at_ms", BigInteger, nullable=False),
)
