"""The one error tree of mloop.

    MloopError                  base; never raised itself
    ├── InvalidInput            the caller sent something wrong          (HTTP 400 / 422)
    │   └── SchemaMismatch      rows or columns do not fit a schema      (HTTP 422)
    ├── NotFound                the named thing does not exist           (HTTP 404)
    ├── Conflict                it changed under us, or cannot change     (HTTP 409)
    │   ├── AlreadyExists       a thing of that name exists already      (HTTP 409)
    │   └── GateFailed          a model version failed promotion gates   (HTTP 409)
    ├── Unauthorized            no or bad credentials                    (HTTP 401)
    ├── Forbidden               credentials lack the right               (HTTP 403)
    ├── Unavailable             busy or timed out: try again later       (HTTP 503)
    └── StorageError            a backend failed or holds corrupt data   (HTTP 503 / 500)
        └── IntegrityError      stored bytes no longer match their hash

Every error has a stable machine ``code`` and a human ``message``; the REST API renders
``{"error": code, "message": message}`` with ``http_status``; the CLI prints the message and exits
non-zero.
"""

from __future__ import annotations

from typing import Any


class MloopError(Exception):
    """Base of every error mloop raises on purpose."""

    code = "INTERNAL_ERROR"
    http_status = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class InvalidInput(MloopError):
    code = "INVALID_INPUT"
    http_status = 400


class SchemaMismatch(InvalidInput):
    code = "SCHEMA_MISMATCH"
    http_status = 422


class NotFound(MloopError):
    code = "NOT_FOUND"
    http_status = 404


class Conflict(MloopError):
    code = "CONFLICT"
    http_status = 409


class AlreadyExists(Conflict):
    code = "ALREADY_EXISTS"


class GateFailed(Conflict):
    """A model version did not pass its promotion gates; ``details["gates"]`` lists them."""

    code = "GATE_FAILED"


class Unauthorized(MloopError):
    code = "UNAUTHORIZED"
    http_status = 401


class Forbidden(MloopError):
    code = "FORBIDDEN"
    http_status = 403


class Unavailable(MloopError):
    """The server is at its concurrency limit, or a request waited past its timeout: the
    request was not served and may be retried."""

    code = "UNAVAILABLE"
    http_status = 503


class StorageError(MloopError):
    code = "STORAGE_ERROR"
    http_status = 503


class IntegrityError(StorageError):
    code = "INTEGRITY_ERROR"
    http_status = 500


__all__ = [
    "AlreadyExists",
    "Conflict",
    "Forbidden",
    "GateFailed",
    "IntegrityError",
    "InvalidInput",
    "MloopError",
    "NotFound",
    "SchemaMismatch",
    "StorageError",
    "Unauthorized",
    "Unavailable",
]
