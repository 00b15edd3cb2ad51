"""The Codex app-server thread methods, answered from a `ThreadStore`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from store.api.rpc import INVALID_REQUEST, METHOD_NOT_FOUND, Reply, RpcError
from store.errors import InvalidCursor, InvalidInput, NotFound

# Methods Codex marks experimental: a connection must opt in with
# `capabilities.experimentalApi` (the transport checks this).
EXPERIMENTAL_METHODS = frozenset(
    {"thread/turns/list", "thread/items/list", "thread/search", "thread/searchOccurrences"}
)

Handler = Callable[[dict[str, Any]], Reply]


class ThreadApi:
    """Dispatch of `thread/*` requests; synchronous, one call per request."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._handlers: dict[str, Handler] = {
            "thread/list": self._list,
            "thread/read": self._read,
        }

    @property
    def methods(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def handle(self, method: str, params: Any) -> Reply:
        handler = self._handlers.get(method)
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, f"method not found: {method}")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise RpcError(INVALID_REQUEST, "Invalid request: params must be an object")
        try:
            return handler(params)
        except (NotFound, InvalidInput, InvalidCursor) as exc:
            raise RpcError(INVALID_REQUEST, str(exc)) from None

    def _list(self, params: dict[str, Any]) -> Reply:
        page = self.store.list_threads(
            cursor=params.get("cursor"), limit=params.get("limit"), archived=params.get("archived")
        )
        return Reply(page)

    def _read(self, params: dict[str, Any]) -> Reply:
        thread = self.store.get_thread(
            params["threadId"], include_turns=bool(params.get("includeTurns"))
        )
        return Reply({"thread": thread})
