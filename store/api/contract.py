"""`ThreadStore`: the contract every backend implements and every surface uses.

The library, the CLI and the JSON-RPC server (`store.api.methods.ThreadApi`)
only call these methods, so a third-party backend registered in the
`rollouts.backends` entry-point group (a factory called as `factory(url,
auto_upgrade=..., default_provider=..., codex_home=...)`, see `store.open_store`)
serves all of them. `tests/conformance.py` is the suite a backend runs to prove
it (docs/thread-api.md, "Backends and the conformance suite").
Errors are `store.errors` exceptions with Codex's messages.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

from store.ingest import IngestSummary
from store.sql.listing import ListQuery


@runtime_checkable
class ThreadStore(Protocol):
    default_provider: str

    def close(self) -> None: ...

    def ingest(self, paths: Iterable[str | os.PathLike[str]]) -> IngestSummary:
        """Index rollout files (CODEX_HOMEs, session folders or single files)."""
        ...

    # reading
    def get_thread(self, thread_id: str, *, include_turns: bool = False) -> dict[str, Any]: ...

    def list_threads(self, query: ListQuery | None = None, **params: Any) -> dict[str, Any]: ...

    def list_turns_page(
        self,
        thread_id: str,
        *,
        cursor: str | None = None,
        limit: int | None = None,
        sort_direction: str = "desc",
        items_view: str = "summary",
    ) -> dict[str, Any]: ...

    def list_items_page(
        self,
        thread_id: str,
        *,
        turn_id: str | None = None,
        cursor: Any = None,
        limit: int | None = None,
        sort_direction: str = "asc",
    ) -> dict[str, Any]: ...

    def export(self, thread_id: str) -> Iterator[bytes]:
        """The original bytes of the thread's main rollout file."""
        ...

    # writing
    def create_thread(self, **params: Any) -> dict[str, Any]: ...

    def append_items(self, thread_id: str, items: list[Any]) -> int: ...

    def set_name(self, thread_id: str, name: str) -> None: ...

    def update_metadata(self, thread_id: str, *, git_info: dict[str, Any]) -> dict[str, Any]: ...

    def archive(self, thread_id: str) -> list[str]:
        """Archive a thread; returns the ids archived (the thread first)."""
        ...

    def unarchive(self, thread_id: str) -> dict[str, Any]: ...

    def delete(self, thread_id: str) -> list[str]:
        """Delete a thread; returns the ids deleted."""
        ...

    def fork(self, thread_id: str, *, last_turn_id: str | None = None) -> dict[str, Any]:
        """Fork a thread; returns the new Thread (turns not loaded)."""
        ...

    def resume(self, thread_id: str) -> dict[str, Any]:
        """The thread/resume response: the Thread with its turns, and session settings."""
        ...
