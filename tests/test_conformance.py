"""The ThreadStore conformance suite (tests/conformance.py) on every backend we have.

SQLite and PostgreSQL, and a plugin backend found the way a third-party one
is: through a `rollouts.backends` entry point of an installed distribution,
under its own URL scheme. A deliberately broken backend shows the suite fails.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from store import open_store
from store.sql.backend import SqlThreadStore
from tests import conformance
from tests.conformance import *  # noqa: F403
from tests.conftest import _pg_database
from tests.plugin_backend import SCHEME as PLUGIN_SCHEME
from tests.plugin_backend import PluginStore


@pytest.fixture(scope="module")
def plugin_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """An installed distribution whose entry point registers PluginStore."""
    site = tmp_path_factory.mktemp("site")
    dist = site / "rollouts_conformance_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: rollouts-conformance-plugin\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        f"[rollouts.backends]\n{PLUGIN_SCHEME} = tests.plugin_backend:PluginStore\n"
    )
    sys.path.insert(0, str(site))
    try:
        yield
    finally:
        sys.path.remove(str(site))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "plugin"])
def conformance_url(
    request: pytest.FixtureRequest, tmp_path: Path, plugin_installed: None
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'conformance.sqlite'}"
    elif request.param == "plugin":
        yield f"{PLUGIN_SCHEME}:///{tmp_path / 'plugin.sqlite'}"
    else:
        yield from _pg_database()


def test_plugin_is_found_by_its_url(plugin_installed: None, tmp_path: Path) -> None:
    with open_store(
        f"{PLUGIN_SCHEME}:///{tmp_path / 'p.sqlite'}", codex_home=tmp_path, auto_upgrade=True
    ) as st:
        assert type(st) is PluginStore
        assert st.codex_home == tmp_path


# -- the suite can fail ----------------------------------------------------------------


class _SkipsAtPageBoundaries(SqlThreadStore):
    """Loses the first thread of every page after the first: a gap at each cursor."""

    def list_threads(self, query: Any = None, **params: Any) -> dict[str, Any]:
        page = super().list_threads(query, **params)
        if params.get("cursor"):
            page["data"] = page["data"][1:]
        return page


class _LosesTheLastNewline(SqlThreadStore):
    def export(self, thread_id: str) -> Iterator[bytes]:
        data = b"".join(super().export(thread_id))
        return iter([data.rstrip(b"\n")])


@pytest.mark.parametrize(
    ("broken", "test"),
    [
        (
            _SkipsAtPageBoundaries,
            lambda st, _home: conformance.test_paging_visits_every_thread_once_in_order(
                st, "created_at", "desc"
            ),
        ),
        (
            _LosesTheLastNewline,
            conformance.test_every_thread_is_listed_once_and_exported_byte_for_byte,
        ),
    ],
)
def test_the_suite_fails_a_broken_backend(
    conformance_home: Path, tmp_path: Path, broken: type[SqlThreadStore], test: Any
) -> None:
    st = broken(
        f"sqlite:///{tmp_path / 'broken.sqlite'}",
        auto_upgrade=True,
        default_provider="mock",
        codex_home=conformance_home,
    )
    try:
        st.ingest([conformance_home])
        with pytest.raises(AssertionError):
            test(st, conformance_home)
    finally:
        st.close()
