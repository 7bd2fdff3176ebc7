"""The online store: materialization (range, incremental, from a stream), online reads on SQLite
and Redis with TTL on read, the same values as the training set, transforms, on-demand features,
skew checks, serving by entity keys, and bad input."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import service_unavailable
from feature_helpers import STREAM, live_view
from mloop.api import create_app
from mloop.core.errors import Conflict, InvalidInput
from mloop.features import Codec, Entity, FeatureView, OnDemandFeatureView
from mloop.workspace import Workspace

DRIVER = Entity("driver", join_keys={"driver_id": "integer"})
REDIS_URL = "redis://127.0.0.1:6379/15"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def _redis_ws(path: Path) -> Workspace:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # the server is down or the client missing
        service_unavailable(f"Redis at 127.0.0.1:6379 is not reachable: {exc}")
    return Workspace.open(path, online_store=REDIS_URL, online_namespace=f"t-{uuid.uuid4().hex}")


def _drop_namespace(ws: Workspace) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    namespace = ws.settings.online_namespace
    keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["sqlite", "redis"])
def store_ws(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    """A workspace whose online store is SQLite, then Redis."""
    if request.param == "sqlite":
        ws = Workspace.open(tmp_path / "ws")
    else:
        ws = _redis_ws(tmp_path / "ws")
    try:
        yield ws
    finally:
        if request.param == "redis":
            _drop_namespace(ws)
        ws.close()


Row = tuple[int, datetime, float, int | None, str | None]


def _frame(rows: list[Row]) -> pl.DataFrame:
    """Driver stats rows: (driver_id, ts, rate, trips, city)."""
    return pl.DataFrame(
        rows,
        schema={
            "driver_id": pl.Int64,
            "ts": pl.Datetime("us"),
            "rate": pl.Float64,
            "trips": pl.Int64,
            "city": pl.String,
        },
        orient="row",
    )


def _stats(ws: Workspace, rows: list[Row]) -> None:
    ws.datasets.write_version("stats", _frame(rows).to_arrow())


def _append(ws: Workspace, rows: list[Row]) -> None:
    ws.datasets.append("stats", _frame(rows).to_arrow())


def _view(**extra: object) -> FeatureView:
    spec: dict[str, object] = {
        "entities": [DRIVER],
        "source": "stats",
        "timestamp_column": "ts",
        "features": ["rate", "trips", "city"],
        "ttl": "1h",
        **extra,
    }
    return FeatureView("driver_stats", **spec)  # type: ignore[arg-type]


FEATURES = ["driver_stats:rate", "driver_stats:trips", "driver_stats:city"]


def test_online_values_equal_the_training_set_for_the_same_key_and_time(
    store_ws: Workspace,
) -> None:
    ws = store_ws
    now = _now()
    _stats(
        ws,
        [
            (1, now - timedelta(minutes=50), 0.5, 3, "paris"),
            (1, now - timedelta(minutes=5), 0.7, None, "lyon"),  # the latest for driver 1
            (2, now - timedelta(minutes=30), 0.9, 8, None),
            (3, now - timedelta(hours=3), 0.1, 1, "nice"),  # older than the 1 h TTL
            (4, now + timedelta(days=1), 0.3, 2, "metz"),  # in the future: not yet true
        ],
    )
    ws.features.apply([DRIVER, _view()])
    [run] = ws.features.materialize("driver_stats")
    assert run.status == "succeeded"
    assert run.rows_read == 5
    assert run.entities_written == 3  # driver 4's only row is past the window's end (now)

    keys = [1, 2, 3, 4, 99]
    online = ws.features.online([{"driver_id": k} for k in keys], FEATURES)
    offline = ws.features.training_set(
        pl.DataFrame({"driver_id": keys, "event_timestamp": [_now()] * len(keys)}),
        FEATURES,
        register=False,
    ).to_polars()
    for i, row in enumerate(online.rows):
        for name in ("rate", "trips", "city"):
            assert row[name] == offline[name][i], (keys[i], name)
    assert online.rows[0] == {"driver_id": 1, "rate": 0.7, "trips": None, "city": "lyon"}
    assert online.rows[1] == {"driver_id": 2, "rate": 0.9, "trips": 8, "city": None}
    assert [s["rate"] for s in online.statuses] == [
        "present",
        "present",
        "expired",  # materialized, but older than the TTL when read: null, flagged
        "missing",
        "missing",
    ]
    assert online.rows[2]["rate"] is None
    assert online.to_dict()["rate"] == [0.7, 0.9, None, None, None]


def test_incremental_materialization_takes_new_segments_and_keeps_the_newer_record(
    store_ws: Workspace,
) -> None:
    ws = store_ws
    now = _now()
    _stats(ws, [(1, now - timedelta(minutes=20), 1.0, 1, "a")])
    ws.features.apply([DRIVER, _view()])
    first = ws.features.materialize("driver_stats", incremental=True)[0]
    assert (first.mode, first.entities_written) == ("incremental", 1)
    # an append: a newer value for 1, a late (older) row for 2, an older value for 1
    _append(
        ws,
        [
            (1, now - timedelta(minutes=10), 2.0, 2, "b"),
            (2, now - timedelta(minutes=40), 5.0, 5, "c"),
            (1, now - timedelta(minutes=30), 0.5, 0, "z"),
        ],
    )
    second = ws.features.materialize("driver_stats", incremental=True)[0]
    assert second.rows_read == 3  # only the appended segment's rows are new
    rows = ws.features.online([{"driver_id": 1}, {"driver_id": 2}], FEATURES).rows
    assert [r["rate"] for r in rows] == [2.0, 5.0]  # the late row for 2 is taken too
    # an older range materialized afterwards does not replace newer records
    ws.features.materialize("driver_stats", end=now - timedelta(minutes=15))
    assert ws.features.online([{"driver_id": 1}], FEATURES).rows[0]["rate"] == 2.0


def test_a_failed_materialization_leaves_the_previous_values_and_is_recorded(
    sqlite_ws: Workspace,
) -> None:
    ws = sqlite_ws
    now = _now()
    _stats(ws, [(1, now - timedelta(minutes=5), 1.5, 1, "a")])
    ws.features.apply([DRIVER, _view()])
    ws.features.materialize("driver_stats")
    # the source loses a feature column: the next materialization fails before writing
    ws.datasets.write_version(
        "stats",
        pl.DataFrame({"driver_id": [1], "ts": [now], "rate": [9.0], "trips": [9]}).to_arrow(),
    )
    with pytest.raises(InvalidInput, match="has no column 'city'"):
        ws.features.materialize("driver_stats")
    assert ws.features.online([{"driver_id": 1}], FEATURES).rows[0]["rate"] == 1.5
    last, previous = ws.features.materializations("driver_stats")[:2]
    assert (last.status, previous.status) == ("failed", "succeeded")
    assert last.error is not None
    assert "city" in last.error
    [status] = ws.features.status()
    assert status["last_materialization"] == "failed"
    assert status["fresh"] is True  # the values served are still within the TTL
    assert status["newest_event"] is not None


def test_online_bad_input_is_refused_with_the_reason(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    _stats(ws, [(1, _now(), 1.0, 1, "a")])
    ws.features.apply([DRIVER, _view()])
    with pytest.raises(InvalidInput, match="has not been materialized"):
        ws.features.online([{"driver_id": 1}], FEATURES)
    ws.features.materialize()
    with pytest.raises(InvalidInput, match="unknown feature view 'nope'"):
        ws.features.online([{"driver_id": 1}], ["nope:rate"])
    with pytest.raises(InvalidInput, match="has no feature 'speed'"):
        ws.features.online([{"driver_id": 1}], ["driver_stats:speed"])
    with pytest.raises(InvalidInput, match="use 'view:feature'"):
        ws.features.online([{"driver_id": 1}], ["rate"])
    with pytest.raises(InvalidInput, match="entity row 1 has no join key 'driver_id'"):
        ws.features.online([{"driver_id": 1}, {"driver": 1}], FEATURES)
    with pytest.raises(InvalidInput, match="join key 'driver_id' is str '7'"):
        ws.features.online([{"driver_id": "7"}], FEATURES)
    with pytest.raises(InvalidInput, match="join key 'driver_id' is bool"):
        ws.features.online([{"driver_id": True}], FEATURES)
    with pytest.raises(InvalidInput, match="at least one entity row"):
        ws.features.online([], FEATURES)
    with pytest.raises(InvalidInput, match="list of objects"):
        ws.features.online({"driver_id": 1}, FEATURES)  # type: ignore[arg-type]


def test_transforms_polars_sql_and_python_give_the_same_values_offline_and_online(
    sqlite_ws: Workspace,
) -> None:
    ws = sqlite_ws
    now = _now()
    _stats(
        ws,
        [
            (1, now - timedelta(minutes=9), 2.0, 4, "a"),
            (1, now - timedelta(minutes=3), 3.0, 6, "b"),
            (2, now - timedelta(minutes=2), 5.0, 1, "c"),
        ],
    )

    def per_trip(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns((pl.col("rate") / pl.col("trips")).alias("rate_per_trip"))

    views = [
        FeatureView(
            "doubled",
            entities=["driver"],
            source="stats",
            timestamp_column="ts",
            features=["rate2"],
            transform={"rate2": pl.col("rate") * 2},
        ),
        FeatureView(
            "sql_view",
            entities=["driver"],
            source="stats",
            timestamp_column="ts",
            features=["trips_sq"],
            transform="SELECT driver_id, ts, trips * trips AS trips_sq FROM source",
        ),
        FeatureView(
            "py_view",
            entities=["driver"],
            source="stats",
            timestamp_column="ts",
            features=["rate_per_trip"],
            transform=per_trip,
        ),
    ]
    stored = ws.features.apply([DRIVER, *views])
    assert [v.transform.kind for v in stored[1:]] == ["polars", "sql", "python"]  # type: ignore[union-attr]
    assert [v.features[0].dtype for v in stored[1:]] == ["float", "integer", "float"]  # type: ignore[union-attr]
    ws.features.materialize()
    features = ["doubled:rate2", "sql_view:trips_sq", "py_view:rate_per_trip"]
    online = ws.features.online([{"driver_id": 1}, {"driver_id": 2}], features).rows
    assert online == [
        {"driver_id": 1, "rate2": 6.0, "trips_sq": 36, "rate_per_trip": 0.5},
        {"driver_id": 2, "rate2": 10.0, "trips_sq": 1, "rate_per_trip": 5.0},
    ]
    offline = ws.features.training_set(
        pl.DataFrame(
            {"driver_id": [1, 2, 1], "event_timestamp": [now, now, now - timedelta(minutes=5)]}
        ),
        features,
    ).to_polars()
    assert offline["rate2"].to_list() == [6.0, 10.0, 4.0]
    assert offline["trips_sq"].to_list() == [36, 1, 16]
    assert offline["rate_per_trip"].to_list() == [0.5, 5.0, 0.5]
    # the stored Python code runs, not the caller's function: it is the definition
    assert "def per_trip" in stored[3].transform.code  # type: ignore[union-attr]


def test_a_transform_that_breaks_or_lacks_a_column_is_refused_when_applied(
    sqlite_ws: Workspace,
) -> None:
    ws = sqlite_ws
    _stats(ws, [(1, _now(), 1.0, 1, "a")])
    with pytest.raises(InvalidInput, match=r"has no feature column 'ratio'"):
        ws.features.apply(
            [
                DRIVER,
                FeatureView(
                    "v",
                    entities=["driver"],
                    source="stats",
                    timestamp_column="ts",
                    features=["ratio"],
                    transform="SELECT driver_id, ts, rate AS other FROM source",
                ),
            ]
        )
    with pytest.raises(InvalidInput, match="failed"):
        ws.features.apply(
            [
                DRIVER,
                FeatureView(
                    "v",
                    entities=["driver"],
                    source="stats",
                    timestamp_column="ts",
                    features=["x"],
                    transform={"x": pl.col("no_such_column") + 1},
                ),
            ]
        )
    with pytest.raises(InvalidInput, match=r"must be exactly one SELECT"):
        FeatureView(
            "v",
            entities=["driver"],
            source="stats",
            timestamp_column="ts",
            features=["x"],
            transform="DELETE FROM source",
        )
    assert ws.features.list_views() == []


def test_on_demand_features_from_request_data_offline_and_online(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    now = _now()
    _stats(ws, [(1, now - timedelta(minutes=1), 4.0, 2, "a")])
    fare = OnDemandFeatureView(
        "fare",
        request={"distance": "float"},
        sources=["driver_stats:rate"],
        features=["price"],
        transform={"price": pl.col("distance") * pl.col("rate")},
    )
    [_, _, stored] = ws.features.apply([DRIVER, _view(), fare])
    assert stored.features[0].dtype == "float"  # type: ignore[union-attr]
    ws.features.materialize()
    online = ws.features.online(
        [{"driver_id": 1, "distance": 2.5}, {"driver_id": 7, "distance": 1.0}], ["fare:price"]
    )
    assert online.rows == [{"driver_id": 1, "price": 10.0}, {"driver_id": 7, "price": None}]
    # an on-demand feature is as present as its inputs
    assert online.statuses == [{"price": "present"}, {"price": "missing"}]
    offline = ws.features.training_set(
        pl.DataFrame({"driver_id": [1], "event_timestamp": [now], "distance": [2.5]}),
        ["fare:price", "driver_stats:trips"],
    ).to_polars()
    assert offline.select("price", "trips").row(0) == (10.0, 2)
    assert "rate" not in offline.columns  # an input of the on-demand view, not asked for
    with pytest.raises(InvalidInput, match="no request field 'distance'"):
        ws.features.online([{"driver_id": 1}], ["fare:price"])
    with pytest.raises(InvalidInput, match="request field 'distance' is str"):
        ws.features.online([{"driver_id": 1, "distance": "far"}], ["fare:price"])
    with pytest.raises(InvalidInput, match="no request field 'distance'"):
        ws.features.training_set(
            pl.DataFrame({"driver_id": [1], "event_timestamp": [now]}), ["fare:price"]
        )


def test_time_range_retrieval_without_an_entity_frame(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    t0 = datetime(2024, 5, 1)
    _stats(
        ws,
        [
            (1, t0, 1.0, 1, "a"),
            (2, t0 + timedelta(minutes=10), 2.0, 2, "b"),
            (1, t0 + timedelta(minutes=20), 3.0, 3, "c"),
            (2, t0 + timedelta(hours=5), 4.0, 4, "d"),
        ],
    )
    ws.features.apply([DRIVER, _view()])
    result = ws.features.training_set(
        features=["driver_stats:rate"], start=t0 + timedelta(minutes=5), end=t0 + timedelta(hours=1)
    ).to_polars()
    assert result.select("driver_id", "rate").rows() == [(2, 2.0), (1, 3.0)]
    with pytest.raises(InvalidInput, match="both start and end"):
        ws.features.training_set(features=["driver_stats:rate"], start=t0)
    with pytest.raises(InvalidInput, match="is after end"):
        ws.features.training_set(features=["driver_stats:rate"], start=t0 + timedelta(1), end=t0)


def test_training_set_lineage_reaches_the_view_definitions(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    _stats(ws, [(1, datetime(2024, 1, 1), 1.0, 1, "a")])
    ws.features.apply([DRIVER, _view()])
    made = ws.features.training_set(
        pl.DataFrame({"driver_id": [1], "event_timestamp": [datetime(2024, 1, 1, 0, 30)]}),
        ["driver_stats:rate"],
        name="ts_lineage",
    )
    assert made.version is not None
    graph = ws.lineage.upstream(made.version.ref)
    assert "feature_view:driver_stats@1" in graph.refs
    assert "dataset:stats@1" in graph.refs
    node = ws.lineage.resolve("feature_view:driver_stats")
    assert node.details["features"] == ["rate", "trips", "city"]
    spec = ws.features.training_set_spec(made.version.id)
    assert spec is not None
    assert (spec["keys"], spec["timestamp_column"]) == (["driver_id"], "event_timestamp")


def test_skew_check_reports_values_the_online_store_has_not_caught_up_with(
    sqlite_ws: Workspace,
) -> None:
    ws = sqlite_ws
    now = _now()
    _stats(
        ws,
        [
            (1, now - timedelta(minutes=10), 1.0, 1, "a"),
            (2, now - timedelta(minutes=10), 2.0, 2, "b"),
        ],
    )
    ws.features.apply([DRIVER, _view()])
    ws.features.materialize()
    rows = [{"driver_id": 1}, {"driver_id": 2}]
    assert ws.features.skew(rows, FEATURES).ok
    _append(ws, [(2, now - timedelta(minutes=1), 7.0, 2, "b")])
    report = ws.features.skew(rows, FEATURES)
    assert not report.ok
    assert report.mismatches == [
        {"row": 1, "keys": {"driver_id": 2}, "feature": "rate", "online": 2.0, "offline": 7.0}
    ]
    ws.features.materialize(incremental=True)
    assert ws.features.skew(rows, FEATURES).ok


def test_a_model_trained_on_a_training_set_is_served_by_entity_keys(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    now = _now()
    n = 60
    _stats(
        ws,
        [
            (k, now - timedelta(minutes=30), float(k % 7), k % 5, "a" if k % 2 else "b")
            for k in range(n)
        ],
    )
    ws.features.apply([DRIVER, _view()])
    labels = pl.DataFrame(
        {
            "driver_id": list(range(n)),
            "event_timestamp": [now - timedelta(minutes=1)] * n,
            "good": [int(k % 7 > 3) for k in range(n)],
        }
    )
    made = ws.features.training_set(labels, FEATURES, name="driver_train")
    assert made.version is not None
    result = ws.training.train(
        made.version.ref,
        "good",
        model="sklearn.ensemble.RandomForestClassifier",
        register="driver_model",
    )
    assert result.model_version is not None
    info = result.model_version.info["feature_store"]
    assert info["features"] == FEATURES
    assert info["keys"] == ["driver_id"]
    inputs = [c.name for c in result.model_version.require_signature().inputs]
    assert sorted(inputs) == ["city", "rate", "trips"]  # keys and time are not inputs
    ws.features.materialize()
    by_keys = ws.predict("driver_model@champion", [{"driver_id": 5}, {"driver_id": 6}])
    spelled_out = ws.predict(
        "driver_model@champion",
        [
            {"driver_id": 5, "rate": 5.0, "trips": 0, "city": "a"},
            {"driver_id": 6, "rate": 6.0, "trips": 1, "city": "b"},
        ],
    )
    assert by_keys.predictions == spelled_out.predictions == [1, 1]
    with pytest.raises(InvalidInput, match="no join key 'driver_id'"):
        ws.predict("driver_model@champion", [{"rate": 1.0}])
    # over REST: the server's predictor takes the same path, and logs what the model saw
    with TestClient(create_app(ws)) as client:
        response = client.post(
            "/v1/models/driver_model@champion/predict", json={"rows": [{"driver_id": 5}]}
        )
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == [1]
        response = client.post(
            "/v1/models/driver_model@champion/predict", json={"rows": [{"driver_id": "5"}]}
        )
        assert response.status_code == 400
        assert "join key 'driver_id' is str" in response.json()["message"]
    # through a deployment: the data plane fetches the features off the event loop, the same way
    ws.deployments.create("drivers", {"variants": [{"name": "p", "model": "driver_model@1"}]})
    with TestClient(create_app(ws)) as client:
        response = client.post(
            "/v1/deployments/drivers/predict", json={"rows": [{"driver_id": 5}, {"driver_id": 6}]}
        )
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == [1, 1]
        response = client.post("/v1/deployments/drivers/predict", json={"rows": [{"rate": 1.0}]})
        assert response.status_code == 400
        assert "no join key 'driver_id'" in response.json()["message"]
    # the model uses 'trips': removing it from the view is refused, naming the model
    with pytest.raises(Conflict, match=r"'trips' is removed but registered model driver_model@1"):
        ws.features.apply(_view(features=["rate", "city"]))
    assert ws.features.get_view("driver_stats").version == 1


def test_stream_view_materializes_continuously(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    events, view = live_view(ws, DRIVER)
    uri = STREAM
    ws.features.apply([DRIVER, view])
    ws.features.materialize("live")
    assert ws.features.online([{"driver_id": 2}], ["live:rate"]).rows[0]["rate"] == 2.0
    ws.streams.produce(uri, events(range(3, 9), 100.0))
    seen = []
    stats = ws.features.materialize_stream(
        "live", max_events=6, batch_size=3, max_wait=0.2, on_batch=lambda s, run: seen.append(run)
    )
    assert stats.written == 6
    assert len(seen) == 2  # one incremental materialization per micro-batch
    assert all(run.status == "succeeded" for run in seen)
    rows = ws.features.online([{"driver_id": k} for k in range(3)], ["live:rate"]).rows
    assert [r["rate"] for r in rows] == [106.0, 107.0, 108.0]
    ws.features.apply(
        [
            FeatureView(
                "still",
                entities=["driver"],
                source="driver_events",
                timestamp_column="ts",
                features=["rate"],
                transform={"ts": pl.from_epoch("ts_ms", time_unit="ms")},
            )
        ]
    )
    with pytest.raises(InvalidInput, match="has no stream"):
        ws.features.materialize_stream("still", max_events=1)


def test_changing_a_feature_type_is_refused_unless_forced(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    _stats(ws, [(1, _now(), 1.0, 1, "a")])
    ws.features.apply([DRIVER, _view()])
    changed = _view(transform={"trips": pl.col("trips").cast(pl.Float64)})
    with pytest.raises(Conflict, match="'trips' changes type from integer to float"):
        ws.features.apply([changed])
    [stored] = ws.features.apply([changed], force=True)
    assert stored.version == 2


kinds = st.sampled_from(["integer", "float", "boolean", "string", "datetime", "date"])
VALUES = {
    "integer": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(allow_nan=False),
    "boolean": st.booleans(),
    "string": st.text(max_size=20),
    "datetime": st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
    "date": st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 1, 1)),
}


@settings(max_examples=60, deadline=None)
@given(data=st.data(), layout=st.lists(kinds, min_size=1, max_size=12))
def test_packed_records_round_trip_every_type_and_null(
    data: st.DataObject, layout: list[str]
) -> None:
    names = [f"c{i}" for i in range(len(layout))]
    rows = data.draw(
        st.lists(
            st.tuples(*[st.one_of(st.none(), VALUES[k]) for k in layout]), min_size=1, max_size=5
        )
    )
    types = {
        "integer": pl.Int64,
        "float": pl.Float64,
        "boolean": pl.Boolean,
        "string": pl.String,
        "datetime": pl.Datetime("us"),
        "date": pl.Date,
    }
    frame = pl.DataFrame(
        {
            n: pl.Series(n, [r[i] for r in rows], dtype=types[k])
            for i, (n, k) in enumerate(zip(names, layout, strict=True))
        }
    )
    codec = Codec(list(zip(names, layout, strict=True)))
    import numpy as np

    ts = np.arange(len(rows), dtype=np.int64) * 1_000_003 - 5
    records = codec.pack_frame(ts, frame)
    for j, record in enumerate(records):
        t, values = codec.unpack(record)
        assert t == ts[j]
        assert values == list(frame.row(j))
        assert struct.unpack_from("<q", record)[0] == ts[j]  # the time leads every record


def test_on_demand_inputs_never_mix_with_features_of_the_same_name(
    sqlite_ws: Workspace,
) -> None:
    ws = sqlite_ws
    now = _now()
    _stats(ws, [(1, now - timedelta(minutes=1), 1.5, 1, "a")])
    ws.datasets.write_version(
        "other_src",
        pl.DataFrame(
            {"driver_id": [1], "ts": [now - timedelta(minutes=1)], "rate": [100.0]}
        ).to_arrow(),
    )
    other = FeatureView(
        "other", entities=["driver"], source="other_src", timestamp_column="ts", features=["rate"]
    )
    fare = OnDemandFeatureView(
        "fare",
        request={"distance": "float"},
        sources=["driver_stats@1:rate"],  # a pinned version of the view
        features=["price"],
        transform={"price": pl.col("distance") * pl.col("rate")},
    )
    ws.features.apply([DRIVER, _view(), other, fare])
    ws.features.materialize()
    features = ["other:rate", "fare:price", "driver_stats:rate"]
    with pytest.raises(InvalidInput, match="asked for from two views"):
        ws.features.online([{"driver_id": 1, "distance": 10.0}], features)
    online = ws.features.online([{"driver_id": 1, "distance": 10}], features[:2]).rows
    assert online == [{"driver_id": 1, "rate": 100.0, "price": 15.0}]
    offline = ws.features.training_set(
        pl.DataFrame({"driver_id": [1], "event_timestamp": [now], "distance": [10]}),
        features[:2],
        register=False,
    ).to_polars()
    assert offline.select("rate", "price").row(0) == (100.0, 15.0)
    # a request field declared float, sent as an integer, is cast the same way on both paths
    assert ws.features.skew([{"driver_id": 1, "distance": 10}], features[:2]).ok


def test_incremental_after_a_window_backfill_still_takes_late_rows(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    now = _now()
    _stats(ws, [(1, now - timedelta(minutes=20), 1.0, 1, "a")])
    ws.features.apply([DRIVER, _view()])
    ws.features.materialize()
    _append(ws, [(2, now - timedelta(minutes=30), 5.0, 1, "x")])
    # a backfill of an unrelated window is no baseline for the next incremental run
    ws.features.materialize(start=now - timedelta(minutes=5), end=now - timedelta(minutes=4))
    run = ws.features.materialize(incremental=True)[0]
    assert run.entities_written == 1
    assert ws.features.online([{"driver_id": 2}], "driver_stats:rate").rows[0]["rate"] == 5.0


def test_removing_a_feature_an_on_demand_view_reads_is_refused(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    _stats(ws, [(1, _now(), 1.0, 1, "a")])
    fare = OnDemandFeatureView(
        "fare",
        request={"distance": "float"},
        sources=["driver_stats:rate"],
        features=["price"],
        transform={"price": pl.col("distance") * pl.col("rate")},
    )
    ws.features.apply([DRIVER, _view(), fare])
    with pytest.raises(Conflict, match=r"'rate' is removed but on-demand view fare@1 uses it"):
        ws.features.apply(_view(features=["trips", "city"]))
    ws.features.apply(_view(features=["trips", "city"]), force=True)
    ws.features.materialize()
    with pytest.raises(InvalidInput, match="reads driver_stats:rate, which driver_stats@2 no"):
        ws.features.online([{"driver_id": 1, "distance": 1.0}], ["fare:price"])


def test_request_fields_of_dates_and_times_and_keys_out_of_range(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    now = _now()
    _stats(ws, [(1, now - timedelta(minutes=1), 1.0, 1, "a")])
    age = OnDemandFeatureView(
        "age",
        request={"day": "date", "since": "datetime"},
        features=["days", "minutes"],
        transform={
            "days": (pl.lit(date(2024, 5, 11)) - pl.col("day")).dt.total_days(),
            "minutes": (pl.lit(datetime(2024, 5, 1, 1)) - pl.col("since")).dt.total_minutes(),
        },
    )
    ws.features.apply([DRIVER, _view(), age])
    ws.features.materialize()
    rows = [
        {"driver_id": 1, "day": date(2024, 5, 1), "since": datetime(2024, 5, 1)},
        {"driver_id": 1, "day": "2024-05-06", "since": "2024-05-01T00:30:00+00:00"},  # JSON
    ]
    got = ws.features.online(rows, ["age:days", "age:minutes"]).rows
    assert [(r["days"], r["minutes"]) for r in got] == [(10, 60), (5, 30)]
    with pytest.raises(InvalidInput, match="request field 'day' is datetime"):
        ws.features.online([{**rows[0], "day": datetime(2024, 5, 1)}], ["age:days"])
    with pytest.raises(InvalidInput, match="request field 'since' is str 'soon'"):
        ws.features.online([{**rows[0], "since": "soon"}], ["age:minutes"])
    with pytest.raises(InvalidInput, match="join key 'driver_id' is int"):
        ws.features.online([{"driver_id": 2**70}], FEATURES)


def test_a_single_feature_reference_is_one_feature(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    now = _now()
    _stats(ws, [(1, now - timedelta(minutes=1), 1.0, 1, "a")])
    ws.features.apply([DRIVER, _view()])
    made = ws.features.training_set(
        pl.DataFrame({"driver_id": [1], "event_timestamp": [now]}), "driver_stats:rate"
    )
    assert made.features == ["driver_stats:rate"]
    assert made.to_polars()["rate"].to_list() == [1.0]


def test_redis_keys_that_look_like_store_internals_are_plain_keys(tmp_path: Path) -> None:
    ws = _redis_ws(tmp_path / "ws")
    try:
        user = Entity("user", join_keys={"user": "string"})
        ws.datasets.write_version(
            "scores",
            pl.DataFrame(
                {"user": ["__layout", "__meta", "u1"], "ts": [_now()] * 3, "score": [1.0, 2.0, 3.0]}
            ).to_arrow(),
        )
        ws.features.apply(
            [
                user,
                FeatureView(
                    "us",
                    entities=[user],
                    source="scores",
                    timestamp_column="ts",
                    features=["score"],
                ),
            ]
        )
        ws.features.materialize()
        ws.features.materialize()  # again: the guard reads the records the first run wrote
        rows = ws.features.online(
            [{"user": "__layout"}, {"user": "__meta"}, {"user": "u1"}], ["us:score"]
        ).rows
        assert [r["score"] for r in rows] == [1.0, 2.0, 3.0]
        assert ws.features.online_store.display.endswith(f"#{ws.settings.online_namespace}")
    finally:
        _drop_namespace(ws)
        ws.close()


def test_another_redis_namespace_is_another_store(tmp_path: Path) -> None:
    first = _redis_ws(tmp_path / "ws")
    try:
        _stats(first, [(1, _now(), 1.0, 1, "a")])
        first.features.apply([DRIVER, _view()])
        first.features.materialize()
        assert first.features.online([{"driver_id": 1}], FEATURES).rows[0]["rate"] == 1.0
    finally:
        first.close()
    second = Workspace.open(tmp_path / "ws", online_store=REDIS_URL, online_namespace="t-other")
    try:
        with pytest.raises(InvalidInput, match="has not been materialized"):
            second.features.online([{"driver_id": 1}], FEATURES)
    finally:
        second.close()
        _drop_namespace(first)
