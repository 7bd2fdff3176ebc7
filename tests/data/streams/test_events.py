"""Parsing a batch of messages: typed rows, or a reason per message — never dropped, never
coerced; and the recent-id window."""

from __future__ import annotations

import json

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from mloop.data.streams import DedupWindow, parse_batch
from stream_helpers import dumps

SCHEMA = pa.schema([("id", pa.int64()), ("amount", pa.float64()), ("name", pa.string())])


def reasons(parsed: object) -> dict[int, tuple[str, str]]:
    return {i: (kind, reason) for i, kind, reason in parsed.rejected}  # type: ignore[attr-defined]


def test_a_clean_batch_parses_in_one_go_against_the_schema() -> None:
    payloads = [dumps({"id": i, "amount": i, "name": f"n{i}"}) for i in range(100)]
    parsed = parse_batch(payloads, SCHEMA, "id")
    assert parsed.table is not None
    assert parsed.table.schema == SCHEMA
    assert parsed.table.column("id").to_pylist() == list(range(100))
    assert parsed.table.column("amount").to_pylist() == [float(i) for i in range(100)]
    assert list(parsed.index) == list(range(100))
    assert parsed.rejected == []


def test_each_bad_message_is_rejected_with_its_reason_and_the_rest_kept() -> None:
    payloads = [
        b'{"id": 1, "amount": 1.5, "name": "a"}',
        b"not json",  # 1
        b'{"amount": 2.0, "name": "b"}',  # 2: no id
        b'{"id": 3, "amount": "12.5", "name": "c"}',  # 3: a string for a float
        b'{"id": 4, "amount": 1, "name": "d", "coupon": "X"}',  # 4: a column the dataset lacks
        b"[1, 2]",  # 5: not an object
        b"",  # 6: empty
        b'{"id": 7, "amount": 7, "name": "g"}{"id": 8}',  # 7: two objects
        b'{"id": null, "amount": 1, "name": "h"}',  # 8: a null id
        b'{"id": 9.5, "amount": 1, "name": "i"}',  # 9: a float id for an integer column
        b'{"id": 10, "amount": 1, "name": 10}',  # 10: a number for a string
        b'{"id": 11, "amount": true, "name": "k"}',  # 11: a boolean for a float
        b'{\n  "id": 12,\n  "amount": 3,\n  "name": "pretty"\n}',  # 12: valid, on several lines
        b'{"id": 13, "amount": 1, "name": "\xff"}',  # 13: not UTF-8
        b'{"id": 14, "name": "no amount"}',  # 14: a missing field is null
    ]
    parsed = parse_batch(payloads, SCHEMA, "id")
    assert parsed.table is not None
    assert parsed.table.column("id").to_pylist() == [1, 12, 14]
    assert sorted(int(i) for i in parsed.index) == [0, 12, 14]
    got = reasons(parsed)
    assert sorted(got) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13]
    assert got[1][0] == "invalid_json"
    assert "not valid JSON" in got[1][1]
    assert got[2] == ("missing_id", "no id: the field 'id' is missing or null")
    assert got[8][0] == "missing_id"
    assert got[3][0] == "schema"
    assert "'amount' is string" in got[3][1]
    assert "float" in got[3][1]
    assert got[4][0] == "schema"
    assert "'coupon'" in got[4][1]
    assert "schema change" in got[4][1]
    assert got[5] == ("invalid_json", "not a JSON object but array")
    assert got[6][0] == "invalid_json"
    assert got[7][0] == "invalid_json"
    assert got[9][0] == "schema"
    assert "'id' is float" in got[9][1]
    assert got[10][0] == "schema"
    assert "'name' is integer" in got[10][1]
    assert got[11][0] == "schema"
    assert "'amount' is boolean" in got[11][1]
    assert got[13][0] == "invalid_json"


