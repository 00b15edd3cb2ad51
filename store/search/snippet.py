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


def word_matches(text: str, query: WordQuery) -> list[Range]:
    """Where the query's wanted terms occur (the indexed part of the text)."""
    tokens = [
        (m.start(), m.end(), m.group().lower())
        for m in WORD_RE.finditer(text[: WORD_INDEX_CHARS + 1000])
    ]
    out: list[Range] = []
    terms = query.positive
    for i in range(len(tokens)):
        for term in terms:
            n = len(term.words)
            if i + n > len(tokens):
                continue
            window = tokens[i : i + n]
            if all(tok[2] == w for tok, w in zip(window[:-1], term.words[:-1], strict=True)):
                last, want = window[-1][2], term.words[-1]
                if last == want or (term.prefix and last.startswith(want)):
                    out.append((window[0][0], window[-1][1]))
                    break
    return out


def substring_matches(text: str, needle: str) -> list[Range]:
    """Case-insensitive literal occurrences of `needle`, not overlapping."""
    return [(m.start(), m.end()) for m in re.finditer(re.escape(needle), text, re.IGNORECASE)]


def make_snippet(
    text: str, matches: list[Range], width: int = SNIPPET_CHARS
) -> tuple[str, list[Range]]:
    """A one-line excerpt around the first match, and the match ranges inside it."""
    first = matches[0][0] if matches else 0
    start = max(0, first - CONTEXT_BEFORE)
    end = min(len(text), start + width)
    if matches and matches[0][1] > end:  # a long match: show its start
        end = min(len(text), matches[0][1])
    # Do not cut a word in two at the edges.
    if start > 0:
        space = text.find(" ", start, first)
        start = space + 1 if space != -1 else start
    if end < len(text):
        space = text.rfind(" ", max(start, matches[0][1] if matches else start), end)
        end = space if space > start else end
    body = text[start:end].translate(_BLANKS)
    lead = ELLIPSIS if start > 0 else ""
    tail = ELLIPSIS if end < len(text) else ""
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
