"""search_runs and search_experiments on both metadata backends: what each clause selects, how
runs are ordered and paged — and a property test against a plain-Python reference."""

from __future__ import annotations

import functools
import math
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mloop import InvalidInput, NotFound
from mloop.core.ids import new_id
from mloop.tracking import (
    CreateRun,
    LogBatch,
    MetricValue,
    Operation,
    Run,
    RunInput,
    TrackingService,
    UpdateRun,
    artifact_uri,
    parse_order_by,
)
from mloop.workspace import Workspace

MAX_FLOAT = 1.7976931348623157e308
T0 = 1_700_000_000_000


class Runs:
    """Runs made with chosen start times, found again by name."""

    def __init__(self, tracking: TrackingService, experiment: str = "search") -> None:
        self.t = tracking
        self.experiment = tracking.get_or_create_experiment(experiment)
        self.by_name: dict[str, Run] = {}

    def add(
        self,
        name: str,
        start: int,
        *,
        params: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
        tags: dict[str, Any] | None = None,
        status: str | None = None,
        user: str | None = None,
        experiment_id: str | None = None,
    ) -> Run:
        run = self.t.create_run(
            experiment_id or self.experiment.id,
            name=name,
            start_time=T0 + start,
            tags=tags,
            user=user,
        )
        if params or metrics:
            self.t.log_batch(
                run.id,
                [MetricValue(key=k, value=v, timestamp=T0) for k, v in (metrics or {}).items()],
                params=params,
            )
        if status is not None:
            self.t.update_run(run.id, status=status, end_time=T0 + start + 100)  # type: ignore[arg-type]
        self.by_name[name] = self.t.get_run(run.id)
        return self.by_name[name]

    def names(
        self, filter_string: str | None = None, order_by: Sequence[str] | None = None, **kw: Any
    ) -> list[str]:
        kw.setdefault("experiment_ids", [self.experiment.id])
        page = self.t.search_runs(
            kw.pop("experiment_ids"), filter_string, order_by, kw.pop("max_results", None), **kw
        )
        return [run.name for run in page.items]

    def matching(self, filter_string: str) -> set[str]:
        return set(self.names(filter_string))


@pytest.fixture
def runs(ws: Workspace) -> Runs:
    return Runs(ws.tracking)


@pytest.fixture
def zoo(runs: Runs) -> Runs:
    """Five runs that differ in every way search can tell apart."""
    runs.add(
        "alpha",
        10,
        params={"model": "xgb", "depth": "3", "a.b": "dotted"},
        metrics={"auc": 0.91, "loss": 0.2, "val loss": 1.5, "a.b": 1.0, "neg": -2.5},
        tags={"team": "Risk", "mlflow.user": "ann", "with space": "yes"},
        status="FINISHED",
        user="ann",
    )
    runs.add(
        "beta",
        20,
        params={"model": "lgbm", "depth": "10"},
        metrics={"auc": 0.85, "loss": 0.35, "val-loss": 2.0, "neg": -0.5},
        tags={"team": "risk-ops"},
        status="FAILED",
        user="bob",
    )
    runs.add(
        "gamma",
        30,
        params={"model": "XGB"},
        metrics={"auc": 0.99, "loss": 1e-3, "neg": 3e2},
        tags={"team": "growth"},
        user="ann",
    )
    runs.add("delta", 40, metrics={"auc": math.nan, "loss": math.inf}, user="cy")
    runs.add("epsilon", 50, params={"model": "rf"}, metrics={"loss": -math.inf}, user="cy")
    return runs


# -- metrics -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.auc = 0.91", {"alpha"}),
        ("metrics.auc != 0.91", {"beta", "gamma"}),  # NaN and a missing metric never match
        ("metrics.auc > 0.9", {"alpha", "gamma"}),
        ("metrics.auc >= 0.91", {"alpha", "gamma"}),
        ("metrics.auc < 0.91", {"beta"}),
        ("metrics.auc <= 0.91", {"alpha", "beta"}),
        ("metric.auc > 0", {"alpha", "beta", "gamma"}),
        ("metrics.neg < -1", {"alpha"}),
        ("metrics.neg > -1", {"beta", "gamma"}),
        ("metrics.neg = -2.5", {"alpha"}),
        ("metrics.neg >= 3e2", {"gamma"}),
        ("metrics.neg = 3E+2", {"gamma"}),
        ("metrics.loss < 1e-2", {"gamma", "epsilon"}),
        ("metrics.loss = 1.0e-3", {"gamma"}),
        ("metrics.loss > .3", {"beta", "delta"}),
        ("metrics.auc > 0.8 and metrics.loss < 0.3", {"alpha", "gamma"}),
        ("metrics.nope > 0", set()),
        ("metrics.nope != 0", set()),
    ],
)
def test_metric_comparisons(zoo: Runs, text: str, expected: set[str]) -> None:
    assert zoo.matching(text) == expected


def test_metric_keys_with_dots_spaces_and_dashes(zoo: Runs) -> None:
    assert zoo.matching("metrics.`val loss` > 1") == {"alpha"}
    assert zoo.matching('metrics."val loss" > 1') == {"alpha"}
    assert zoo.matching("metrics.val-loss = 2") == {"beta"}
    assert zoo.matching("metrics.`val-loss` = 2") == {"beta"}
    assert zoo.matching("metrics.a.b = 1") == {"alpha"}
    assert zoo.matching("metrics.`a.b` = 1") == {"alpha"}
    assert zoo.matching('metrics."a.b" = 1') == {"alpha"}
    assert zoo.matching("metrics.a = 1") == set()  # the key is "a.b", not "a"


