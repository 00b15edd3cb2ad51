"""The RFC 3339 parser against datetime.fromisoformat, on every timestamp of the real corpora."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from store.rollout.thread import parse_rfc3339_ms
from tests.conftest import CORPUS

_TS = re.compile(rb'"(\d{4}-\d\d-\d\d[Tt ][^"]{0,40})"')


def _reference(value: str) -> int | None:
    """What a timestamp means: fromisoformat, with Z as UTC and at most 6 fraction digits."""
    s = value.strip()
    if s[-1:] in ("Z", "z"):
        s = s[:-1] + "+00:00"
    m = re.match(r"^([^.]*)\.(\d+)(.*)$", s)
    if m:
        s = f"{m[1]}.{m[2][:6]}{m[3]}"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _corpus_timestamps() -> set[str]:
    found: set[str] = set()
    for path in CORPUS.rglob("*.jsonl"):
        with open(path, "rb") as fh:
            for line in fh:
                found.update(m.decode() for m in _TS.findall(line))
    return found


def test_every_corpus_timestamp_parses_as_fromisoformat_does() -> None:
    values = _corpus_timestamps()
    assert len(values) > 500
    for value in values:
        want = _reference(value)
        assert want is not None, value
        assert parse_rfc3339_ms(value) == want, value


@pytest.mark.parametrize(
    "value",
    [
        "2025-10-01T12:34:56.789Z",
        "2025-10-01T12:34:56Z",
        "2025-10-01T12:34:56.123456789Z",  # nanoseconds: cut, not rounded
        "2025-10-01T12:34:56.999999999Z",
        "2025-10-01T12:34:56.1Z",
        "2024-02-29T00:00:00.000Z",  # leap day
        "1969-12-31T23:59:59.999Z",  # before the epoch
        "2025-10-01T12:34:56.789z",
        "2025-10-01T12:34:56.789+02:00",
        "2025-10-01T12:34:56.789",  # no zone: UTC
        " 2025-10-01T12:34:56.789Z ",
    ],
)
def test_forms_match_the_reference(value: str) -> None:
    assert parse_rfc3339_ms(value) == _reference(value) is not None


@pytest.mark.parametrize(
    "value",
    ["", "yesterday", "2025-02-30T00:00:00Z", "2025-10-01T24:00:00Z", "2025-13-01T00:00:00Z", "Z"],
)
def test_non_timestamps_are_none(value: str) -> None:
    assert parse_rfc3339_ms(value) is None
    assert parse_rfc3339_ms(None) is None
    assert parse_rfc3339_ms(1234) is None
