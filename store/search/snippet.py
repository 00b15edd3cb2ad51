"""Finding matches in an item's text and cutting a snippet around them.

Matching runs in Python on the few items of a page, with the same word rules
as the index (store.search.query), so snippets and match ranges mean the same
on both databases. Ranges are [start, end) offsets in characters (code points)
of the snippet; `utf16_range` converts them for the app-server wire.
"""

from __future__ import annotations

import re

from store.search.query import WORD_RE, WordQuery
from store.search.schema import WORD_INDEX_CHARS

SNIPPET_CHARS = 200
CONTEXT_BEFORE = 60
ELLIPSIS = "…"
_BLANKS = str.maketrans({"\n": " ", "\r": " ", "\t": " "})

Range = tuple[int, int]


def snippet_limit(first: Range, width: int = SNIPPET_CHARS) -> int:
    """An offset past which no match can show in the snippet around `first`.

    make_snippet keeps matches that start before its end, and its end is at
    most the later of `first`'s end and `width` past where the snippet starts.
    """
    return max(first[1], max(0, first[0] - CONTEXT_BEFORE) + width)


def word_matches(text: str, query: WordQuery, snippet_only: bool = False) -> list[Range]:
    """Where the query's wanted terms occur (the indexed part of the text).

    With `snippet_only`, stop reading past the snippet around the first match:
    the result is the prefix of the full list that make_snippet uses, so a hit
    in a long command output costs its first matches, not the whole text.
    """
    terms = query.positive
    # A term can start only at a token equal to its first word (or starting
    # with it, for a one-word prefix term): most tokens fail one set lookup.
    firsts = {t.words[0] for t in terms if len(t.words) > 1 or not t.prefix}
    prefixes = tuple(t.words[0] for t in terms if len(t.words) == 1 and t.prefix)
    found = WORD_RE.finditer(text[: WORD_INDEX_CHARS + 1000])
    tokens: list[tuple[int, int, str]] = []  # read lazily: (start, end, lowercased)

    def have(count: int) -> bool:
        while len(tokens) < count:
            m = next(found, None)
            if m is None:
                return False
            tokens.append((m.start(), m.end(), m.group().lower()))
        return True

    out: list[Range] = []
    limit: int | None = None
    i = 0
    while have(i + 1):
        start, _, tok = tokens[i]
        if limit is not None and start >= limit:
            break
        if tok in firsts or (prefixes and tok.startswith(prefixes)):
            for term in terms:
                n = len(term.words)
                if not have(i + n):
                    continue
                window = tokens[i : i + n]
                if all(t[2] == w for t, w in zip(window[:-1], term.words[:-1], strict=True)):
                    last, want = window[-1][2], term.words[-1]
                    if last == want or (term.prefix and last.startswith(want)):
                        out.append((start, window[-1][1]))
                        if snippet_only and limit is None:
                            limit = snippet_limit(out[0])
                        break
        i += 1
    return out


def substring_matches(text: str, needle: str, snippet_only: bool = False) -> list[Range]:
    """Case-insensitive literal occurrences of `needle`, not overlapping.

    `snippet_only`: only those make_snippet can show (see word_matches).
    """
    out: list[Range] = []
    limit: int | None = None
    for m in re.finditer(re.escape(needle), text, re.IGNORECASE):
        if limit is not None and m.start() >= limit:
            break
        out.append((m.start(), m.end()))
        if snippet_only and limit is None:
            limit = snippet_limit(out[0])
    return out


def make_snippet(
    text: str, matches: list[Range], width: int = SNIPPET_CHARS, size: int | None = None
) -> tuple[str, list[Range]]:
    """A one-line excerpt around the first match, and the match ranges inside it.

    `size`: the length of the whole text when `text` is only its head (long
    enough to hold the snippet); it decides the trailing ellipsis.
    """
    whole = len(text) if size is None else size
    first = matches[0][0] if matches else 0
    start = max(0, first - CONTEXT_BEFORE)
    end = min(len(text), start + width)
    if matches and matches[0][1] > end:  # a long match: show its start
        end = min(len(text), matches[0][1])
    # Do not cut a word in two at the edges.
    if start > 0:
        space = text.find(" ", start, first)
        start = space + 1 if space != -1 else start
    if end < whole:
        space = text.rfind(" ", max(start, matches[0][1] if matches else start), end)
        end = space if space > start else end
    body = text[start:end].translate(_BLANKS)
    lead = ELLIPSIS if start > 0 else ""
    tail = ELLIPSIS if end < whole else ""
    shift = len(lead) - start
    ranges = [
        (max(s, start) + shift, min(e, end) + shift) for s, e in matches if s < end and e > start
    ]
    return lead + body + tail, ranges


def utf16_offset(text: str, index: int) -> int:
    """The UTF-16 code-unit offset of a code-point index (the wire's unit)."""
    return len(text[:index].encode("utf-16-le")) // 2


def utf16_range(text: str, r: Range) -> dict[str, int]:
    return {"start": utf16_offset(text, r[0]), "end": utf16_offset(text, r[1])}