def test_nan_never_matches_a_comparison(runs: Runs) -> None:
    runs.add("nan", 1, metrics={"m": math.nan})
    runs.add("zero", 2, metrics={"m": 0.0})  # NaN is stored as 0 with a flag: not confused
    for op in ("=", "!=", "<", "<=", ">", ">="):
        for value in ("0", "1", "-1", "1.7976931348623157e308"):
            found = runs.matching(f"metrics.m {op} {value}")
            assert "nan" not in found, (op, value)
    assert runs.matching("metrics.m = 0") == {"zero"}
    assert runs.matching("metrics.m != 1") == {"zero"}


def test_infinities_are_stored_as_the_largest_finite_doubles(runs: Runs) -> None:
    pos = runs.add("pos", 1, metrics={"m": math.inf})
    neg = runs.add("neg", 2, metrics={"m": -math.inf})
    runs.add("big", 3, metrics={"m": 1e300})
    assert pos.metrics["m"] == MAX_FLOAT
    assert neg.metrics["m"] == -MAX_FLOAT
    assert runs.matching("metrics.m > 1e300") == {"pos"}
    assert runs.matching("metrics.m >= 1.7976931348623157e308") == {"pos"}
    assert runs.matching("metrics.m = 1.7976931348623157e308") == {"pos"}
    assert runs.matching("metrics.m = -1.7976931348623157e308") == {"neg"}
    assert runs.matching("metrics.m < -1e308") == {"neg"}
    assert runs.names(order_by=["metrics.m DESC"]) == ["pos", "big", "neg"]
    assert runs.names(order_by=["metrics.m"]) == ["neg", "big", "pos"]


# -- params and tags ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params.model = 'xgb'", {"alpha"}),
        ('params.model = "xgb"', {"alpha"}),
        ("params.model != 'xgb'", {"beta", "gamma", "epsilon"}),  # delta has no model
        ("params.model LIKE 'x%'", {"alpha"}),
        ("params.model LIKE 'X%'", {"gamma"}),
        ("params.model like '%G%'", {"gamma"}),
        ("params.model ILIKE 'x%'", {"alpha", "gamma"}),
        ("params.model ILIKE '%G%'", {"alpha", "beta", "gamma"}),
        ("params.model LIKE '_gb_'", {"beta"}),  # lgbm
        ("params.model LIKE '_gb'", {"alpha"}),
        ("params.model LIKE '%'", {"alpha", "beta", "gamma", "epsilon"}),
        ("params.model IS NULL", {"delta"}),
        ("params.model IS NOT NULL", {"alpha", "beta", "gamma", "epsilon"}),
        ("params.depth = '10'", {"beta"}),
        ("params.depth IS NULL", {"gamma", "delta", "epsilon"}),
        ("params.`a.b` = 'dotted'", {"alpha"}),
        ("params.a.b = 'dotted'", {"alpha"}),
        ("parameter.model = 'rf' and params.depth IS NULL", {"epsilon"}),
        ("params.nope IS NULL", {"alpha", "beta", "gamma", "delta", "epsilon"}),
        ("params.nope IS NOT NULL", set()),
    ],
)
def test_param_comparisons(zoo: Runs, text: str, expected: set[str]) -> None:
    assert zoo.matching(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tags.team = 'Risk'", {"alpha"}),
        ("tags.team = 'risk'", set()),
        ("tags.team != 'Risk'", {"beta", "gamma"}),
        ("tags.team LIKE 'risk%'", {"beta"}),
        ("tags.team LIKE 'Risk%'", {"alpha"}),
        ("tags.team ILIKE 'risk%'", {"alpha", "beta"}),
        ("tags.team ILIKE 'RISK'", {"alpha"}),
        ("tags.team IS NULL", {"delta", "epsilon"}),
        ("tags.team IS NOT NULL", {"alpha", "beta", "gamma"}),
        ("tags.`mlflow.user` = 'ann'", {"alpha"}),
        ("tags.mlflow.user = 'ann'", {"alpha"}),
        ("tags.\"with space\" = 'yes'", {"alpha"}),
        ("tags.`with space` IS NOT NULL", {"alpha"}),
        ("tag.team = 'growth' and params.model = 'XGB'", {"gamma"}),
    ],
)
def test_tag_comparisons(zoo: Runs, text: str, expected: set[str]) -> None:
    assert zoo.matching(text) == expected


def test_like_is_case_sensitive_and_ilike_is_not_on_every_backend(runs: Runs) -> None:
    runs.add("upper", 1, params={"p": "ABC"}, tags={"t": "ABC"})
    runs.add("lower", 2, params={"p": "abc"}, tags={"t": "abc"})
    assert runs.matching("params.p LIKE 'abc'") == {"lower"}
    assert runs.matching("tags.t LIKE 'abc'") == {"lower"}
    assert runs.matching("params.p LIKE 'a%'") == {"lower"}
    assert runs.matching("params.p LIKE 'A%'") == {"upper"}
    assert runs.matching("params.p ILIKE 'a%'") == {"upper", "lower"}
    assert runs.matching("params.p ILIKE 'aBc'") == {"upper", "lower"}
    assert runs.matching("params.p = 'abc'") == {"lower"}
    assert runs.matching("tags.t LIKE '%C'") == {"upper"}
    assert runs.matching("tags.t ILIKE '%C'") == {"upper", "lower"}
    assert runs.matching("run_name LIKE 'UP%'") == set()
    assert runs.matching("run_name ILIKE 'UP%'") == {"upper"}


def test_like_wildcards_escape_with_a_backslash_on_every_backend(runs: Runs) -> None:
    runs.add("underscore", 1, params={"p": "a_b"})
    runs.add("letter", 2, params={"p": "axb"})
    runs.add("percent", 3, params={"p": "50%"})
    runs.add("backslash", 4, params={"p": "a\\b"})
    assert runs.matching("params.p LIKE 'a_b'") == {"underscore", "letter", "backslash"}
    assert runs.matching("params.p LIKE 'a\\_b'") == {"underscore"}
    assert runs.matching("params.p ILIKE 'A\\_B'") == {"underscore"}
    assert runs.matching("params.p LIKE '%\\%'") == {"percent"}
    assert runs.matching("params.p LIKE '%0%'") == {"percent"}
    assert runs.matching("params.p LIKE 'a\\\\b'") == {"backslash"}
    with pytest.raises(InvalidInput, match="ends with the escape character"):
        runs.matching("params.p LIKE 'a\\'")


