"""The store's error hierarchy.

Every error carries a message a user can act on; surfaces (CLI, JSON-RPC server)
print the message and never a traceback.
"""

from __future__ import annotations


class RolloutsError(Exception):
    """Base class of every error the store raises on purpose."""


class NotFound(RolloutsError):
    """The thread, turn, item or file asked for does not exist."""


class Conflict(RolloutsError):
    """The operation clashes with the current state (e.g. a concurrent writer)."""


class WrongState(Conflict):
    """The thread is not in the state an operation needs (already archived, not archived)."""


class InvalidParam(RolloutsError):
    """A request parameter has a value the operation cannot use; names the parameter."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class InvalidInput(RolloutsError):
    """An argument is malformed: a thread id that is not a UUID, a bad path, ..."""


class InvalidCursor(InvalidInput):
    """A pagination cursor is malformed or belongs to another query."""


class SchemaOutOfDate(RolloutsError):
    """The database schema is older (or newer) than this version of the store."""
