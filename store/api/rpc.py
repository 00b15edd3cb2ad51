"""The JSON-RPC contract between the thread API and the transports that serve it.

The thread API (`store.api.methods.ThreadApi`) is synchronous and transport-free:
it takes a method name and params and returns a `Reply` (the result plus the
notifications Codex emits after the response), or raises `RpcError`. Transports
(`store.server`) own framing, the `initialize` handshake, experimental gating,
queues and threads; they call `ThreadApi.handle` from a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Error codes used by the Codex app-server (codex-rs/app-server/src/error_code.rs).
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
OVERLOADED = -32001
OVERLOADED_MESSAGE = "Server overloaded; retry later."


class RpcError(Exception):
    """An error answer: `{"code": code, "message": message, "data"?: data}`."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out


@dataclass(frozen=True)
class Notification:
    """A server notification sent after the response.

    `broadcast` notifications go to every initialized connection (Codex does
    this for thread/started, thread/archived, thread/name/updated, ...); the
    others only to the connection that made the request.
    """

    method: str
    params: dict[str, Any]
    broadcast: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params}


@dataclass
class Reply:
    result: Any
    notifications: list[Notification] = field(default_factory=list)
