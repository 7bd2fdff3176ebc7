"""errors: one tree, a stable code and HTTP status per class, one JSON shape."""

from __future__ import annotations

import pytest

import mloop.core
from mloop.core import errors
from mloop.core.errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    GateFailed,
    IntegrityError,
    InvalidInput,
    MloopError,
    NotFound,
    SchemaMismatch,
    StorageError,
    Unauthorized,
    Unavailable,
)

TREE = [
    (MloopError, Exception, "INTERNAL_ERROR", 500),
    (InvalidInput, MloopError, "INVALID_INPUT", 400),
    (SchemaMismatch, InvalidInput, "SCHEMA_MISMATCH", 422),
    (NotFound, MloopError, "NOT_FOUND", 404),
    (Conflict, MloopError, "CONFLICT", 409),
    (AlreadyExists, Conflict, "ALREADY_EXISTS", 409),
    (GateFailed, Conflict, "GATE_FAILED", 409),
    (Unauthorized, MloopError, "UNAUTHORIZED", 401),
    (Forbidden, MloopError, "FORBIDDEN", 403),
    (Unavailable, MloopError, "UNAVAILABLE", 503),
    (StorageError, MloopError, "STORAGE_ERROR", 503),
    (IntegrityError, StorageError, "INTEGRITY_ERROR", 500),
]


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _all_subclasses(sub)
    return found


@pytest.mark.parametrize(("cls", "parent", "code", "status"), TREE)
def test_each_error_has_its_parent_code_and_status(
    cls: type[MloopError], parent: type, code: str, status: int
) -> None:
    assert cls.__bases__ == (parent,)
    assert cls.code == code
    assert cls.http_status == status
    error = cls("the thing went wrong")
    assert str(error) == "the thing went wrong"
    assert error.message == "the thing went wrong"
    assert error.to_dict() == {"error": code, "message": "the thing went wrong"}


def test_the_tree_is_complete_and_codes_are_unique() -> None:
    mine = {c for c in _all_subclasses(MloopError) if c.__module__ == errors.__name__}
    assert mine == {cls for cls, *_ in TREE} - {MloopError}
    codes = [cls.code for cls, *_ in TREE]
    assert len(codes) == len(set(codes))
    assert set(errors.__all__) == {cls.__name__ for cls, *_ in TREE}


def test_details_appear_in_the_body_only_when_given() -> None:
    error = NotFound("dataset 'iris' does not exist", details={"name": "iris"})
    assert error.to_dict() == {
        "error": "NOT_FOUND",
        "message": "dataset 'iris' does not exist",
        "details": {"name": "iris"},
    }
    assert NotFound("x", details={}).to_dict() == {"error": "NOT_FOUND", "message": "x"}
    assert NotFound("x").details == {}


def test_errors_are_caught_by_their_parents() -> None:
    with pytest.raises(StorageError):
        raise IntegrityError("bytes changed")
    with pytest.raises(InvalidInput):
        raise SchemaMismatch("column x missing")
    with pytest.raises(MloopError):
        raise Forbidden("no")


def test_core_exports_what_it_lists() -> None:
    for name in mloop.core.__all__:
        assert getattr(mloop.core, name) is not None
    assert set(errors.__all__) <= set(mloop.core.__all__)
    assert mloop.core.__all__ == sorted(mloop.core.__all__)
