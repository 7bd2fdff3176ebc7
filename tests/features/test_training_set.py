"""Point-in-time training sets against a brute-force reference, and their bad inputs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mloop.core.errors import InvalidInput
from mloop.features import Entity, FeatureView
from mloop.workspace import Workspace

T0 = datetime(2024, 1, 1)
CUSTOMER = Entity("customer", join_keys={"customer_id": "integer"})


def _minutes(m: int) -> datetime:
    return T0 + timedelta(minutes=m)


@pytest.fixture(scope="module")
def shared_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    workspace = Workspace.open(tmp_path_factory.mktemp("features") / "ws")
    try:
        yield workspace
    finally:
        workspace.close()


source_rows = st.dictionaries(
    st.integers(0, 3),
    st.lists(st.integers(0, 50), min_size=1, max_size=8, unique=True),
    min_size=1,
    max_size=4,
)
entity_rows = st.lists(st.tuples(st.integers(0, 4), st.integers(-5, 60)), min_size=1, max_size=25)


def _reference(
    source: dict[int, list[int]], rows: list[tuple[int, int]], ttl: int | None
) -> list[int | None]:
    """The latest value time (the value is its own minute) at or before each row, in TTL."""
    found: list[int | None] = []
    for key, t in rows:
        window = [m for m in source.get(key, []) if m <= t and (ttl is None or m >= t - ttl)]
        found.append(max(window) if window else None)
    return found


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(source=source_rows, rows=entity_rows, ttl=st.one_of(st.none(), st.integers(1, 30)))
def test_training_set_matches_brute_force_reference(
    shared_ws: Workspace,
    source: dict[int, list[int]],
    rows: list[tuple[int, int]],
    ttl: int | None,
) -> None:
    ws = shared_ws
    flat = [(k, m) for k, ms in source.items() for m in ms]
    ws.datasets.write_version(
        "events",
        pl.DataFrame(
            {
                "customer_id": [k for k, _ in flat],
                "ts": [_minutes(m) for _, m in flat],
                "seen": [m for _, m in flat],  # each value is the minute it became true
                "double": [2 * m for _, m in flat],
            },
            schema={
                "customer_id": pl.Int64,
                "ts": pl.Datetime("us"),
                "seen": pl.Int64,
                "double": pl.Int64,
            },
        ).to_arrow(),
    )
    view = FeatureView(
        "activity",
        entities=[CUSTOMER],
        source="events",
        timestamp_column="ts",
        features=["seen", "double"],
        ttl=timedelta(minutes=ttl) if ttl is not None else None,
    )
    ws.features.apply([CUSTOMER, view], force=True)
    entity_df = pl.DataFrame(
        {
            "customer_id": [k for k, _ in rows],
            "event_timestamp": [_minutes(t) for _, t in rows],
            "row": list(range(len(rows))),
        },
        schema={"customer_id": pl.Int64, "event_timestamp": pl.Datetime("us"), "row": pl.Int64},
    )
    result = ws.features.training_set(entity_df, ["activity:seen", "activity:double"])
    got = pl.from_arrow(result.table)
    assert isinstance(got, pl.DataFrame)
    # every entity row kept, in the caller's order, with the caller's columns untouched
    assert got.height == len(rows)
    assert got["row"].to_list() == list(range(len(rows)))
    assert got.select("customer_id", "event_timestamp").equals(
        entity_df.select("customer_id", "event_timestamp")
    )
    seen = got["seen"].to_list()
    assert seen == _reference(source, rows, ttl)
    for (_key, t), m in zip(rows, seen, strict=True):
        if m is not None:
            assert m <= t  # never a value from after the entity row's time
            assert ttl is None or m >= t - ttl  # never one older than the TTL
    assert got["double"].to_list() == [None if m is None else 2 * m for m in seen]
    assert result.version.row_count == len(rows)


def _setup(ws: Workspace) -> None:
    ws.datasets.write_version(
        "tx",
        pl.DataFrame(
            {
                "customer_id": [1, 1, 2],
                "ts": [_minutes(0), _minutes(10), _minutes(5)],
                "spend": [1.0, 2.0, 3.0],
            }
        ).to_arrow(),
    )
    ws.features.apply(
        [
            CUSTOMER,
            FeatureView(
                "spending",
                entities=["customer"],
                source="tx",
                timestamp_column="ts",
                features=["spend"],
                ttl="1h",
            ),
        ]
    )


def test_training_set_is_a_dataset_version_with_lineage(ws: Workspace) -> None:
    _setup(ws)
    entity_df = pl.DataFrame(
        {"customer_id": [2, 1, 1, 9], "event_timestamp": [_minutes(m) for m in (6, 9, 71, 1)]}
    )
    result = ws.features.training_set(entity_df, ["spending:spend"], name="churn_train")
    assert result.version.ref == "churn_train@1"
    assert result.version.kind == "training_set"
    assert result.sources[0].ref == "tx@1"
    assert pl.from_arrow(ws.datasets.load("churn_train@1"))["spend"].to_list() == [
        3.0,
        1.0,
        None,  # the latest value (minute 10) is older than the 1h TTL at minute 71
        None,  # an entity with no values at all
    ]
    edges = ws.lineage.upstream("dataset_version", result.version.id)
    assert (result.sources[0].id, "features") in [(e.src.id, e.relation) for e in edges]


@pytest.mark.parametrize(
    ("frame", "features", "message"),
    [
        ({"customer_id": [1], "event_timestamp": [T0]}, ["nope:spend"], "unknown feature view"),
        ({"customer_id": [1], "event_timestamp": [T0]}, ["spending:nope"], "no feature 'nope'"),
        ({"customer_id": [1], "event_timestamp": [T0]}, ["spend"], "use 'view:feature'"),
        ({"event_timestamp": [T0]}, ["spending:spend"], "no join key 'customer_id'"),
        ({"customer_id": ["1"], "event_timestamp": [T0]}, ["spending:spend"], "is string"),
        ({"customer_id": [1], "when": [T0]}, ["spending:spend"], "no timestamp column"),
        ({"customer_id": [1], "event_timestamp": [1]}, ["spending:spend"], "not a datetime"),
        (
            {"customer_id": [1], "event_timestamp": [T0], "spend": [0.0]},
            ["spending:spend"],
            "clashes",
        ),
    ],
)
def test_bad_training_set_input_is_refused_and_nothing_written(
    sqlite_ws: Workspace, frame: dict[str, list[object]], features: list[str], message: str
) -> None:
    _setup(sqlite_ws)
    with pytest.raises(InvalidInput, match=message):
        sqlite_ws.features.training_set(pl.DataFrame(frame), features)
    assert "training_set" not in [d.name for d in sqlite_ws.datasets.list()]


def test_null_keys_and_times_zones_and_two_views(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    _setup(ws)
    ws.datasets.write_version(
        "visits",
        pl.DataFrame(
            {"customer_id": [1, 2], "at": [_minutes(3), _minutes(4)], "pages": [7, 8]}
        ).to_arrow(),
    )
    ws.features.apply(
        FeatureView(
            "browsing",
            entities=["customer"],
            source="visits",
            timestamp_column="at",
            features=["pages"],
        )
    )
    entity_df = pl.DataFrame(
        {
            "customer_id": pl.Series([1, None, 2, 1], dtype=pl.Int32),
            "event_timestamp": pl.Series(
                [_minutes(4), _minutes(9), None, _minutes(2)], dtype=pl.Datetime("ns")
            ).dt.replace_time_zone("UTC"),
        }
    )
    result = ws.features.training_set(entity_df, ["spending:spend", "browsing:pages"])
    got = pl.from_arrow(result.table)
    assert isinstance(got, pl.DataFrame)
    assert got.columns == ["customer_id", "event_timestamp", "spend", "pages"]
    assert got["customer_id"].to_list() == [1, None, 2, 1]
    assert got["spend"].to_list() == [1.0, None, None, 1.0]
    assert got["pages"].to_list() == [7, None, None, None]
    # a zone other than UTC is the same instant
    shifted = entity_df.with_columns(pl.col("event_timestamp").dt.convert_time_zone("Asia/Tokyo"))
    again = ws.features.training_set(shifted, ["spending:spend", "browsing:pages"])
    assert pl.from_arrow(again.table)["pages"].to_list() == [7, None, None, None]  # type: ignore[index]


def test_source_that_lost_a_column_is_refused(sqlite_ws: Workspace) -> None:
    _setup(sqlite_ws)
    sqlite_ws.datasets.write_version(
        "tx", pl.DataFrame({"customer_id": [1], "ts": [_minutes(0)]}).to_arrow()
    )
    frame = pl.DataFrame({"customer_id": [1], "event_timestamp": [T0]})
    with pytest.raises(InvalidInput, match="has no column 'spend' any more"):
        sqlite_ws.features.training_set(frame, ["spending:spend"])