def test_values_with_quotes_and_unicode(runs: Runs) -> None:
    runs.add("quotes", 1, params={"p": 'it\'s "x"'}, tags={"t": "ünï"})
    assert runs.matching("params.p = 'it''s \"x\"'") == {"quotes"}
    assert runs.matching('params.p = "it\'s ""x"""') == {"quotes"}
    assert runs.matching("tags.t = 'ünï'") == {"quotes"}
    assert runs.matching("tags.t LIKE 'ü%'") == {"quotes"}


# -- attributes --------------------------------------------------------------------------------


def test_status_run_name_and_user_id(zoo: Runs) -> None:
    assert zoo.matching("attributes.status = 'FINISHED'") == {"alpha"}
    assert zoo.matching("status != 'RUNNING'") == {"alpha", "beta"}
    assert zoo.matching("status LIKE 'F%'") == {"alpha", "beta"}
    assert zoo.matching("attr.status ILIKE 'running'") == {"gamma", "delta", "epsilon"}
    assert zoo.matching("run_name = 'beta'") == {"beta"}
    assert zoo.matching("attributes.run_name LIKE '%ta'") == {"beta", "delta"}
    assert zoo.matching("`run name` = 'gamma'") == {"gamma"}
    assert zoo.matching("attributes.\"run name\" != 'gamma'") == {
        "alpha",
        "beta",
        "delta",
        "epsilon",
    }
    assert zoo.matching("user_id = 'ann'") == {"alpha", "gamma"}
    assert zoo.matching("run.user_id != 'ann' and user_id LIKE 'c%'") == {"delta", "epsilon"}


def test_start_time_end_time_and_created(zoo: Runs) -> None:
    assert zoo.matching(f"start_time > {T0 + 30}") == {"delta", "epsilon"}
    assert zoo.matching(f"attributes.start_time >= {T0 + 30}") == {"gamma", "delta", "epsilon"}
    assert zoo.matching(f"start_time = {T0 + 20}") == {"beta"}
    assert zoo.matching(f"start_time != {T0 + 20}") == {"alpha", "gamma", "delta", "epsilon"}
    assert zoo.matching(f"created < {T0 + 20}") == {"alpha"}
    assert zoo.matching(f"Created <= {T0 + 20}") == {"alpha", "beta"}
    assert zoo.matching("created > 1.7e12") == set(zoo.by_name)  # scientific notation
    # running runs have no end time: they match no comparison on it
    assert zoo.matching("end_time > 0") == {"alpha", "beta"}
    assert zoo.matching(f"end_time = {T0 + 120}") == {"beta"}
    assert zoo.matching(f"end_time != {T0 + 120}") == {"alpha"}
    assert zoo.matching(f"end_time <= {T0 + 110}") == {"alpha"}


def test_run_id_and_artifact_uri(zoo: Runs) -> None:
    a, b = zoo.by_name["alpha"], zoo.by_name["beta"]
    assert zoo.matching(f"run_id = '{a.id}'") == {"alpha"}
    assert zoo.matching(f"attributes.run_id != '{a.id}'") == set(zoo.by_name) - {"alpha"}
    assert zoo.matching(f"run_id IN ('{a.id}', '{b.id}')") == {"alpha", "beta"}
    assert zoo.matching(f"run_id in ('{a.id}', '{new_id()}')") == {"alpha"}
    assert zoo.matching(f"run_id NOT IN ('{a.id}', '{b.id}')") == {"gamma", "delta", "epsilon"}
    assert zoo.matching(f"run_id LIKE '{a.id[:-4]}%'") >= {"alpha"}
    uri = artifact_uri(a.experiment_id, a.id)
    assert zoo.matching(f"artifact_uri = '{uri}'") == {"alpha"}
    assert zoo.matching(f"attributes.artifact_uri LIKE '%{b.id}%'") == {"beta"}


# -- datasets ----------------------------------------------------------------------------------


@pytest.fixture
def with_inputs(runs: Runs) -> Runs:
    a = runs.add("a", 1)
    b = runs.add("b", 2)
    runs.add("none", 3)
    runs.t.log_inputs(
        a.id,
        [
            RunInput(name="train", digest="d1", context="training"),
            RunInput(name="holdout", digest="d2", context="eval"),
        ],
    )
    runs.t.log_inputs(b.id, [RunInput(name="train", digest="d3", context="training")])
    return runs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("datasets.name = 'train'", {"a", "b"}),
        ("datasets.name = 'holdout'", {"a"}),
        ("datasets.name != 'train'", {"a"}),  # a has another input; runs without inputs never
        ("datasets.name LIKE 'hold%'", {"a"}),
        ("datasets.name ILIKE 'TRAIN'", {"a", "b"}),
        ("datasets.digest = 'd3'", {"b"}),
        ("dataset.digest IN ('d1', 'd3')", {"a", "b"}),
        ("datasets.digest NOT IN ('d1', 'd2')", {"b"}),
        ("datasets.context = 'eval'", {"a"}),
        ("datasets.context IN ('eval')", {"a"}),
        ("datasets.context NOT IN ('eval')", {"a", "b"}),
        ("datasets.name IN ('nope')", set()),
        ("datasets.name = 'train' and datasets.context = 'eval'", {"a"}),  # two inputs of a
    ],
)
def test_dataset_fields(with_inputs: Runs, text: str, expected: set[str]) -> None:
    assert with_inputs.matching(text) == expected


# -- ordering ----------------------------------------------------------------------------------


def test_default_order_is_newest_first(zoo: Runs) -> None:
    assert zoo.names() == ["epsilon", "delta", "gamma", "beta", "alpha"]


