"""MLflow's wire conventions: its error shape and codes, its JSON, and how it sends requests.

* Errors are ``{"error_code": CODE, "message": sentence}``: NotFound is RESOURCE_DOES_NOT_EXIST
  (404), AlreadyExists RESOURCE_ALREADY_EXISTS (400), every other caller mistake
  INVALID_PARAMETER_VALUE (400) or MALFORMED_REQUEST (400). A client mistake is never a 5xx:
  the MLflow client retries those for minutes.
* Requests are protobuf messages as JSON: a GET sends its fields as query parameters (a repeated
  field as a repeated parameter), everything else as a JSON body. int64 fields may arrive as
  numbers or strings, enums as names or numbers.
* Responses are JSON with ids as strings, times in Unix milliseconds, and the values JSON lacks
  (NaN, ±Infinity) as strings, as protobuf's JSON mapping writes them.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from mloop.core.clock import to_ms
from mloop.core.errors import (
    AlreadyExists,
    Forbidden,
    IntegrityError,
    InvalidInput,
    MloopError,
    NotFound,
    StorageError,
    Unauthorized,
)

log = logging.getLogger("mloop.api.mlflow")

RESOURCE_DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
MALFORMED_REQUEST = "MALFORMED_REQUEST"
ENDPOINT_NOT_FOUND = "ENDPOINT_NOT_FOUND"


class MalformedRequest(InvalidInput):
    """The body is not JSON, or not a JSON object."""

    code = MALFORMED_REQUEST


class EndpointNotFound(NotFound):
    """An MLflow endpoint this server does not implement."""

    code = ENDPOINT_NOT_FOUND


# -- errors ------------------------------------------------------------------------------------


def error_body(exc: BaseException) -> tuple[int, str, str]:
    """(HTTP status, MLflow error code, message) for an exception raised by a route."""
    if isinstance(exc, EndpointNotFound):
        return 404, ENDPOINT_NOT_FOUND, exc.message
    if isinstance(exc, NotFound):
        return 404, RESOURCE_DOES_NOT_EXIST, exc.message
    if isinstance(exc, AlreadyExists):
        return 400, RESOURCE_ALREADY_EXISTS, exc.message
    if isinstance(exc, MalformedRequest):
        return 400, MALFORMED_REQUEST, exc.message
    if isinstance(exc, Unauthorized):
        return 401, "UNAUTHENTICATED", exc.message
    if isinstance(exc, Forbidden):
        return 403, "PERMISSION_DENIED", exc.message
    if isinstance(exc, IntegrityError):
        return 500, "DATA_LOSS", exc.message
    if isinstance(exc, StorageError):
        return 503, "TEMPORARILY_UNAVAILABLE", exc.message
    if isinstance(exc, MloopError):  # InvalidInput, SchemaMismatch, Conflict: the caller's
        return 400, INVALID_PARAMETER_VALUE, exc.message
    if isinstance(exc, RequestValidationError | ValidationError):
        errors = exc.errors()
        text = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e['msg']}"
            for e in errors[:5]
        )
        return 400, INVALID_PARAMETER_VALUE, text or "invalid request"
    if isinstance(exc, StarletteHTTPException) and exc.status_code < 500:
        code = ENDPOINT_NOT_FOUND if exc.status_code in (404, 405) else INVALID_PARAMETER_VALUE
        return (404 if code == ENDPOINT_NOT_FOUND else exc.status_code), code, str(exc.detail)
    return 500, "INTERNAL_ERROR", f"internal error: {type(exc).__name__}"


def error_response(exc: BaseException) -> Response:
    status, code, message = error_body(exc)
    if status >= 500:
        log.error("MLflow API: %s", code, exc_info=exc)
    return MlflowJSONResponse({"error_code": code, "message": message}, status_code=status)


class MlflowRoute(APIRoute):
    """A route whose every failure answers in MLflow's error shape, whatever raised it: the
    service, the request's parsing or FastAPI's validation."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # every failure gets MLflow's shape
                return error_response(exc)

        return guarded


# -- responses ---------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """``value`` with NaN and ±infinity written as protobuf's JSON writes them."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


class MlflowJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(plain(content), allow_nan=False, separators=(",", ":")).encode()


def reply(content: Mapping[str, Any] | None = None) -> MlflowJSONResponse:
    return MlflowJSONResponse(dict(content or {}))


def ms(moment: datetime | None) -> int | None:
    return None if moment is None else to_ms(moment)


def key_values(items: Mapping[str, Any]) -> list[dict[str, str]]:
    """A map as MLflow's repeated ``{key, value}`` messages."""
    return [{"key": k, "value": str(v)} for k, v in items.items()]


# -- requests ----------------------------------------------------------------------------------


class Params:
    """The fields of one request, read the way MLflow sends them."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.fields = fields

    def raw(self, name: str) -> Any:
        return self.fields.get(name)

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.raw(name)
        if value is None or value == "":
            if required:
                raise InvalidInput(f"missing value for required parameter {name!r}")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InvalidInput(f"parameter {name!r} must be a string, not {value!r}")
        return str(value)

    def required(self, name: str) -> str:
        value = self.text(name, required=True)
        assert value is not None
        return value

    def integer(self, name: str, *, required: bool = False) -> int | None:
        value = self.raw(name)
        if value is None or value == "":
            if required:
                raise InvalidInput(f"missing value for required parameter {name!r}")
            return None
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int | str) and not isinstance(value, bool):
            try:
                return int(value)
            except ValueError:
                pass
        raise InvalidInput(f"parameter {name!r} must be an integer, not {value!r}")

    def flag(self, name: str) -> bool:
        value = self.raw(name)
        if value is None or value == "":
            return False
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        raise InvalidInput(f"parameter {name!r} must be true or false, not {value!r}")

    def values(self, name: str) -> list[Any]:
        value = self.fields.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            return [value]
        return value

    def strings(self, name: str) -> list[str]:
        values = self.values(name)
        if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values):
            raise InvalidInput(f"parameter {name!r} must be a list of strings")
        return [str(v) for v in values]

    def objects(self, name: str) -> list[Params]:
        """A repeated message field: each item as Params of its own."""
        items = self.values(name)
        if not all(isinstance(item, dict) for item in items):
            raise InvalidInput(f"parameter {name!r} must be a list of objects")
        return [Params(item) for item in items]

    def message(self, name: str) -> Params:
        value = self.fields.get(name)
        if value is None:
            return Params({})
        if not isinstance(value, dict):
            raise InvalidInput(f"parameter {name!r} must be an object")
        return Params(value)

    def key_values(self, name: str = "tags") -> dict[str, str]:
        """A repeated ``{key, value}`` field as a map (later keys win, as in MLflow)."""
        found: dict[str, str] = {}
        for item in self.objects(name):
            key = item.required("key")
            value = item.raw("value")
            if value is None:
                value = ""
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise InvalidInput(f"the value of {name} {key!r} must be a string")
            found[key] = str(value)
        return found

    def enum(self, name: str, values: Mapping[str, int]) -> str | None:
        """An enum field sent as its name or its number; returns the name."""
        value = self.raw(name)
        if value is None or value == "":
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            for label, number in values.items():
                if number == value:
                    return label
        elif isinstance(value, str):
            if value in values:
                return value
            if value.isdigit():
                return self.enum_number(name, int(value), values)
        raise InvalidInput(f"parameter {name!r} must be one of {', '.join(values)}, not {value!r}")

    @staticmethod
    def enum_number(name: str, number: int, values: Mapping[str, int]) -> str:
        for label, n in values.items():
            if n == number:
                return label
        raise InvalidInput(f"parameter {name!r} must be one of {', '.join(values)}")


async def params(request: Request) -> Params:
    """The request's fields: query parameters, then (for a body-carrying method) the JSON
    body's fields over them."""
    fields: dict[str, Any] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        fields[key] = values if len(values) > 1 else values[0]
    if request.method in ("GET", "HEAD"):
        return Params(fields)
    body = await request.body()
    if body.strip():
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedRequest(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise MalformedRequest("the request body must be a JSON object")
        fields.update(data)
    return Params(fields)
