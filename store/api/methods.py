"""The Codex app-server thread methods, answered from a `ThreadStore`.

Params are checked field by field (`-32602 Invalid params: ...` naming the
field); store errors become Codex's `-32600` answers with Codex's messages.
Notifications follow the response, in Codex's order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from store.api.params import Params
from store.api.rpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    Notification,
    Reply,
    RpcError,
)
from store.errors import (
    Conflict,
    InvalidInput,
    InvalidParam,
    NotFound,
    RolloutsError,
)
from store.sql.listing import SOURCE_KINDS, ListQuery
from store.wire import session_response

# Methods Codex 0.169 marks experimental: a connection must opt in with
# `capabilities.experimentalApi` (the transport checks this).
EXPERIMENTAL_METHODS = frozenset({"thread/search", "thread/searchOccurrences"})

# Params fields of stable methods that 0.169 marks experimental (the fields
# its experimental schema has and its stable schema lacks; dotted paths are
# nested). A client that has not opted in and sends one with a non-null value
# is refused with `<method>.<field> requires experimentalApi capability`.
EXPERIMENTAL_FIELDS: dict[str, tuple[str, ...]] = {
    "thread/list": (
        "ancestorThreadId",
        "attachedToThreadId",
        "includeAttachedThreads",
        "parentThreadId",
        "projectId",
    ),
    "thread/items/list": ("deferOutput.commandExecution", "deferOutput.mcpToolCall"),
    "thread/metadata/update": ("daybreakEnabled", "projectId"),
    "thread/fork": (
        "attachToSource",
        "beforeTurnId",
        "deferGoalContinuation",
        "experimentalDisablePredictionMcp",
        "experimentalPredictionMode",
        "path",
        "permissions",
        "runtimeWorkspaceRoots",
    ),
    "thread/resume": (
        "history",
        "initialTurnsPage",
        "path",
        "permissions",
        "runtimeWorkspaceRoots",
    ),
    "thread/start": (
        "allowProviderModelFallback",
        "daybreakEnabled",
        "dynamicTools",
        "environments",
        "experimentalRawEvents",
        "historyMode",
        "mockExperimentalField",
        "multiAgentMode",
        "permissions",
        "projectId",
        "runtimeWorkspaceRoots",
        "selectedCapabilityRoots",
    ),
}


def experimental_use(method: str, params: Any) -> str | None:
    """The descriptor (`method` or `method.field`) of the first experimental
    part of a request, or None when it uses only the stable API."""
    if method in EXPERIMENTAL_METHODS:
        return method
    if not isinstance(params, dict):
        return None
    for path in EXPERIMENTAL_FIELDS.get(method, ()):
        value: Any = params
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return f"{method}.{path}"
    return None


Handler = Callable[[Params], Reply]


def rpc_error(exc: RolloutsError) -> RpcError:
    """The JSON-RPC error for a store error, the same whichever handler raised it:
    a bad field -32602 naming it, a bad request (unknown thread, bad input or
    cursor, a conflict) -32600, anything else -32603."""
    if isinstance(exc, InvalidParam):
        return RpcError(INVALID_PARAMS, str(exc), {"field": exc.param})
    if isinstance(exc, NotFound | InvalidInput | Conflict):  # InvalidCursor is an InvalidInput
        return RpcError(INVALID_REQUEST, str(exc))
    return RpcError(INTERNAL_ERROR, str(exc))


class ThreadApi:
    """Dispatch of `thread/*` requests; synchronous, one call per request.

    `store` is any `ThreadStore`; `cwd` resolves relative `cwd` filters the
    way the app-server resolves them against its own working directory.
    """

    def __init__(self, store: Any, *, cwd: str | None = None) -> None:
        self.store = store
        self.cwd = cwd or os.getcwd()
        self._handlers: dict[str, Handler] = {
            "thread/list": self._list,
            "thread/read": self._read,
            "thread/turns/list": self._turns_list,
            "thread/items/list": self._items_list,
            "thread/name/set": self._name_set,
            "thread/metadata/update": self._metadata_update,
            "thread/start": self._start,
            "thread/inject_items": self._inject_items,
            "thread/resume": self._resume,
            "thread/fork": self._fork,
            "thread/archive": self._archive,
            "thread/unarchive": self._unarchive,
            "thread/delete": self._delete,
        }
        extra = getattr(store, "extra_methods", None)
        if callable(extra):
            # Backends may answer more methods (e.g. thread/search from the search index).
            for name, fn in extra().items():
                self._handlers[name] = _raw_handler(fn)

    @property
    def methods(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def handle(self, method: str, params: Any) -> Reply:
        handler = self._handlers.get(method)
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, f"method not found: {method}")
        if params is None:
            params = {}  # lenient: Codex requires `{}`, we accept a missing params
        if not isinstance(params, dict):
            raise RpcError(INVALID_PARAMS, "Invalid params: params must be an object")
        try:
            return handler(Params(params))
        except RolloutsError as exc:
            raise rpc_error(exc) from None

    # -- reading --------------------------------------------------------------------

    def _list(self, p: Params) -> Reply:
        cwd = p.opt_str_or_list("cwd")
        q = ListQuery(
            cursor=p.opt_str("cursor"),
            limit=p.opt_int("limit", minimum=0),
            sort_key=p.opt_enum("sortKey", ("created_at", "updated_at", "recency_at"))
            or "created_at",
            sort_direction=p.opt_enum("sortDirection", ("asc", "desc")) or "desc",
            model_providers=p.opt_str_list("modelProviders"),
            source_kinds=p.opt_enum_list("sourceKinds", SOURCE_KINDS),
            archived=bool(p.opt_bool("archived")),
            cwd=cwd,
            search_term=p.opt_str("searchTerm"),
            excluded_thread_ids=p.opt_str_list("excludedThreadIds"),
            originators=p.opt_str_list("originators"),
            parent_thread_id=p.opt_str("parentThreadId"),
            ancestor_thread_id=p.opt_str("ancestorThreadId"),
            default_provider=self.store.default_provider,
            base_cwd=self.cwd,
        )
        return Reply(self.store.list_threads(q))

    def _read(self, p: Params) -> Reply:
        tid = p.thread_id("threadId")
        include = bool(p.opt_bool("includeTurns"))
        try:
            thread = self.store.get_thread(tid, include_turns=include)
        except NotFound:
            raise RpcError(INVALID_REQUEST, f"thread not loaded: {tid}") from None
        return Reply({"thread": thread})

    def _turns_list(self, p: Params) -> Reply:
        page = self.store.list_turns_page(
            p.thread_id("threadId"),
            cursor=p.opt_str("cursor"),
            limit=p.opt_int("limit", minimum=0),
            sort_direction=p.opt_enum("sortDirection", ("asc", "desc")) or "desc",
            items_view=p.opt_enum("itemsView", ("notLoaded", "summary", "full")) or "summary",
        )
        return Reply(page)

    def _items_list(self, p: Params) -> Reply:
        cursor = p.raw.get("cursor")
        if cursor is not None and not isinstance(cursor, (str, dict)):
            raise p.invalid("cursor", "must be a string or an item anchor")
        page = self.store.list_items_page(
            p.thread_id("threadId"),
            turn_id=p.opt_str("turnId"),
            cursor=cursor,
            limit=p.opt_int("limit", minimum=0),
            sort_direction=p.opt_enum("sortDirection", ("asc", "desc")) or "asc",
        )
        return Reply(page)

    # -- writing --------------------------------------------------------------------

    def _name_set(self, p: Params) -> Reply:
        tid = p.thread_id("threadId")
        name = p.req_str("name")
        self.store.set_name(tid, name)
        note = Notification("thread/name/updated", {"threadId": tid, "threadName": name.strip()})
        return Reply({}, [note])

    def _metadata_update(self, p: Params) -> Reply:
        tid = p.thread_id("threadId")
        git = p.raw.get("gitInfo")
        if git is not None and not isinstance(git, dict):
            raise p.invalid("gitInfo", "must be an object or null")
        thread = self.store.update_metadata(tid, git_info=git or {})
        return Reply({"thread": thread})

    def _start(self, p: Params) -> Reply:
        cwd = p.opt_str("cwd") or self.cwd
        thread = self.store.create_thread(
            cwd=os.path.normpath(os.path.join(self.cwd, cwd)),
            model_provider=p.opt_str("modelProvider"),
            model=p.opt_str("model"),
        )
        result = session_response(thread, {})
        return Reply(result, [Notification("thread/started", {"thread": thread})])

    def _inject_items(self, p: Params) -> Reply:
        tid = p.thread_id("threadId")
        items = p.raw.get("items")
        if not isinstance(items, list):
            raise p.invalid("items", "must be an array of Responses API items")
        self.store.append_items(tid, items)
        return Reply({})

    def _resume(self, p: Params) -> Reply:
        tid = p.thread_id("threadId", what="session")
        try:
            return Reply(self.store.resume(tid))
        except NotFound:
            raise RpcError(INVALID_REQUEST, f"no rollout found for thread id {tid}") from None

    def _fork(self, p: Params) -> Reply:
        tid = p.thread_id("threadId", what="session")
        fork = self.store.fork(tid, last_turn_id=p.opt_str("lastTurnId"))
        result = self.store.resume(fork["id"])  # the fork with its history and settings
        return Reply(result, [Notification("thread/started", {"thread": fork})])

    def _archive(self, p: Params) -> Reply:
        tid = p.thread_id("threadId", what="session")
        archived = self.store.archive(tid)
        return Reply({}, [Notification("thread/archived", {"threadId": x}) for x in archived])

    def _unarchive(self, p: Params) -> Reply:
        tid = p.thread_id("threadId", what="session")
        thread = self.store.unarchive(tid)
        return Reply({"thread": thread}, [Notification("thread/unarchived", {"threadId": tid})])

    def _delete(self, p: Params) -> Reply:
        tid = p.thread_id("threadId")
        deleted = self.store.delete(tid)
        return Reply({}, [Notification("thread/deleted", {"threadId": x}) for x in deleted])


def _raw_handler(fn: Callable[[dict[str, Any]], Any]) -> Handler:
    def handler(p: Params) -> Reply:
        return Reply(fn(p.raw))

    return handler