def test_order_by_a_metric_with_nan_above_numbers_and_missing_last(zoo: Runs) -> None:
    # auc: alpha .91, beta .85, gamma .99, delta NaN, epsilon none
    assert zoo.names(order_by=["metrics.auc"]) == ["beta", "alpha", "gamma", "delta", "epsilon"]
    assert zoo.names(order_by=["metrics.auc ASC"]) == zoo.names(order_by=["metrics.auc"])
    assert zoo.names(order_by=["metrics.auc DESC"]) == [
        "delta",
        "gamma",
        "alpha",
        "beta",
        "epsilon",
    ]
    # loss: alpha .2, beta .35, gamma 1e-3, delta +inf, epsilon -inf
    assert zoo.names(order_by=["metrics.loss desc"]) == [
        "delta",
        "beta",
        "alpha",
        "gamma",
        "epsilon",
    ]


def test_order_by_params_and_tags_with_missing_last(zoo: Runs) -> None:
    # model: alpha xgb, beta lgbm, gamma XGB, epsilon rf, delta none (byte order: upper first)
    assert zoo.names(order_by=["params.model"]) == ["gamma", "beta", "epsilon", "alpha", "delta"]
    assert zoo.names(order_by=["params.model DESC"]) == [
        "alpha",
        "epsilon",
        "beta",
        "gamma",
        "delta",
    ]
    # depth is a string: "10" < "3"
    assert zoo.names(order_by=["params.depth"])[:2] == ["beta", "alpha"]
    # team: alpha Risk, beta risk-ops, gamma growth; delta and epsilon none (newest first)
    assert zoo.names(order_by=["tags.team"]) == ["alpha", "gamma", "beta", "epsilon", "delta"]
    assert zoo.names(order_by=["tags.team DESC"]) == ["beta", "gamma", "alpha", "epsilon", "delta"]
    assert zoo.names(order_by=["tags.`mlflow.user`"])[0] == "alpha"


def test_order_by_attributes(zoo: Runs) -> None:
    assert zoo.names(order_by=["start_time"]) == ["alpha", "beta", "gamma", "delta", "epsilon"]
    assert zoo.names(order_by=["attributes.start_time DESC"]) == zoo.names()
    assert zoo.names(order_by=["created ASC"]) == zoo.names(order_by=["start_time"])
    assert zoo.names(order_by=["run_name"]) == ["alpha", "beta", "delta", "epsilon", "gamma"]
    assert zoo.names(order_by=["`run name` DESC"]) == ["gamma", "epsilon", "delta", "beta", "alpha"]
    assert zoo.names(order_by=["status", "run_name"]) == [
        "beta",
        "alpha",
        "delta",
        "epsilon",
        "gamma",
    ]
    assert zoo.names(order_by=["user_id DESC", "start_time"]) == [
        "delta",
        "epsilon",
        "beta",
        "alpha",
        "gamma",
    ]
    ids = sorted(zoo.by_name.values(), key=lambda r: r.id)
    assert zoo.names(order_by=["run_id"]) == [r.name for r in ids]
    assert zoo.names(order_by=["artifact_uri DESC"]) == [r.name for r in reversed(ids)]


def test_order_by_end_time_puts_running_runs_last_both_ways(zoo: Runs) -> None:
    # alpha ended at +110, beta at +120; the running ones come last, newest first
    assert zoo.names(order_by=["end_time"]) == ["alpha", "beta", "epsilon", "delta", "gamma"]
    assert zoo.names(order_by=["end_time DESC"]) == ["beta", "alpha", "epsilon", "delta", "gamma"]


def test_several_order_keys(runs: Runs) -> None:
    runs.add("a1", 1, params={"g": "a"}, metrics={"m": 1.0})
    runs.add("a2", 2, params={"g": "a"}, metrics={"m": 2.0})
    runs.add("b1", 3, params={"g": "b"}, metrics={"m": 1.0})
    runs.add("b-", 4, params={"g": "b"})
    assert runs.names(order_by=["params.g", "metrics.m DESC"]) == ["a2", "a1", "b1", "b-"]
    assert runs.names(order_by=["params.g DESC", "metrics.m"]) == ["b1", "b-", "a1", "a2"]
    assert runs.names(order_by=["metrics.m", "params.g DESC"]) == ["b1", "a1", "a2", "b-"]


def test_ties_break_by_start_time_newest_first_then_id(runs: Runs) -> None:
    first = runs.add("first", 5, metrics={"m": 1.0})
    second = runs.add("second", 5, metrics={"m": 1.0})  # same start time, a larger id
    runs.add("older", 1, metrics={"m": 1.0})
    runs.add("newer", 9, metrics={"m": 1.0})
    assert second.id > first.id
    expected = ["newer", "second", "first", "older"]
    for order in (None, ["metrics.m"], ["metrics.m DESC"], ["status"], ["params.none"]):
        assert runs.names(order_by=order) == expected, order


def test_a_tie_of_more_than_5000_runs_on_the_ordering_metric_keeps_the_full_order(
    runs: Runs,
) -> None:
    ids = [new_id() for _ in range(6000)]
    ops: list[Operation] = []
    for n, run_id in enumerate(ids):
        ops.append(
            CreateRun(
                run_id=run_id, experiment_id=runs.experiment.id, name=f"r{n}", start_time=T0 + n
            )
        )
        ops.append(LogBatch(run_id=run_id, metrics=[MetricValue(key="m", value=1.0)]))
    runs.t.apply(ops)
    page = runs.t.search_runs([runs.experiment.id], order_by=["metrics.m"], max_results=1000)
    assert [r.id for r in page.items] == ids[::-1][:1000]


def test_bad_order_by_is_invalid(zoo: Runs) -> None:
    for bad in (["datasets.name"], ["metrics.auc sideways"], ["nope"]):
        with pytest.raises(InvalidInput):
            zoo.names(order_by=bad)


