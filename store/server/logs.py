"""Server logging: stderr only, level from `ROLLOUTS_LOG`, JSON lines on request.

stdout carries the protocol over stdio, so nothing here may ever write to it.
`ROLLOUTS_LOG` reads like Rust's `RUST_LOG`, which Codex users already know:
a comma-separated list of `level` (the default) and `target=level` entries,
e.g. `info`, `debug`, `warn,store.server=debug`. Targets are logger names;
`::` is accepted for `.`. `LOG_FORMAT=json` switches to one JSON object per line.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from typing import TextIO

from store import codec

LOG_ENV = "ROLLOUTS_LOG"
FORMAT_ENV = "LOG_FORMAT"
# Our own records at info, everyone else's (alembic, websockets) at warn.
DEFAULT_SPEC = "warn,store=info"

_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}


def parse_spec(spec: str) -> tuple[int, dict[str, int]]:
    """`"info,store.server=debug"` -> (INFO, {"store.server": DEBUG}).

    Unknown levels are ignored (like `RUST_LOG`, a typo must not stop the server);
    an entry without a target sets the level of everything else (default warn).
    """
    root = logging.WARNING
    targets: dict[str, int] = {}
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            continue
        target, _, level = entry.rpartition("=")
        value = _LEVELS.get(level.strip().lower())
        if value is None:
            continue
        if target:
            targets[target.strip().replace("::", ".")] = value
        else:
            root = value
    return root, targets


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp, level, target, message (+ exception)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="microseconds"
            ),
            "level": record.levelname,
            "target": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return codec.dumps(out)


def configure_logging(
    spec: str | None = None, fmt: str | None = None, stream: TextIO | None = None
) -> None:
    """Send all logging to stderr at the levels `spec` names (default `$ROLLOUTS_LOG`).

    Replaces the root logger's handlers, so call it once, from a program's entry
    point (`rollouts serve`), not from a library that embeds the server.
    """
    spec = os.environ.get(LOG_ENV, DEFAULT_SPEC) if spec is None else spec
    fmt = os.environ.get(FORMAT_ENV, "") if fmt is None else fmt
    root_level, targets = parse_spec(spec)
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt.strip().lower() == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(root_level)
    for name, level in targets.items():
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(True)
