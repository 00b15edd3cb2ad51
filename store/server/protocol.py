"""Codex's JSON-RPC framing and handshake, independent of any transport.

Messages are JSON-RPC 2.0 shapes without the `"jsonrpc"` member (accepted when
a client sends it, never sent). `parse_message` sorts an incoming frame into a
request, a notification or something to log and drop; `initialize` implements
the `initialize` request the way the Codex 0.169 app-server does
(`initialize_processor.rs`): validate `clientInfo.name` as an HTTP header value,
remember the capabilities, answer with userAgent, codexHome and the platform.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from store import codec
from store.api.rpc import INVALID_PARAMS, INVALID_REQUEST, RpcError

RequestId = int | str

NOT_INITIALIZED = "Not initialized"
ALREADY_INITIALIZED = "Already initialized"


@dataclass(frozen=True)
class Request:
    id: RequestId
    method: str
    params: Any


@dataclass(frozen=True)
class ClientNotification:
    method: str
    params: Any


@dataclass(frozen=True)
class Invalid:
    """A frame that is not a usable message.

    With `id` set the client is waiting for an answer, so it gets a -32600 error;
    without one the frame is logged and dropped (Codex answers nothing then).
    """

    reason: str
    id: RequestId | None = None


@dataclass(frozen=True)
class ClientResponse:
    """A response or error from the client: we send no server requests, so it is logged."""

    id: Any


Message = Request | ClientNotification | Invalid | ClientResponse


def _valid_id(value: Any) -> bool:
    # Codex's RequestId is a string or an i64; bool is an int subclass in Python.
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def parse_message(raw: bytes | str) -> Message:
    """Classify one frame (a stdio line or a WebSocket text message)."""
    try:
        obj = codec.loads(raw)
    except codec.JSONDecodeError as exc:
        return Invalid(f"not JSON: {exc}")
    if not isinstance(obj, dict):
        return Invalid(f"not a JSON-RPC message (a JSON {type(obj).__name__})")
    has_id = "id" in obj
    method = obj.get("method")
    if not has_id:
        if isinstance(method, str):
            return ClientNotification(method, obj.get("params"))
        return Invalid("not a JSON-RPC message (no id and no method)")
    rid = obj["id"]
    if not _valid_id(rid):
        return Invalid(f"invalid request id {codec.dumps(rid)[:80]}: must be a string or integer")
    if "method" not in obj and ("result" in obj or "error" in obj):
        return ClientResponse(rid)
    if not isinstance(method, str):
        why = "missing field `method`" if method is None else "`method` must be a string"
        return Invalid(f"Invalid request: {why}", rid)
    return Request(rid, method, obj.get("params"))


def response(rid: RequestId, result: Any) -> bytes:
    return codec.dumpb({"id": rid, "result": result})


def error_response(rid: RequestId, err: RpcError) -> bytes:
    return codec.dumpb({"id": rid, "error": err.to_json()})


def notification(method: str, params: Any) -> bytes:
    if params is None:
        return codec.dumpb({"method": method})
    return codec.dumpb({"method": method, "params": params})


# -- initialize ---------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """What a connection negotiated in `initialize`."""

    client_name: str
    client_version: str
    experimental_api: bool = False
    opt_out_notifications: frozenset[str] = frozenset()


def is_header_value(text: str) -> bool:
    """True when `text` is a legal HTTP header value (the `http` crate's rule).

    Visible ASCII, space, tab and any non-ASCII byte are allowed; other
    control characters and DEL are not.
    """
    return all(c == "\t" or (c >= " " and c != "\x7f") for c in text)


def _field(obj: dict[str, Any], name: str, kind: type, where: str, *, required: bool) -> Any:
    value = obj.get(name)
    if value is None:
        if required:
            raise RpcError(INVALID_PARAMS, f"Invalid params: missing field `{where}{name}`")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RpcError(
            INVALID_PARAMS,
            f"Invalid params: `{where}{name}` must be a {_KIND_NAMES.get(kind, kind.__name__)}",
        )
    return value


_KIND_NAMES = {str: "string", bool: "boolean", dict: "object", list: "array"}


def parse_initialize(params: Any) -> Session:
    """Validate InitializeParams (schema 0.169.0) into a `Session`.

    Shape errors are -32602 naming the field; an illegal `clientInfo.name` is
    Codex's -32600 with Codex's exact message.
    """
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, "Invalid params: missing field `clientInfo`")
    info = _field(params, "clientInfo", dict, "", required=True)
    name = _field(info, "name", str, "clientInfo.", required=True)
    client_version = _field(info, "version", str, "clientInfo.", required=True)
    _field(info, "title", str, "clientInfo.", required=False)
    caps = _field(params, "capabilities", dict, "", required=False) or {}
    experimental = _field(caps, "experimentalApi", bool, "capabilities.", required=False)
    opt_out = _field(caps, "optOutNotificationMethods", list, "capabilities.", required=False)
    if opt_out is not None and not all(isinstance(m, str) for m in opt_out):
        raise RpcError(
            INVALID_PARAMS,
            "Invalid params: `capabilities.optOutNotificationMethods` must be an array of strings",
        )
    if not is_header_value(name):
        raise RpcError(
            INVALID_REQUEST,
            f"Invalid clientInfo.name: '{name}'. Must be a valid HTTP header value.",
        )
    return Session(
        client_name=name,
        client_version=client_version,
        experimental_api=bool(experimental),
        opt_out_notifications=frozenset(opt_out or ()),
    )


def _package_version() -> str:
    try:
        return version("codex-rollouts")
    except PackageNotFoundError:
        return "0.0.0"


def _platform() -> tuple[str, str]:
    """Rust's `std::env::consts::{FAMILY, OS}` for this machine."""
    family = "windows" if os.name == "nt" else "unix"
    names = {"darwin": "macos", "win32": "windows", "cygwin": "windows"}
    plat = sys.platform
    return family, names.get(plat, "linux" if plat.startswith("linux") else plat)


def user_agent(session: Session) -> str:
    """Codex's shape: `<originator>/<version> (<os> <os version>; <arch>) <terminal> (<client>; <client version>)`.

    The originator is the client's name (Codex makes it the process originator);
    characters a header may not carry become `_`, as Codex sanitizes.
    """
    terminal = os.environ.get("TERM_PROGRAM") or os.environ.get("TERM") or "unknown"
    text = (
        f"{session.client_name}/{_package_version()} "
        f"({platform.system()} {platform.release()}; {platform.machine() or 'unknown'}) "
        f"{terminal} ({session.client_name}; {session.client_version})"
    )
    return "".join(c if " " <= c <= "~" else "_" for c in text)


def initialize_result(session: Session, codex_home: Path) -> dict[str, str]:
    """The InitializeResponse for a connection that has just initialized."""
    family, os_name = _platform()
    return {
        "userAgent": user_agent(session),
        "codexHome": str(codex_home.absolute()),
        "platformFamily": family,
        "platformOs": os_name,
    }


def experimental_required_message(descriptor: str) -> str:
    return f"{descriptor} requires experimentalApi capability"
