"""A "third-party" backend for tests: `conformance-plugin:///path` is a SQLite file.

tests/test_conformance.py installs it as a distribution with a
`rollouts.backends` entry point, so `open_store` finds it by URL scheme.
"""

from __future__ import annotations

from typing import Any

from store.sql.backend import SqlThreadStore

SCHEME = "conformance-plugin"


class PluginStore(SqlThreadStore):
    def __init__(self, url: str, **kwargs: Any) -> None:
        assert url.startswith(f"{SCHEME}:///"), url
        super().__init__("sqlite:///" + url.split(":///", 1)[1], **kwargs)