# -- paging, bounds, views, experiments --------------------------------------------------------


def test_pages_are_disjoint_and_complete(runs: Runs) -> None:
    for n in range(23):
        runs.add(f"r{n:02}", n % 7, metrics={"m": float(n % 5)})
    for order in (None, ["metrics.m DESC"], ["start_time"]):
        everything = runs.names(order_by=order)
        assert len(everything) == 23
        for size in (1, 5, 23, 24):
            seen: list[str] = []
            token: str | None = None
            pages = 0
            while True:
                page = runs.t.search_runs(
                    [runs.experiment.id], None, order, max_results=size, page_token=token
                )
                assert len(page.items) <= size
                seen += [r.name for r in page.items]
                pages += 1
                token = page.next_page_token
                if token is None:
                    break
            assert seen == everything, (order, size)
            assert pages == max(1, math.ceil(23 / size))


def test_a_page_that_ends_exactly_has_no_next_token(runs: Runs) -> None:
    for n in range(4):
        runs.add(f"r{n}", n)
    page = runs.t.search_runs([runs.experiment.id], max_results=2)
    assert page.next_page_token is not None
    page = runs.t.search_runs([runs.experiment.id], max_results=2, page_token=page.next_page_token)
    assert [r.name for r in page.items] == ["r1", "r0"]
    assert page.next_page_token is None


def test_invalid_page_token_and_max_results(runs: Runs) -> None:
    runs.add("r", 1)
    with pytest.raises(InvalidInput, match="invalid page token"):
        runs.t.search_runs(None, page_token="not-a-token")
    for bad in (0, -5, 50_001):
        with pytest.raises(InvalidInput, match="max_results"):
            runs.t.search_runs(None, max_results=bad)
    assert len(runs.t.search_runs(None, max_results=50_000).items) == 1
    assert len(runs.t.search_runs(None).items) == 1


def test_views_active_deleted_all(zoo: Runs) -> None:
    zoo.t.delete_run(zoo.by_name["beta"].id)
    zoo.t.delete_run(zoo.by_name["delta"].id)
    assert zoo.names() == ["epsilon", "gamma", "alpha"]
    assert zoo.names(view="active") == ["epsilon", "gamma", "alpha"]
    assert zoo.names(view="deleted") == ["delta", "beta"]
    assert zoo.names(view="all") == ["epsilon", "delta", "gamma", "beta", "alpha"]
    assert zoo.names("metrics.auc > 0.8", view="deleted") == ["beta"]
    zoo.t.restore_run(zoo.by_name["beta"].id)
    assert zoo.names(view="deleted") == ["delta"]
    with pytest.raises(InvalidInput, match="view must be active, deleted or all"):
        zoo.names(view="gone")


def test_experiment_ids_filter(ws: Workspace, runs: Runs) -> None:
    other = ws.tracking.create_experiment("other")
    runs.add("here", 1, metrics={"m": 1.0})
    runs.add("there", 2, metrics={"m": 1.0}, experiment_id=other.id)
    default = ws.tracking.create_run(name="default", start_time=T0 + 3)  # experiment "0"
    assert runs.names(experiment_ids=[runs.experiment.id]) == ["here"]
    assert runs.names(experiment_ids=[other.id]) == ["there"]
    assert runs.names(experiment_ids=[other.id, runs.experiment.id]) == ["there", "here"]
    assert runs.names(experiment_ids=["0"]) == ["default"]
    assert runs.names(experiment_ids=None) == ["default", "there", "here"]
    assert runs.names("metrics.m = 1", experiment_ids=None) == ["there", "here"]
    assert runs.names(experiment_ids=[]) == []
    assert default.experiment_id == "0"
    unknown = new_id()
    with pytest.raises(NotFound, match=f"experiment '{unknown}' does not exist"):
        runs.names(experiment_ids=[runs.experiment.id, unknown])


def test_a_malformed_filter_is_invalid_input(zoo: Runs) -> None:
    with pytest.raises(InvalidInput, match="OR is not supported"):
        zoo.names("metrics.auc > 1 or metrics.auc < 0")
    with pytest.raises(InvalidInput, match="unknown attribute 'bogus'"):
        zoo.names("bogus = 'x'")


# -- search_experiments ------------------------------------------------------------------------


@pytest.fixture
def experiments(ws: Workspace) -> dict[str, Any]:
    t = ws.tracking
    return {
        "fraud-a": t.create_experiment("fraud-a", {"team": "risk", "stage": "dev"}),
        "fraud-b": t.create_experiment("fraud-b", {"team": "Risk"}),
        "churn": t.create_experiment("churn", {"team": "growth"}),
        "Churn v2": t.create_experiment("Churn v2"),
    }


def _exp_names(ws: Workspace, filter_string: str | None = None, **kw: Any) -> list[str]:
    page = ws.tracking.search_experiments(filter_string=filter_string, **kw)
    return [e.name for e in page.items]


def test_search_experiments_by_name(ws: Workspace, experiments: dict[str, Any]) -> None:
    assert _exp_names(ws, "name = 'churn'") == ["churn"]
    assert _exp_names(ws, "attribute.name = 'churn'") == ["churn"]
    assert set(_exp_names(ws, "name != 'churn'")) == {"fraud-a", "fraud-b", "Churn v2", "Default"}
    assert set(_exp_names(ws, "name LIKE 'fraud%'")) == {"fraud-a", "fraud-b"}
    assert set(_exp_names(ws, "name LIKE '%hurn%'")) == {"churn", "Churn v2"}
    assert _exp_names(ws, "name LIKE 'c%'") == ["churn"]
    assert set(_exp_names(ws, "name ILIKE 'c%'")) == {"churn", "Churn v2"}
    assert _exp_names(ws, "name = 'Churn v2'") == ["Churn v2"]


