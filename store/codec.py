"""JSON encoding in one place: orjson, compact, UTF-8.

`dumps` returns `str` because that is what SQLAlchemy's JSON/Text columns and
the wire want; `dumpb` returns bytes for files and sockets.
"""

from __future__ import annotations

from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def dumpb(value: Any) -> bytes:
    return orjson.dumps(value)


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


def dumps_pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode("utf-8")
