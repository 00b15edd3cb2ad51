"""Parsing a user's search query into terms, and rendering them per database.

The syntax (the same meaning on SQLite and PostgreSQL):
- words: an item matches when it has every word (case-insensitive);
- "exact phrase": the words in this order, side by side; an unclosed quote
  runs to the end of the query;
- prefix*: a word starting with `prefix`;
- -word, -"phrase", -prefix*: items containing it are left out.

A word is a run of letters and digits; anything else separates words, as the
index does, so `snake_case_name` or `src/store.py` are phrases of their parts.
Nothing else is syntax: `OR`, `NEAR(`, `:`, `^` and SQL fragments are words or
separators. The rendered queries contain only letters, digits and operators
this module writes, and travel as bound parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from store.errors import InvalidInput

MAX_QUERY_CHARS = 16_384
MAX_TERMS = 64

WORD_RE = re.compile(r"[^\W_]+")
_PIECE_RE = re.compile(r'(-?)"([^"]*)("?)|(\S+)')


@dataclass(frozen=True)
class Term:
    """A word, or a phrase of words; `prefix`: the last word is a prefix."""

    words: tuple[str, ...]
    prefix: bool = False
    excluded: bool = False


@dataclass(frozen=True)
class WordQuery:
    terms: tuple[Term, ...]

    @property
    def positive(self) -> tuple[Term, ...]:
        return tuple(t for t in self.terms if not t.excluded)


def check_text(text: str) -> str:
    """Refuse what no search can mean: NUL characters, empty or huge queries."""
    if not isinstance(text, str):
        raise InvalidInput("the search query must be a string")
    if "\x00" in text:
        raise InvalidInput("the search query contains a NUL character")
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidInput(
            f"the search query is {len(text)} characters long; at most {MAX_QUERY_CHARS}"
        )
    if not text.strip():
        raise InvalidInput("the search query is empty")
    return text


def words_of(text: str) -> list[str]:
    """The index's words of a text, case-folded."""
    return [w.lower() for w in WORD_RE.findall(text)]


def parse_words(text: str) -> WordQuery:
    """Parse the word syntax; raise InvalidInput when nothing searchable is left."""
    check_text(text)
    terms: list[Term] = []
    for m in _PIECE_RE.finditer(text):
        if m.group(4) is not None:
            raw = m.group(4)
            excluded = raw.startswith("-") and len(raw) > 1
            if excluded:
                raw = raw[1:]
            prefix = raw.endswith("*")
        else:
            raw, excluded, prefix = m.group(2), bool(m.group(1)), False
            # "phrase"* : a prefix on the phrase's last word
            end = m.end()
            prefix = m.group(3) == '"' and text[end : end + 1] == "*"
        words = words_of(raw)
        if words:
            terms.append(Term(tuple(words), prefix, excluded))
    if len(terms) > MAX_TERMS:
        raise InvalidInput(f"the search query has {len(terms)} terms; at most {MAX_TERMS}")
    if not terms:
        raise InvalidInput(
            f"no words to search for in {text[:80]!r}; use --substring to find punctuation "
            "or symbols literally"
        )
    if not any(not t.excluded for t in terms):
        raise InvalidInput("the search query only excludes; add a word to look for")
    return WordQuery(tuple(terms))


def fts5_query(q: WordQuery) -> str:
    """The FTS5 MATCH string: every word quoted, so no user text is FTS syntax."""

    def render(t: Term) -> str:
        phrase = '"' + " ".join(t.words) + '"'
        return phrase + ("*" if t.prefix else "")

    pos = " AND ".join(render(t) for t in q.positive)
    neg = "".join(f" NOT {render(t)}" for t in q.terms if t.excluded)
    return f"({pos}){neg}"


def tsquery(q: WordQuery) -> str:
    """The to_tsquery('simple', ...) string: words joined with & <-> ! and :*."""

    def render(t: Term) -> str:
        words = list(t.words)
        if t.prefix:
            words[-1] += ":*"
        inner = " <-> ".join(words)
        return f"({inner})" if len(words) > 1 else inner

    parts = [render(t) for t in q.positive]
    parts += [f"!{render(t)}" for t in q.terms if t.excluded]
    return " & ".join(parts)


def like_pattern(text: str) -> str:
    """A LIKE/ILIKE pattern for a literal substring (backslash escapes)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def fts5_literal(text: str) -> str:
    """An FTS5 phrase of the exact text (for the trigram table)."""
    return '"' + text.replace('"', '""') + '"'