def test_search_experiments_by_tag(ws: Workspace, experiments: dict[str, Any]) -> None:
    assert _exp_names(ws, "tags.team = 'risk'") == ["fraud-a"]
    assert set(_exp_names(ws, "tags.team ILIKE 'risk'")) == {"fraud-a", "fraud-b"}
    assert set(_exp_names(ws, "tags.team != 'growth'")) == {"fraud-a", "fraud-b"}
    assert _exp_names(ws, "tags.team LIKE 'g%' and name = 'churn'") == ["churn"]
    assert _exp_names(ws, "tags.`stage` = 'dev'") == ["fraud-a"]
    assert _exp_names(ws, "tags.team = 'risk' AND tags.stage = 'dev'") == ["fraud-a"]


def test_search_experiments_by_creation_time(ws: Workspace, experiments: dict[str, Any]) -> None:
    churn = experiments["churn"]
    ms = int(churn.created_at.timestamp() * 1000)
    assert "churn" in _exp_names(ws, f"creation_time >= {ms}")
    assert "churn" not in _exp_names(ws, f"creation_time > {ms}")
    assert "fraud-a" in _exp_names(ws, f"creation_time <= {ms}")
    assert _exp_names(ws, "creation_time < 1000") == []
    assert len(_exp_names(ws, "last_update_time > 0")) == 5  # with Default


def test_search_experiments_order_view_and_pages(
    ws: Workspace, experiments: dict[str, Any]
) -> None:
    assert _exp_names(ws, order_by=["name"]) == sorted(["Default", *experiments])
    assert _exp_names(ws, order_by=["name DESC"]) == sorted(["Default", *experiments])[::-1]
    # newest first, and the id (time-ordered) breaks a tie of the same millisecond
    newest_first = _exp_names(ws)
    assert newest_first[:4] == ["Churn v2", "churn", "fraud-b", "fraud-a"]
    for order, descending in (
        (["creation_time ASC"], False),
        (["attributes.creation_time DESC"], True),
        (["last_update_time"], False),
    ):
        page = ws.tracking.search_experiments(order_by=order)
        times = [e.created_at for e in page.items]
        assert times == sorted(times, reverse=descending), order
    ws.tracking.delete_experiment(experiments["churn"].id)
    assert "churn" not in _exp_names(ws)
    assert _exp_names(ws, view="deleted") == ["churn"]
    assert len(_exp_names(ws, view="all")) == 5
    seen: list[str] = []
    token = None
    while True:
        page = ws.tracking.search_experiments(
            view="all", order_by=["name"], max_results=2, page_token=token
        )
        seen += [e.name for e in page.items]
        token = page.next_page_token
        if token is None:
            break
    assert seen == sorted(["Default", *experiments])


