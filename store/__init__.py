"""The Codex rollout store: index, query and archive Codex threads.

from store import open_store
with open_store() as st:            # ROLLOUTS_DB, else CODEX_HOME/rollouts.sqlite
    st.ingest([codex_home])
    page = st.list_threads(limit=10)
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from typing import Any

from store.config import codex_home as _codex_home
from store.config import database_url, default_provider
from store.errors import (
    Conflict,
    InvalidCursor,
    InvalidInput,
    InvalidParam,
    NotFound,
    RolloutsError,
    SchemaOutOfDate,
    WrongState,
)
from store.ingest import IngestSummary
from store.sql.backend import SqlThreadStore
from store.sql.engine import default_sqlite_url, dialect_of

__all__ = [
    "Conflict",
    "IngestSummary",
    "InvalidCursor",
    "InvalidInput",
    "InvalidParam",
    "NotFound",
    "RolloutsError",
    "SchemaOutOfDate",
    "SqlThreadStore",
    "WrongState",
    "open_store",
]


def open_store(
    url: str | None = None,
    *,
    codex_home: str | os.PathLike[str] | None = None,
    auto_upgrade: bool | None = None,
) -> SqlThreadStore:
    """Open the store at `url` (default: ROLLOUTS_DB, else CODEX_HOME/rollouts.sqlite).

    The embedded default database upgrades its own schema; any other database
    must be upgraded with `rollouts db upgrade` and is refused while out of date.
    Third-party backends register a factory in the `rollouts.backends`
    entry-point group under their URL scheme; it is called as
    `factory(url, auto_upgrade=..., default_provider=..., codex_home=...)`
    (the signature of `SqlThreadStore`) and returns a `ThreadStore`.
    """
    home = _codex_home(codex_home)
    resolved = database_url(url, home)
    is_default = resolved == default_sqlite_url(home)
    upgrade = is_default if auto_upgrade is None else auto_upgrade
    scheme = resolved.split(":", 1)[0].split("+", 1)[0]
    if scheme not in ("sqlite", "postgresql", "postgres"):
        for ep in entry_points(group="rollouts.backends"):
            if ep.name == scheme:
                factory: Any = ep.load()
                return factory(  # type: ignore[no-any-return]
                    resolved,
                    auto_upgrade=upgrade,
                    default_provider=default_provider(home),
                    codex_home=home,
                )
        raise InvalidInput(f"no backend for {scheme!r} URLs (sqlite:/// or postgresql://)")
    dialect_of(resolved)
    return SqlThreadStore(
        resolved, auto_upgrade=upgrade, default_provider=default_provider(home), codex_home=home
    )
