"""The search index: SQLite FTS5 tables or PostgreSQL tsvector + pg_trgm.

Invariants:
- the index is derived from `items` only (`search_text`, `item_type`); it can
  be dropped and rebuilt at any time (`rollouts db reindex`) without loss;
- it is kept in step by database triggers, so every writer (ingest, append,
  fork, delete and its ON DELETE CASCADE, archive) updates it inside its own
  transaction, with no code path to forget; bulk import on SQLite swaps the
  per-row insert trigger for one INSERT ... SELECT per batch (`bulk_fill`),
  in the same transaction;
- words are the runs of letters and digits (`[^\\W_]+`), case-folded, with no
  stemming and no accent folding, on both databases: SQLite's unicode61
  tokenizer with remove_diacritics 0, and on PostgreSQL the 'simple'
  configuration over the text with every other character turned into a space;
- word search covers the first WORD_INDEX_CHARS characters of an item (a
  PostgreSQL tsvector must stay under 1 MB); substring search covers all of it;
- every object is named `search_*`, so migrations/env.py can keep them out of
  Alembic's autogenerate comparison (virtual tables, triggers and expression
  indexes are invisible to SQLAlchemy's metadata).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection

WORD_INDEX_CHARS = 100_000
PREFIX = "search_"

# Field weights: what the user typed ranks above agent text above tool output.
# PostgreSQL stores them as tsvector labels A/B/C/D; SQLite multiplies bm25.
WEIGHT_CLASSES: dict[str, str] = {
    "userMessage": "A",
    "agentMessage": "B",
    "plan": "B",
    "reasoning": "B",
    "enteredReviewMode": "B",
    "exitedReviewMode": "B",
    "commandExecution": "C",
    "fileChange": "C",
    "mcpToolCall": "C",
    "webSearch": "C",
}
WEIGHTS = {"A": 1.0, "B": 0.5, "C": 0.25, "D": 0.2}


def weight_case(column: str) -> str:
    """A SQL CASE giving the weight class letter of an item type column."""
    whens = " ".join(f"WHEN '{t}' THEN '{c}'" for t, c in WEIGHT_CLASSES.items())
    return f"(CASE {column} {whens} ELSE 'D' END)"


def weight_value_case(column: str) -> str:
    """A SQL CASE giving the numeric weight of an item type column (SQLite)."""
    whens = " ".join(f"WHEN '{t}' THEN {WEIGHTS[c]}" for t, c in WEIGHT_CLASSES.items())
    return f"(CASE {column} {whens} ELSE {WEIGHTS['D']} END)"


# -- SQLite ------------------------------------------------------------------------------

_SQLITE_INSERT_TRIGGER = f"""CREATE TRIGGER search_items_ai AFTER INSERT ON items BEGIN
        INSERT INTO search_words(rowid, search_text)
            VALUES (new.id, substr(new.search_text, 1, {WORD_INDEX_CHARS}));
        INSERT INTO search_trigrams(rowid, search_text) VALUES (new.id, new.search_text);
    END"""

# What the insert trigger does, for every item above a rowid at once (bulk_fill).
_SQLITE_FILL_ABOVE = [
    f"""INSERT INTO search_words(rowid, search_text)
        SELECT id, substr(search_text, 1, {WORD_INDEX_CHARS}) FROM items WHERE id > ?""",
    "INSERT INTO search_trigrams(rowid, search_text) SELECT id, search_text FROM items WHERE id > ?",
]

# External-content FTS5 tables store only the index, not a second copy of the
# text. The word index reads its (truncated) text through a view.
_SQLITE_CREATE = [
    f"""CREATE VIEW search_words_src AS
        SELECT id, substr(search_text, 1, {WORD_INDEX_CHARS}) AS search_text FROM items""",
    """CREATE VIRTUAL TABLE search_words USING fts5(
        search_text, content='search_words_src', content_rowid='id',
        tokenize='unicode61 remove_diacritics 0')""",
    # detail=full: trigram phrase queries (literal, Unicode case-folded
    # substrings) need positions; LIKE would fold ASCII only and treat % and _
    # as wildcards.
    """CREATE VIRTUAL TABLE search_trigrams USING fts5(
        search_text, content='items', content_rowid='id', tokenize='trigram')""",
    _SQLITE_INSERT_TRIGGER,
    f"""CREATE TRIGGER search_items_ad AFTER DELETE ON items BEGIN
        INSERT INTO search_words(search_words, rowid, search_text)
            VALUES ('delete', old.id, substr(old.search_text, 1, {WORD_INDEX_CHARS}));
        INSERT INTO search_trigrams(search_trigrams, rowid, search_text)
            VALUES ('delete', old.id, old.search_text);
    END""",
    f"""CREATE TRIGGER search_items_au AFTER UPDATE OF search_text ON items BEGIN
        INSERT INTO search_words(search_words, rowid, search_text)
            VALUES ('delete', old.id, substr(old.search_text, 1, {WORD_INDEX_CHARS}));
        INSERT INTO search_trigrams(search_trigrams, rowid, search_text)
            VALUES ('delete', old.id, old.search_text);
        INSERT INTO search_words(rowid, search_text)
            VALUES (new.id, substr(new.search_text, 1, {WORD_INDEX_CHARS}));
        INSERT INTO search_trigrams(rowid, search_text) VALUES (new.id, new.search_text);
    END""",
]

_SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS search_items_au",
    "DROP TRIGGER IF EXISTS search_items_ad",
    "DROP TRIGGER IF EXISTS search_items_ai",
    "DROP TABLE IF EXISTS search_trigrams",
    "DROP TABLE IF EXISTS search_words",
    "DROP VIEW IF EXISTS search_words_src",
]

_SQLITE_REBUILD = [
    "INSERT INTO search_words(search_words) VALUES ('rebuild')",
    "INSERT INTO search_trigrams(search_trigrams) VALUES ('rebuild')",
]

# -- PostgreSQL --------------------------------------------------------------------------

# The weighted tsvector of an item; `r` is the row (NEW, or an items alias).
_PG_TSV = (
    "setweight(to_tsvector('simple'::regconfig, regexp_replace("
    f"left({{r}}.search_text, {WORD_INDEX_CHARS}), '[^[:alnum:]]+', ' ', 'g')), "
    '{case}::"char")'
)


def pg_tsv(row: str) -> str:
    return _PG_TSV.format(r=row, case=weight_case(f"{row}.item_type"))


_PG_TRGM_INDEX = "CREATE INDEX search_items_trgm ON items USING gin (search_text gin_trgm_ops)"

_PG_CREATE = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    """CREATE TABLE search_words (
        id BIGINT PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
        tsv TSVECTOR NOT NULL)""",
    "CREATE INDEX search_words_tsv ON search_words USING gin (tsv)",
    _PG_TRGM_INDEX,
    # Statement-level triggers with transition tables: one INSERT ... SELECT
    # per bulk insert instead of one per row.
    f"""CREATE FUNCTION search_items_ins() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO search_words (id, tsv) SELECT n.id, {pg_tsv("n")} FROM search_new n;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER search_items_ai AFTER INSERT ON items
        REFERENCING NEW TABLE AS search_new
        FOR EACH STATEMENT EXECUTE FUNCTION search_items_ins()""",
    f"""CREATE FUNCTION search_items_upd() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE search_words w SET tsv = {pg_tsv("n")} FROM search_new n WHERE w.id = n.id;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER search_items_au AFTER UPDATE ON items
        REFERENCING NEW TABLE AS search_new
        FOR EACH STATEMENT EXECUTE FUNCTION search_items_upd()""",
]

_PG_DROP = [
    "DROP TRIGGER IF EXISTS search_items_au ON items",
    "DROP TRIGGER IF EXISTS search_items_ai ON items",
    "DROP FUNCTION IF EXISTS search_items_upd()",
    "DROP FUNCTION IF EXISTS search_items_ins()",
    "DROP INDEX IF EXISTS search_items_trgm",
    "DROP TABLE IF EXISTS search_words",
]

# After create_statements: search_words is empty and the trigram index, just
# created, already covers every item.
_PG_REBUILD = [
    f"INSERT INTO search_words (id, tsv) SELECT i.id, {pg_tsv('i')} FROM items i",
]


def create_statements(dialect: str) -> list[str]:
    """DDL that creates the index objects (empty; see rebuild_statements)."""
    return list(_SQLITE_CREATE if dialect == "sqlite" else _PG_CREATE)


def drop_statements(dialect: str) -> list[str]:
    return list(_SQLITE_DROP if dialect == "sqlite" else _PG_DROP)


def rebuild_statements(dialect: str) -> list[str]:
    """Statements that fill the index from `items`, right after create_statements."""
    return list(_SQLITE_REBUILD if dialect == "sqlite" else _PG_REBUILD)


def reindex(conn: Connection) -> None:
    """Drop, recreate and refill every index object, in the caller's transaction.

    Recreating (not only refilling) also repairs an index whose definition was
    damaged or dropped by hand.
    """
    dialect = conn.dialect.name
    for stmt in drop_statements(dialect) + create_statements(dialect):
        if dialect == "postgresql" and stmt.startswith("CREATE EXTENSION"):
            continue  # the extension outlives the index; creating it needs rights
        conn.exec_driver_sql(stmt)
    for stmt in rebuild_statements(dialect):
        conn.exec_driver_sql(stmt)


@contextmanager
def bulk_fill(conn: Connection) -> Iterator[None]:
    """Index the items inserted in the body in one pass instead of row by row.

    SQLite: the per-row insert trigger costs ~6x more than one INSERT ... SELECT
    per FTS5 table, so inside the caller's write transaction the trigger is
    dropped, the body inserts items, the new rows (every id above the largest
    id before the body) are indexed at once and the trigger is created again.
    DDL is transactional in SQLite and the caller holds the write lock, so no
    other connection ever sees the trigger missing or an item unindexed. The
    body must only insert into `items` (no deletes: a deleted top id could be
    reused). PostgreSQL's triggers are per statement already: nothing to do.
    """
    if (
        conn.dialect.name != "sqlite"
        or not conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = 'search_items_ai'"
        ).first()
    ):
        yield
        return
    above = conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM items").scalar_one()
    conn.exec_driver_sql("DROP TRIGGER search_items_ai")
    yield
    for stmt in _SQLITE_FILL_ABOVE:
        conn.exec_driver_sql(stmt, (above,))
    conn.exec_driver_sql(_SQLITE_INSERT_TRIGGER)


def defer_substring_index(conn: Connection) -> bool:
    """Before a first big import on PostgreSQL: drop the trigram index of `items`.

    Keeping a trigram GIN index up to date row batch by row batch costs several
    times more than building it once (CREATE INDEX sorts in bulk), so an import
    into an empty `items` drops it, and `ensure_substring_index` builds it when
    the import ends. Meanwhile substring search still answers (by a scan), and
    the word index (`search_words`) is kept as usual. Returns whether it dropped.
    """
    if conn.dialect.name != "postgresql":
        return False
    if conn.exec_driver_sql("SELECT 1 FROM items LIMIT 1").first() is not None:
        return False
    conn.exec_driver_sql("DROP INDEX IF EXISTS search_items_trgm")
    return True


def ensure_substring_index(conn: Connection) -> None:
    """Build the trigram index if it is missing (after a big import, or one that died)."""
    if conn.dialect.name != "postgresql":
        return
    missing = conn.exec_driver_sql("SELECT to_regclass('search_items_trgm') IS NULL").scalar()
    has_items = conn.exec_driver_sql("SELECT to_regclass('items') IS NOT NULL").scalar()
    if missing and has_items:
        conn.exec_driver_sql(_PG_TRGM_INDEX)


def is_search_object(name: str | None) -> bool:
    """Whether a database object belongs to the search index (for autogenerate)."""
    return bool(name) and str(name).startswith(PREFIX)
