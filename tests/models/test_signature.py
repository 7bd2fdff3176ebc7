"""Signatures, and the one path from rows to the model's frame (training and serving alike)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mloop import SchemaMismatch
from mloop.core.schema import Column
from mloop.models import Signature, frame_from_rows, frame_from_table, infer_signature

SIGNATURE = Signature(
    inputs=[
        Column(name="amount", type="float"),
        Column(name="count", type="integer"),
        Column(name="present", type="boolean"),
        Column(name="city", type="string"),
    ],
    target="label",
    target_type="integer",
    task="classification",
    classes=[0, 1],
)
ROW: dict[str, Any] = {"amount": 12.5, "count": 3, "present": True, "city": "oslo"}


def test_rows_become_the_model_frame() -> None:
    frame = frame_from_rows([ROW, {**ROW, "amount": 7, "present": False}], SIGNATURE)
    assert list(frame.columns) == ["amount", "count", "present", "city"]
    assert frame["amount"].tolist() == [12.5, 7.0]
    assert frame["count"].dtype == np.float64
    assert frame["present"].tolist() == [1.0, 0.0]
    assert frame["city"].tolist() == ["oslo", "oslo"]


def test_null_is_allowed_everywhere_and_becomes_nan() -> None:
    frame = frame_from_rows([dict.fromkeys(ROW)], SIGNATURE)
    assert frame.isna().all(axis=None)


def test_column_order_in_a_row_does_not_matter() -> None:
    reordered = dict(reversed(list(ROW.items())))
    pd.testing.assert_frame_equal(
        frame_from_rows([reordered], SIGNATURE), frame_from_rows([ROW], SIGNATURE)
    )


def test_training_and_serving_build_the_same_frame() -> None:
    rows = [ROW, dict.fromkeys(ROW), {**ROW, "city": None, "count": None}]
    table = pa.table(
        {
            "amount": pa.array([r["amount"] for r in rows], pa.float64()),
            "count": pa.array([r["count"] for r in rows], pa.int64()),
            "present": pa.array([r["present"] for r in rows], pa.bool_()),
            "city": pa.array([r["city"] for r in rows], pa.string()),
            "label": pa.array([0, 1, 0], pa.int64()),
        }
    )
    pd.testing.assert_frame_equal(
        frame_from_table(table, SIGNATURE), frame_from_rows(rows, SIGNATURE)
    )


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{k: v for k, v in ROW.items() if k != "city"}], "row 0: missing column 'city'"),
        ([{**ROW, "colour": "red"}], "row 0: unknown column 'colour' (the model takes: amount"),
        ([{**ROW, "amount": "12.5"}], "column 'amount' must be a number, got string '12.5'"),
        ([{**ROW, "count": True}], "column 'count' must be a number, got boolean True"),
        ([{**ROW, "amount": float("inf")}], "column 'amount' must be a number"),
        ([{**ROW, "present": 1}], "column 'present' must be true or false, got number 1"),
        ([{**ROW, "city": False}], "column 'city' must be a string, got boolean False"),
        ([{**ROW, "city": 5}], "column 'city' must be a string, got number 5"),
        ([{**ROW, "city": ["a"]}], "column 'city' must be a string, got array"),
        ([{**ROW, "city": {"a": 1}}], "column 'city' must be a string, got object"),
        ([ROW, [1, 2]], "row 1 is a array, not an object"),
        ([ROW, "text"], "row 1 is a string, not an object"),
        ([], "'rows' must be a non-empty list"),
        ({"amount": 1}, "'rows' must be a non-empty list"),
        (None, "'rows' must be a non-empty list"),
    ],
)
def test_rows_that_do_not_fit_are_refused_by_name(rows: Any, message: str) -> None:
    with pytest.raises(SchemaMismatch) as caught:
        frame_from_rows(rows, SIGNATURE)
    assert message in caught.value.message


def test_errors_are_collected_up_to_a_limit() -> None:
    rows = [{**ROW, "amount": "x"} for _ in range(20)]
    with pytest.raises(SchemaMismatch) as caught:
        frame_from_rows(rows, SIGNATURE)
    errors = caught.value.details["errors"]
    assert len(errors) == 5
    assert errors[0].startswith("row 0:")
    assert errors[4].startswith("row 4:")


def test_one_row_with_several_problems_reports_each() -> None:
    with pytest.raises(SchemaMismatch) as caught:
        frame_from_rows([{"amount": "x", "count": 1, "present": True, "colour": 1}], SIGNATURE)
    message = caught.value.message
    assert "unknown column 'colour'" in message
    assert "missing column 'city'" in message
    assert "column 'amount' must be a number" in message


def test_signature_round_trips_through_json() -> None:
    assert Signature.model_validate_json(SIGNATURE.model_dump_json()) == SIGNATURE
    assert SIGNATURE.input_names == ["amount", "count", "present", "city"]


def test_infer_signature_leaves_the_target_out() -> None:
    columns = [*SIGNATURE.inputs, Column(name="label", type="integer")]
    inferred = infer_signature(columns, "label", "classification", [0, 1])
    assert inferred == SIGNATURE
