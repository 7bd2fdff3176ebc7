"""Entities and feature views: checked against their source, versioned, incompatible changes
refused unless forced."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest

from mloop.core.errors import Conflict, InvalidInput, NotFound
from mloop.features import Entity, Feature, FeatureView, parse_ttl
from mloop.workspace import Workspace

CUSTOMER = Entity("customer", join_keys={"customer_id": "integer"}, description="a buyer")


def _source(ws: Workspace) -> None:
    ws.datasets.write_version(
        "tx",
        pl.DataFrame(
            {
                "customer_id": [1, 2],
                "ts": [datetime(2024, 1, 1), datetime(2024, 1, 2)],
                "spend": [1.5, 2.5],
                "visits": [3, 4],
                "city": ["a", "b"],
            }
        ).to_arrow(),
    )


def _view(**changes: object) -> FeatureView:
    spec: dict[str, object] = {
        "entities": [CUSTOMER],
        "source": "tx",
        "timestamp_column": "ts",
        "features": ["spend", Feature("visits", "integer")],
        "ttl": "7d",
        "owner": "ana",
        "tags": {"team": "growth"},
        "description": "spending",
    }
    spec.update(changes)
    return FeatureView("spending", **spec)


def test_apply_stores_versions_and_same_definition_is_same_version(ws: Workspace) -> None:
    _source(ws)
    entity, view = ws.features.apply([CUSTOMER, _view()])
    assert (entity.version, view.version) == (1, 1)
    assert isinstance(view, FeatureView)
    assert view.ttl == 7 * 86400
    assert [(f.name, f.dtype) for f in view.features] == [("spend", "float"), ("visits", "integer")]
    assert [v.version for v in ws.features.apply([CUSTOMER, _view()])] == [1, 1]
    changed = ws.features.apply(_view(description="changed", features=["spend", "visits", "city"]))
    assert changed[0].version == 2
    assert ws.features.get_view("spending").version == 2
    assert ws.features.get_view("spending@1").feature_names == ["spend", "visits"]
    assert [v.ref for v in ws.features.list_views()] == ["spending@2"]
    assert [(e.ref, e.description) for e in ws.features.list_entities()] == [
        ("customer@1", "a buyer")
    ]
    # re-applying an older definition makes it the latest again, as a new version
    assert ws.features.apply(_view(), force=True)[0].version == 3
    assert ws.features.get_view("spending").feature_names == ["spend", "visits"]


def test_incompatible_changes_are_refused_unless_forced(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    _source(ws)
    ws.features.apply([CUSTOMER, _view()])
    with pytest.raises(Conflict, match="feature 'visits' changes type from integer to float"):
        ws.features.apply(_view(features=["spend", Feature("visits", "float")]))
    with pytest.raises(Conflict, match="join keys change"):
        ws.features.apply(Entity("customer", join_keys={"customer_id": "string"}))
    assert ws.features.get_view("spending").version == 1
    assert (
        ws.features.apply(_view(features=["spend", Feature("visits", "float")]), force=True)[
            0
        ].version
        == 2
    )
    # adding a feature, changing the TTL or removing a feature no model uses is compatible
    assert ws.features.apply(_view(features=["spend", "city"], ttl=None))[0].version == 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"source": "nope"}, "source dataset 'nope' does not exist"),
        ({"timestamp_column": "when"}, "no timestamp column 'when'"),
        ({"timestamp_column": "spend"}, "is float, not a datetime"),
        ({"features": ["spend", "missing"]}, "no feature column 'missing'"),
        ({"features": [Feature("city", "integer")]}, "'city' is declared integer .* string"),
        ({"features": ["spend", "spend"]}, "names feature 'spend' twice"),
        ({"features": ["customer_id"]}, "is a join key or the timestamp"),
        ({"features": []}, "needs at least one feature"),
        ({"entities": ["shop"]}, "entity 'shop' is not defined"),
    ],
)
def test_bad_views_are_refused_and_nothing_stored(
    sqlite_ws: Workspace, changes: dict[str, object], message: str
) -> None:
    _source(sqlite_ws)
    with pytest.raises(InvalidInput, match=message):
        sqlite_ws.features.apply([CUSTOMER, _view(**changes)])
    assert sqlite_ws.features.list_entities() == []
    assert sqlite_ws.features.list_views() == []


def test_source_lacking_the_join_key_or_mistyping_it(sqlite_ws: Workspace) -> None:
    _source(sqlite_ws)
    with pytest.raises(InvalidInput, match="no join key column 'shop_id'"):
        sqlite_ws.features.apply(
            [Entity("shop", join_keys={"shop_id": "integer"}), _view(entities=["shop"])]
        )
    with pytest.raises(InvalidInput, match="join key 'customer_id' is string but"):
        sqlite_ws.features.apply([Entity("customer", join_keys={"customer_id": "string"}), _view()])
    with pytest.raises(InvalidInput, match="has type 'float'"):
        sqlite_ws.features.apply([Entity("customer", join_keys={"customer_id": "float"})])


def test_unknown_definitions_are_not_found(sqlite_ws: Workspace) -> None:
    with pytest.raises(NotFound, match="feature view 'nope' does not exist"):
        sqlite_ws.features.get_view("nope")
    _source(sqlite_ws)
    sqlite_ws.features.apply([CUSTOMER, _view()])
    with pytest.raises(NotFound, match="has no version 5"):
        sqlite_ws.features.get_view("spending@5")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7d", 604800),
        ("12h", 43200),
        ("30m", 1800),
        ("45s", 45),
        (timedelta(hours=1), 3600),
        (None, None),
    ],
)
def test_ttl_forms(value: object, seconds: int | None) -> None:
    assert parse_ttl(value) == seconds


def test_bad_ttl() -> None:
    with pytest.raises(InvalidInput, match="invalid ttl 'soon'"):
        parse_ttl("soon")
