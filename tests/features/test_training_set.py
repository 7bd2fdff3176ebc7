"""Point-in-time training sets against a brute-force reference, and their bad inputs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
    # repeated minutes: of rows with equal times, the last one written is the value
    st.lists(st.integers(0, 50), min_size=1, max_size=8),
    min_size=1,
    max_size=4,
)
entity_rows = st.lists(st.tuples(st.integers(0, 4), st.integers(-5, 60)), min_size=1, max_size=25)

# how the integer key k is stored: one integer key (the packed-key search), a text key, two
# integer keys, an integer key too wide to pack with the times (both: Polars' join_asof)
KEY_KINDS: dict[str, tuple[dict[str, str], Callable[[int], dict[str, object]]]] = {
    "integer": ({"customer_id": "integer"}, lambda k: {"customer_id": k}),
    "string": ({"customer_id": "string"}, lambda k: {"customer_id": f"c{k}"}),
    "pair": ({"region": "integer", "shop": "integer"}, lambda k: {"region": k % 2, "shop": k}),
    "wide": ({"customer_id": "integer"}, lambda k: {"customer_id": (k - 2) * 2**61}),
}


def _reference(
    source: list[tuple[int, int]], rows: list[tuple[int, int]], ttl: int | None
) -> list[int | None]:
    """For each entity row, the position in ``source`` (key, minute) of its value: the latest
    minute at or before the row's, in TTL; of equal minutes, the last row."""
    found: list[int | None] = []
    for key, t in rows:
        window = [
            (m, i)
            for i, (k, m) in enumerate(source)
            if k == key and m <= t and (ttl is None or m >= t - ttl)
        ]
        found.append(max(window)[1] if window else None)
    return found


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    source=source_rows,
    rows=entity_rows,
    ttl=st.one_of(st.none(), st.integers(1, 30)),
    kind=st.sampled_from(sorted(KEY_KINDS)),
    in_time_order=st.booleans(),
)
def test_training_set_matches_brute_force_reference(
    shared_ws: Workspace,
    source: dict[int, list[int]],
    rows: list[tuple[int, int]],
    ttl: int | None,
    kind: str,
    in_time_order: bool,
) -> None:
    ws = shared_ws
    join_keys, key_values = KEY_KINDS[kind]
    flat = [(k, m) for k, ms in source.items() for m in ms]
    if in_time_order:  # keys interleaved in time order, as a log is written
        flat.sort(key=lambda pair: pair[1])
    keys = {name: [key_values(k)[name] for k, _ in flat] for name in join_keys}
    ws.datasets.write_version(
        f"events_{kind}",
        pl.DataFrame(
            {
                **keys,
                "ts": pl.Series([_minutes(m) for _, m in flat], dtype=pl.Datetime("us")),
                "seen": pl.Series([m for _, m in flat], dtype=pl.Int64),  # its minute
                "position": pl.Series(range(len(flat)), dtype=pl.Int64),
            }
        ).to_arrow(),
    )
    entity = Entity(f"customer_{kind}", join_keys=join_keys)
    view = FeatureView(
        f"activity_{kind}",
        entities=[entity],
        source=f"events_{kind}",
        timestamp_column="ts",
        features=["seen", "position"],
        ttl=timedelta(minutes=ttl) if ttl is not None else None,
    )
    ws.features.apply([entity, view], force=True)
    entity_df = pl.DataFrame(
        {
            **{name: [key_values(k)[name] for k, _ in rows] for name in join_keys},
            "event_timestamp": pl.Series([_minutes(t) for _, t in rows], dtype=pl.Datetime("us")),
            "row": list(range(len(rows))),
        }
    )
    result = ws.features.training_set(
        entity_df, [f"activity_{kind}:seen", f"activity_{kind}:position"]
    )
    got = pl.from_arrow(result.table)
    assert isinstance(got, pl.DataFrame)
    # every entity row kept, in the caller's order, with the caller's columns untouched
    assert got.height == len(rows)
    assert got["row"].to_list() == list(range(len(rows)))
    assert got.select(*join_keys, "event_timestamp").equals(
        entity_df.select(*join_keys, "event_timestamp")
    )
    positions = got["position"].to_list()
    assert positions == _reference(flat, rows, ttl)
    seen = got["seen"].to_list()
    assert seen == [None if p is None else flat[p][1] for p in positions]
    for (_key, t), m in zip(rows, seen, strict=True):
        if m is not None:
            assert m <= t  # never a value from after the entity row's time
            assert ttl is None or m >= t - ttl  # never one older than the TTL
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


@pytest.mark.parametrize("in_time_order", [True, False])
def test_packed_key_search_agrees_with_join_asof_over_wide_keys(in_time_order: bool) -> None:
    """Keys over more than 2**16 values (two radix passes when the rows are in time order),
    repeated times, keys and times on the left the right side never has."""
    import numpy as np

    from mloop.features.service import ROW, TS, _packed_asof, _polars_asof

    rng = np.random.default_rng(7)
    n = 20_000
    times = rng.integers(0, 5_000, n) * 1_000_000  # many repeats
    if in_time_order:
        times.sort()
    right = pl.DataFrame(
        {
            "k": rng.integers(0, 300, n) * 1_000,  # 300 keys over 299,001 values
            TS: pl.Series(times).cast(pl.Datetime("us")),
        }
    )
    left = pl.DataFrame(
        {
            "k": pl.Series(rng.integers(-1, 302, 5_000) * 1_000).set(
                pl.Series(rng.random(5_000) < 0.05), None
            ),
            TS: pl.Series(rng.integers(-100, 5_100, 5_000) * 1_000_000).cast(pl.Datetime("us")),
        }
    )
    by_time = left.with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64)).sort(TS)
    for ttl in (None, 300):
        packed = _packed_asof(left, right, ["k"], ttl)
        assert packed is not None
        reference = _polars_asof(by_time, right, ["k"], ttl)
        assert (packed == reference).all()
        assert 0 < (packed >= 0).sum() < len(left)