def test_experiment_pages_are_complete_when_the_order_key_ties(
    ws: Workspace, backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mloop.tracking.runs as store

    monkeypatch.setattr(store, "now_ms", lambda: T0)  # forty experiments, one millisecond
    for n in range(40):
        ws.tracking.create_experiment(f"e{n:02}")
    for order in (["creation_time"], ["creation_time DESC"], ["last_update_time DESC"]):
        seen: list[str] = []
        token = None
        while True:
            page = ws.tracking.search_experiments(order_by=order, max_results=3, page_token=token)
            seen += [e.name for e in page.items]
            token = page.next_page_token
            if token is None:
                break
        assert sorted(seen) == sorted(["Default", *(f"e{n:02}" for n in range(40))]), order


@pytest.mark.parametrize(
    "bad",
    [
        "name = 5",
        "name ~ 'x'",
        "name foo 'x'",
        "creation_time LIKE 5",
        "creation_time > 'x'",
        "tags.team IN ('a')",
        "owner = 'x'",
        "name = 'a' or name = 'b'",
        "name",
    ],
)
def test_search_experiments_refuses_bad_filters(
    ws: Workspace, experiments: dict[str, Any], bad: str
) -> None:
    with pytest.raises(InvalidInput):
        _exp_names(ws, bad)


def test_search_experiments_refuses_bad_order_by(ws: Workspace) -> None:
    for bad in (["owner"], ["name sideways"], ["name DESC extra"]):
        with pytest.raises(InvalidInput, match="invalid order_by"):
            _exp_names(ws, order_by=bad)


# -- the property: search_runs agrees with a plain-Python reference ----------------------------

METRIC_KEYS = ("m", "val loss")
PARAM_KEYS = ("p", "a.b")
TAG_KEYS = ("t", "team-x")
METRIC_VALUES = (-1.5, 0.0, 0.5, 2.0, 1e10, math.nan, math.nan, math.inf, -math.inf)
THRESHOLDS = (-2.0, -1.5, 0.0, 0.25, 0.5, 2.0, 1e10, 1.7976931348623157e308)
STRINGS = ("a", "b", "A", "ab", "a_b", "axb", "a%", "")
PATTERNS = ("a%", "%b", "_", "a_b", "A%", "a\\_b", "%\\%", "%a%", "")
NAMES = ("r1", "r2", "ab", "Ab", "a_b")
STATUSES = ("RUNNING", "FINISHED", "FAILED")


@dataclass
class Spec:
    name: str
    start: int
    status: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    deleted: bool = False
    id: str = ""

    @property
    def end(self) -> int | None:
        return None if self.status == "RUNNING" else T0 + self.start + 50


def stored(value: float) -> float:
    if math.isinf(value):
        return MAX_FLOAT if value > 0 else -MAX_FLOAT
    return value


def like(pattern: str, value: str) -> bool:
    """SQL LIKE in Python: % and _ are wildcards, a backslash escapes the next character."""
    regex = ""
    chars = iter(pattern)
    for c in chars:
        if c == "\\":
            regex += re.escape(next(chars))
        elif c == "%":
            regex += ".*"
        elif c == "_":
            regex += "."
        else:
            regex += re.escape(c)
    return re.fullmatch(regex, value, re.S) is not None


NUMERIC: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def string_matches(op: str, value: str, operand: str) -> bool:
    if op == "=":
        return value == operand
    if op == "!=":
        return value != operand
    if op == "LIKE":
        return like(operand, value)
    return like(operand.lower(), value.lower())  # ILIKE


def quote_key(key: str, style: int) -> str:
    """The key bare (0), in backticks (1) or in double quotes (2); a space needs quotes."""
    if style == 0 and " " in key:
        style = 1
    return (key, f"`{key}`", f'"{key}"')[style]


Predicate = Callable[[Spec], bool]


@st.composite
def clauses(draw: st.DrawFn) -> tuple[str, Predicate]:
    kinds = [
        "metric",
        "metric",
        "param",
        "param",
        "tag",
        "tag",
        "status",
        "name",
        "start",
        "run_id",
    ]
    kind = draw(st.sampled_from(kinds))
    style = draw(st.integers(0, 2))
    if kind == "metric":
        key = draw(st.sampled_from(METRIC_KEYS))
        op = draw(st.sampled_from(sorted(NUMERIC)))
        x = draw(st.sampled_from(THRESHOLDS))
        text = f"{draw(st.sampled_from(['metrics', 'metric']))}.{quote_key(key, style)} {op} {x!r}"

        def metric(s: Spec) -> bool:
            v = s.metrics.get(key)
            return v is not None and not math.isnan(v) and NUMERIC[op](stored(v), x)

        return text, metric
    if kind in ("param", "tag"):
        key = draw(st.sampled_from(PARAM_KEYS if kind == "param" else TAG_KEYS))
        prefix = draw(st.sampled_from(["params", "param"] if kind == "param" else ["tags", "tag"]))
        op = draw(st.sampled_from(["=", "!=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL"]))
        ident = f"{prefix}.{quote_key(key, style)}"

        def values(s: Spec) -> dict[str, str]:
            return s.params if kind == "param" else s.tags

        if op in ("IS NULL", "IS NOT NULL"):
            return f"{ident} {op}", lambda s: (key in values(s)) == (op == "IS NOT NULL")
        operand = draw(st.sampled_from(PATTERNS if "LIKE" in op else STRINGS))
        text = f"{ident} {draw(st.sampled_from([op, op.lower()]))} '{operand}'"
        return text, lambda s: key in values(s) and string_matches(op, values(s)[key], operand)
    if kind in ("status", "name"):
        op = draw(st.sampled_from(["=", "!=", "LIKE", "ILIKE"]))
        if kind == "status":
            ident = draw(st.sampled_from(["status", "attributes.status", "attr.status"]))
            operand = draw(st.sampled_from([*STATUSES, "F%", "%ing", "running"]))
            return f"{ident} {op} '{operand}'", lambda s: string_matches(op, s.status, operand)
        ident = draw(st.sampled_from(["run_name", "attributes.run_name", "`run name`"]))
        operand = draw(st.sampled_from([*NAMES, *PATTERNS]))
        return f"{ident} {op} '{operand}'", lambda s: string_matches(op, s.name, operand)
    if kind == "start":
        op = draw(st.sampled_from(sorted(NUMERIC)))
        ident = draw(st.sampled_from(["start_time", "created", "attributes.start_time"]))
        x = T0 + draw(st.integers(0, 4))
        return f"{ident} {op} {x}", lambda s: NUMERIC[op](T0 + s.start, x)
    # run_id IN / NOT IN: the ids are only known later, so pick positions
    op = draw(st.sampled_from(["IN", "NOT IN"]))
    picks = draw(st.lists(st.integers(0, 7), min_size=1, max_size=3))
    return f"run_id {op} {picks}", lambda s: True  # resolved in the test


def order_keys() -> st.SearchStrategy[list[str]]:
    key = st.one_of(
        st.sampled_from([f"metrics.`{k}`" for k in METRIC_KEYS]),
        st.sampled_from([f"params.`{k}`" for k in PARAM_KEYS]),
        st.sampled_from([f"tags.`{k}`" for k in TAG_KEYS]),
        st.sampled_from(["start_time", "run_name", "status", "end_time", "end_time"]),
    )
    direction = st.sampled_from(["", " ASC", " DESC", " desc"])
    return st.lists(st.tuples(key, direction).map("".join), max_size=2)


def sort_value(spec: Spec, kind: str, key: str) -> tuple[int, Any]:
    """(group, value): group orders present < NaN < missing (numbers ascending)."""
    if kind == "metric":
        v = spec.metrics.get(key)
        if v is None:
            return 2, 0.0
        return (1, 0.0) if math.isnan(v) else (0, stored(v))
    if kind in ("param", "tag"):
        found = (spec.params if kind == "param" else spec.tags).get(key)
        return (2, "") if found is None else (0, found)
    if key == "end_time":
        return (2, 0) if spec.end is None else (0, spec.end)
    return 0, {"start_time": spec.start, "run_name": spec.name, "status": spec.status}[key]


def reference_order(specs: list[Spec], order_by: list[str]) -> list[Spec]:
    """A Python sort by ``order_by`` (read by the parser, which test_search.py checks), then
    start time newest first, then id."""
    order = [(o.ident.kind, o.ident.key, not o.ascending) for o in parse_order_by(order_by)]

    def compare(a: Spec, b: Spec) -> int:
        for kind, key, descending in order:
            (ga, va), (gb, vb) = sort_value(a, kind, key), sort_value(b, kind, key)
            if descending and ga < 2 and gb < 2:
                ga, gb = 1 - ga, 1 - gb  # NaN before numbers, missing still last
            if ga != gb:
                return -1 if ga < gb else 1
            if va != vb:
                return (-1 if va < vb else 1) * (-1 if descending else 1)
        if a.start != b.start:
            return -1 if a.start > b.start else 1
        return -1 if a.id > b.id else 1

    return sorted(specs, key=functools.cmp_to_key(compare))


run_specs = st.lists(
    st.builds(
        Spec,
        name=st.sampled_from(NAMES),
        start=st.integers(0, 4),
        status=st.sampled_from(STATUSES),
        params=st.dictionaries(st.sampled_from(PARAM_KEYS), st.sampled_from(STRINGS), max_size=2),
        metrics=st.dictionaries(
            st.sampled_from(METRIC_KEYS), st.sampled_from(METRIC_VALUES), max_size=2
        ),
        tags=st.dictionaries(st.sampled_from(TAG_KEYS), st.sampled_from(STRINGS), max_size=2),
        deleted=st.sampled_from([False, False, False, True]),
    ),
    min_size=3,
    max_size=12,
)


def _create(t: TrackingService, experiment_id: str, specs: list[Spec]) -> None:
    ops: list[Operation] = []
    for spec in specs:
        spec.id = new_id()
        ops.append(
            CreateRun(
                run_id=spec.id,
                experiment_id=experiment_id,
                name=spec.name,
                start_time=T0 + spec.start,
                tags=spec.tags,
            )
        )
        ops.append(
            LogBatch(
                run_id=spec.id,
                params=spec.params,
                metrics=[
                    MetricValue(key=k, value=v, timestamp=T0) for k, v in spec.metrics.items()
                ],
            )
        )
        if spec.end is not None:
            ops.append(UpdateRun(run_id=spec.id, status=spec.status, end_time=spec.end))  # type: ignore[arg-type]
    t.apply(ops)
    for spec in specs:
        if spec.deleted:
            t.delete_run(spec.id)


Query = tuple[list[tuple[str, Predicate]], list[str], str, int]

queries = st.lists(
    st.tuples(
        st.lists(clauses(), max_size=2),
        order_keys(),
        st.sampled_from(["active", "active", "deleted", "all"]),
        st.integers(1, 9),
    ),
    min_size=1,
    max_size=8,
)


def _resolve(specs: list[Spec], text: str, predicate: Predicate) -> tuple[str, Predicate]:
    """Put real ids into a ``run_id IN`` clause now that the runs exist."""
    if not text.startswith("run_id "):
        return text, predicate
    op, positions = text[len("run_id ") :].split(" [")
    picked = {specs[int(i) % len(specs)].id for i in positions[:-1].split(",")}
    text = f"run_id {op} (" + ", ".join(f"'{i}'" for i in sorted(picked)) + ")"
    negate = op != "IN"
    return text, lambda s: (s.id in picked) != negate


def _all_pages(
    t: TrackingService, experiment_id: str, query: tuple[str | None, list[str], str, int]
) -> list[str]:
    filter_string, order_by, view, page_size = query
    got: list[str] = []
    token: str | None = None
    for _ in range(50):
        page = t.search_runs([experiment_id], filter_string, order_by, page_size, token, view=view)
        assert len(page.items) <= page_size
        got += [run.id for run in page.items]
        token = page.next_page_token
        if token is None:
            return got
    raise AssertionError("the pages never end")


def test_search_runs_agrees_with_a_python_reference(ws: Workspace, backend: str) -> None:
    """Random runs (few keys, small value sets, some missing, NaN, ±inf, deleted), random
    filters, orders, views and page sizes: search_runs, read page by page, returns exactly the
    runs a plain-Python evaluation selects, in the order a Python sort gives."""
    t = ws.tracking

    @settings(
        max_examples=80 if backend == "sqlite" else 25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(specs=run_specs, queries=queries)
    def check(specs: list[Spec], queries: list[Query]) -> None:
        experiment = t.create_experiment(f"prop-{uuid.uuid4().hex}")
        _create(t, experiment.id, specs)
        names = {s.id: s for s in specs}
        for filters, order_by, view, page_size in queries:
            resolved = [_resolve(specs, text, predicate) for text, predicate in filters]
            filter_string = " and ".join(text for text, _ in resolved) or None
            visible = {
                "active": lambda s: not s.deleted,
                "deleted": lambda s: s.deleted,
                "all": lambda s: True,
            }[view]
            selected = [s for s in specs if visible(s) and all(p(s) for _, p in resolved)]
            expected = [s.id for s in reference_order(selected, order_by)]
            got = _all_pages(t, experiment.id, (filter_string, order_by, view, page_size))
            assert got == expected, (
                filter_string,
                order_by,
                view,
                [names[i] for i in got],
                [names[i] for i in expected],
            )

    check()


@pytest.mark.parametrize(
    "order_by",
    [["metrics.m"], ["metrics.m DESC"], ["metrics.m DESC", "params.p"], ["metrics.m", "run_name"]],
)
def test_ordering_by_a_metric_across_index_chunks(ws: Workspace, order_by: list[str]) -> None:
    """A metric-first order walks the metric's index a chunk (500+ entries) at a time: pages
    across chunk boundaries, long ties, NaN, missing values and runs of other experiments that
    the walk passes over must still give the reference order."""
    t = ws.tracking
    mine = t.create_experiment("mine")
    other = t.create_experiment("other")
    values = (0.0, 1.0, 1.0, 2.0, math.nan, -1.0, 3.0)
    specs = [
        Spec(
            name=f"r{n % 13}",
            start=n % 5,
            status="RUNNING",
            params={"p": "ab"[n % 2]},
            metrics={} if n % 11 == 0 else {"m": values[n % len(values)]},
            deleted=n % 17 == 0,
        )
        for n in range(1300)
    ]
    noise = [Spec(name="x", start=0, status="RUNNING", metrics={"m": 1.0}) for _ in range(700)]
    _create(t, mine.id, specs)
    _create(t, other.id, noise)
    selected = [s for s in specs if not s.deleted and s.params["p"] == "a"]
    expected = [s.id for s in reference_order(selected, order_by)]
    got = _all_pages(t, mine.id, ("params.p = 'a'", order_by, "active", 97))
    assert got == expected
