"""Typed access to JSON-RPC params, with errors that name the field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from store.api.rpc import INVALID_PARAMS, INVALID_REQUEST, RpcError
from store.errors import InvalidInput
from store.rollout.naming import validate_thread_id


class Params:
    """The params object of one request.

    Absent and `null` mean the same ("use the default") for optional fields;
    a present field of the wrong type is `-32602 Invalid params: `<field>` ...`.
    """

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    @staticmethod
    def invalid(field: str, problem: str) -> RpcError:
        return RpcError(INVALID_PARAMS, f"Invalid params: `{field}` {problem}", {"field": field})

    def _get(self, field: str) -> Any:
        return self.raw.get(field)

    def req_str(self, field: str) -> str:
        value = self._get(field)
        if value is None:
            raise self.invalid(field, "is required")
        if not isinstance(value, str):
            raise self.invalid(field, "must be a string")
        return value

    def opt_str(self, field: str) -> str | None:
        value = self._get(field)
        if value is not None and not isinstance(value, str):
            raise self.invalid(field, "must be a string or null")
        return value

    def opt_bool(self, field: str) -> bool | None:
        value = self._get(field)
        if value is not None and not isinstance(value, bool):
            raise self.invalid(field, "must be a boolean or null")
        return value

    def opt_int(self, field: str, *, minimum: int | None = None) -> int | None:
        value = self._get(field)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.invalid(field, "must be an integer or null")
        if minimum is not None and value < minimum:
            raise self.invalid(field, f"must be at least {minimum}")
        return value

    def opt_enum(self, field: str, allowed: Sequence[str]) -> str | None:
        value = self.opt_str(field)
        if value is not None and value not in allowed:
            raise self.invalid(field, f"must be one of {', '.join(allowed)}")
        return value

    def opt_str_list(self, field: str) -> list[str] | None:
        value = self._get(field)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.invalid(field, "must be an array of strings or null")
        return value

    def opt_enum_list(self, field: str, allowed: Sequence[str]) -> list[str] | None:
        values = self.opt_str_list(field)
        for v in values or []:
            if v not in allowed:
                raise self.invalid(field, f"has unknown value {v!r}: expected {', '.join(allowed)}")
        return values

    def opt_str_or_list(self, field: str) -> str | list[str] | None:
        value = self._get(field)
        if value is None or isinstance(value, str):
            return value
        return self.opt_str_list(field)

    def thread_id(self, field: str, *, what: str = "thread") -> str:
        """A required UUID; Codex answers `-32600 invalid <what> id: ...` otherwise."""
        value = self.req_str(field)
        try:
            return validate_thread_id(value)
        except InvalidInput as exc:
            detail = str(exc).removeprefix("invalid thread id: ")
            raise RpcError(INVALID_REQUEST, f"invalid {what} id: {detail}") from None