def test_the_first_batch_infers_the_schema_by_majority() -> None:
    payloads = [dumps({"id": i, "amount": i + 0.5, "name": "x"}) for i in range(20)]
    payloads.insert(5, b'{"id": "five", "amount": 1.0, "name": "y"}')
    payloads.insert(9, b'{"id": 100, "amount": "lots", "name": "z"}')
    parsed = parse_batch(payloads, None, "id")
    assert parsed.schema is not None
    assert parsed.schema.field("id").type == pa.int64()
    assert parsed.schema.field("amount").type == pa.float64()
    assert parsed.table is not None
    assert parsed.table.num_rows == 20
    assert {i: kind for i, (kind, _) in reasons(parsed).items()} == {5: "schema", 9: "schema"}


def test_a_batch_without_any_object_rejects_everything() -> None:
    parsed = parse_batch([b"1", b"nope", b'"text"'], None, "id")
    assert parsed.table is None
    assert len(parsed.rejected) == 3


def test_a_batch_without_the_id_field_rejects_every_row() -> None:
    parsed = parse_batch([b'{"key": 1}', b'{"key": 2}'], None, "id")
    assert parsed.table is None
    assert [kind for _, kind, _ in parsed.rejected] == ["missing_id", "missing_id"]


def test_a_nested_id_is_refused() -> None:
    parsed = parse_batch([b'{"id": [1]}', b'{"id": [2]}'], None, "id")
    assert parsed.table is None
    assert {k for _, k, _ in parsed.rejected} == {"missing_id"}


good = st.builds(
    lambda i, a: dumps({"id": i, "amount": a, "name": "n"}),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
bad = st.one_of(
    st.binary(max_size=30),
    st.just(b'{"id": 1, "amount": "x", "name": "n"}'),
    st.just(b'{"id": "a", "amount": 1, "name": "n"}'),
    st.just(b'{"amount": 1, "name": "n"}'),
    st.just(b'{"id": 2, "amount": 1, "name": "n", "z": 0}'),
    st.just(b"{}"),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(good, bad), max_size=60))
def test_every_message_is_either_a_row_or_rejected_once(payloads: list[bytes]) -> None:
    parsed = parse_batch(payloads, SCHEMA, "id")
    rows = [] if parsed.table is None else [int(i) for i in parsed.index]
    rejected = [i for i, _, _ in parsed.rejected]
    assert sorted(rows + rejected) == list(range(len(payloads)))
    assert rows == sorted(rows)  # rows keep the order of their messages
    if parsed.table is not None:
        parsed.table.validate(full=True)  # e.g. no invalid UTF-8 taken into a string
    for i in rows:  # and a row holds exactly its message's values
        row = parsed.table.slice(rows.index(i), 1).to_pylist()[0]  # type: ignore[union-attr]
        expected = json.loads(payloads[i])
        assert row["id"] == expected["id"]
        assert row["amount"] == expected.get("amount")


def test_the_window_drops_known_ids_and_repeats_within_a_batch() -> None:
    window = DedupWindow(5)
    window.add([1, 2, 3])
    assert window.check([3, 4, 4, 5, 1]).tolist() == [False, True, False, True, False]
    window.add([4, 5, 6, 7])  # holds the last 5 ids: 3..7
    assert len(window) == 5
    assert 1 not in window
    assert 2 not in window
    assert 7 in window
    assert window.check([1, 7]).tolist() == [True, False]


def test_a_window_of_zero_only_drops_repeats_within_a_batch() -> None:
    window = DedupWindow(0)
    window.add([1])
    assert window.check([1, 1]).tolist() == [True, False]


def test_the_window_holds_strings_too_and_evicts_part_of_a_batch() -> None:
    window = DedupWindow(3)
    window.add(pa.array(["a", "b"]))
    window.add(pa.chunked_array([["c", "d"]]))  # 'a' goes: the last three are b, c, d
    assert window.check(pa.array(["a", "b", "d", "e", "e"])).tolist() == [
        True,
        False,
        False,
        True,
        False,
    ]
    assert len(window) == 3
