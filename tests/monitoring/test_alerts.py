"""Alert rules: the state machine on an injected clock (pending, firing, cooldown, resolve),
notifications to the log and to a real local webhook (and a failing one), subscribers,
history, bad input; Prometheus rules and the collector."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from alert_helpers import BASE, MODEL, log_rows, train
from helpers import drift_frame
from mloop.api import create_app
from mloop.core.errors import AlreadyExists, InvalidInput, NotFound
from mloop.monitoring import AlertEvent, AlertRule, SeriesPoint, SeriesService, prometheus_rules
from mloop.monitoring.series import SeriesQuery
from mloop.workspace import Workspace

MINUTE = timedelta(minutes=1)


class Knob:
    """A series whose value the test sets (None: no data)."""

    def __init__(self) -> None:
        self.value: float | None = 0.0

    def __call__(self, _service: SeriesService, q: SeriesQuery) -> list[SeriesPoint]:
        if self.value is None:
            return []
        return [SeriesPoint(q.until - q.width, q.until, self.value)]


@pytest.fixture
def knob(sqlite_ws: Workspace) -> Knob:
    k = Knob()
    sqlite_ws.series.register("knob", k)
    return k


def _rule(**overrides: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "name": "hot",
        "model": MODEL,
        "series": "knob",
        "op": ">",
        "threshold": 1.0,
        "window": "5m",
        "for": "10m",
        "cooldown": "1h",
    }
    rule.update(overrides)
    return rule


def _kinds(events: list[AlertEvent]) -> list[str]:
    return [e.kind for e in events]


def test_pending_then_firing_cooldown_and_resolve(sqlite_ws: Workspace, knob: Knob) -> None:
    alerts = sqlite_ws.alerts
    alerts.add(_rule())
    fired: list[AlertEvent] = []
    alerts.subscribe(fired.append)
    t = BASE
    assert alerts.evaluate(t) == []  # 0 > 1 is false: still ok
    knob.value = 5.0
    assert _kinds(alerts.evaluate(t + MINUTE)) == ["pending"]
    assert alerts.get("hot").state == "pending"
    assert alerts.evaluate(t + 5 * MINUTE) == []  # held 4 of 10 minutes
    events = alerts.evaluate(t + 11 * MINUTE)  # held 10 minutes
    assert _kinds(events) == ["firing", "notified"]
    assert events[0].value == 5.0
    assert events[0].detail["model"] == MODEL
    assert [e.kind for e in fired] == ["firing"]
    state = alerts.get("hot")
    assert (state.state, state.last_value, state.state_since) == ("firing", 5.0, t + 11 * MINUTE)
    assert alerts.evaluate(t + 30 * MINUTE) == []  # inside the cooldown: told once
    assert _kinds(alerts.evaluate(t + 71 * MINUTE)) == ["notified"]  # an hour later: again
    assert len(fired) == 1  # subscribers hear of the start of firing only
    knob.value = 0.5
    assert _kinds(alerts.evaluate(t + 72 * MINUTE)) == ["resolved", "notified"]
    assert alerts.get("hot").state == "ok"
    # pending that clears before the for-duration goes back to ok
    knob.value = 2.0
    assert _kinds(alerts.evaluate(t + 80 * MINUTE)) == ["pending"]
    knob.value = None  # no data: the condition does not hold
    assert _kinds(alerts.evaluate(t + 81 * MINUTE)) == ["ok"]
    history = alerts.history("hot")
    assert _kinds(history)[:3] == ["ok", "pending", "notified"]  # newest first
    assert len(history) == 8
    assert _kinds(alerts.history("hot", since=t + 72 * MINUTE)) == [
        "ok",
        "pending",
        "notified",
        "resolved",
    ]
    assert len(alerts.history(limit=2)) == 2


def test_a_flap_inside_the_cooldown_is_not_told_twice(sqlite_ws: Workspace, knob: Knob) -> None:
    alerts = sqlite_ws.alerts
    alerts.add(_rule(**{"for": "0", "cooldown": "30m"}))
    knob.value = 3.0
    assert _kinds(alerts.evaluate(BASE)) == ["firing", "notified"]  # for 0: at once
    knob.value = 0.0
    assert _kinds(alerts.evaluate(BASE + MINUTE)) == ["resolved", "notified"]
    knob.value = 3.0
    assert _kinds(alerts.evaluate(BASE + 2 * MINUTE)) == ["firing"]  # not told again
    assert _kinds(alerts.evaluate(BASE + 31 * MINUTE)) == ["notified"]


def test_the_log_destination(
    sqlite_ws: Workspace, knob: Knob, caplog: pytest.LogCaptureFixture
) -> None:
    sqlite_ws.alerts.add(_rule(**{"for": "0s", "severity": "critical"}))
    knob.value = 9.0
    with caplog.at_level(logging.INFO, logger="mloop.alerts"):
        sqlite_ws.alerts.evaluate(BASE)
    records = [r for r in caplog.records if r.name == "mloop.alerts"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR  # critical
    assert "hot firing: knob of scorer is 9" in records[0].getMessage()


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]
    status: int

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.server.received.append(json.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.received = []  # type: ignore[attr-defined]
    server.status = 200  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_webhook_gets_the_alert_as_json(sqlite_ws: Workspace, knob: Knob, webhook: Any) -> None:
    url = f"http://127.0.0.1:{webhook.server_address[1]}/alerts"
    sqlite_ws.alerts.add(_rule(**{"for": "0s", "destinations": ["log", f"webhook:{url}"]}))
    knob.value = 4.0
    events = sqlite_ws.alerts.evaluate(BASE)
    assert _kinds(events) == ["firing", "notified", "notified"]
    assert events[2].detail["destination"] == f"webhook:{url}"
    [body] = webhook.received
    assert body["rule"] == "hot"
    assert body["status"] == "firing"
    assert body["value"] == 4.0
    assert (body["model"], body["series"], body["op"], body["threshold"]) == (
        MODEL,
        "knob",
        ">",
        1.0,
    )
    knob.value = 0.0
    sqlite_ws.alerts.evaluate(BASE + MINUTE)
    assert [b["status"] for b in webhook.received] == ["firing", "resolved"]


def test_a_failing_webhook_is_an_event(sqlite_ws: Workspace, knob: Knob, webhook: Any) -> None:
    webhook.status = 500
    url = f"http://127.0.0.1:{webhook.server_address[1]}/"
    closed = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    gone = f"http://127.0.0.1:{closed.server_address[1]}/"
    closed.server_close()  # nobody listens there now
    sqlite_ws.alerts.add(
        _rule(**{"for": "0s", "destinations": [f"webhook:{url}", f"webhook:{gone}"]})
    )
    knob.value = 4.0
    events = sqlite_ws.alerts.evaluate(BASE)  # does not raise
    assert _kinds(events) == ["firing", "notify_failed", "notify_failed"]
    assert "HTTP 500" in events[1].message
    assert events[2].detail["error"]
    assert len(webhook.received) == 1
    assert sqlite_ws.alerts.get("hot").state == "firing"


def test_a_series_that_fails_is_an_error_event_once(sqlite_ws: Workspace) -> None:
    def broken(_service: SeriesService, _q: SeriesQuery) -> list[SeriesPoint]:
        raise InvalidInput("the labels are not in yet")

    sqlite_ws.series.register("broken", broken)
    sqlite_ws.alerts.add(_rule(series="broken"))
    sqlite_ws.alerts.add(_rule(name="unregistered", series="volume", model="ghost"))
    first = sqlite_ws.alerts.evaluate(BASE)
    assert _kinds(first) == ["error", "error"]
    assert "the labels are not in yet" in first[0].message
    assert "ghost" in first[1].message
    assert sqlite_ws.alerts.evaluate(BASE + MINUTE) == []  # the same error is not repeated
    assert sqlite_ws.alerts.get("hot").state == "ok"


def test_subscribers_can_unsubscribe_and_may_fail(sqlite_ws: Workspace, knob: Knob) -> None:
    heard: list[str] = []

    def bad(_event: AlertEvent) -> None:
        raise RuntimeError("the loop controller is down")

    sqlite_ws.alerts.subscribe(bad)
    stop = sqlite_ws.alerts.subscribe(lambda e: heard.append(e.rule))
    sqlite_ws.alerts.add(_rule(**{"for": "0s"}))
    knob.value = 2.0
    assert _kinds(sqlite_ws.alerts.evaluate(BASE))[0] == "firing"
    assert heard == ["hot"]
    stop()
    knob.value = 0.0
    sqlite_ws.alerts.evaluate(BASE + MINUTE)
    knob.value = 2.0
    sqlite_ws.alerts.evaluate(BASE + 2 * MINUTE)
    assert heard == ["hot"]


def test_rules_are_managed_and_audited(ws: Workspace) -> None:
    alerts = ws.alerts
    created = alerts.add(_rule(series="latency_p99", threshold=250))
    assert created.for_ == "10m"
    assert created.destinations == ["log"]
    assert created.state == "ok"
    assert [a.name for a in alerts.list()] == ["hot"]
    changed = alerts.update("hot", threshold=300, for_="5m")
    assert (changed.threshold, changed.for_, changed.series) == (300, "5m", "latency_p99")
    assert alerts.enable("hot", False).enabled is False
    assert alerts.evaluate(BASE) == []  # disabled rules are not evaluated
    assert alerts.enable("hot").enabled is True
    alerts.delete("hot")
    assert alerts.list() == []
    actions = [r.action for r in ws.audit.list(object_type="alert_rule")]
    assert sorted(actions) == sorted(
        ["alert.create", "alert.update", "alert.disable", "alert.enable", "alert.delete"]
    )


def test_disabling_a_firing_rule_puts_it_back_to_ok(sqlite_ws: Workspace, knob: Knob) -> None:
    sqlite_ws.alerts.add(_rule(**{"for": "0s"}))
    knob.value = 2.0
    sqlite_ws.alerts.evaluate(BASE)
    assert sqlite_ws.alerts.enable("hot", False).state == "ok"
    assert sqlite_ws.alerts.history("hot", limit=1)[0].kind == "disabled"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"series": "latency_p95"}, "unknown series 'latency_p95'"),
        ({"series": "drift"}, "series 'drift' needs a column"),
        ({"op": "=="}, "op must be one of >, >=, <, <=, got '=='"),
        ({"for": "-5m"}, "for '-5m' is not a duration of 0 or more"),
        ({"cooldown": "soon"}, "cooldown 'soon' is not a duration"),
        ({"window": "0"}, "window '0' is not a duration of more than 0"),
        ({"destinations": ["email:me"]}, "destination 'email:me' is not 'log' or 'webhook"),
        ({"model": "bad name@"}, "model"),
        ({"name": "has space"}, "alert rule name 'has space' is not allowed"),
        ({"severity": "doom"}, "severity"),
        ({"threshold": float("nan")}, "threshold must be a finite number"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_rules_are_refused(sqlite_ws: Workspace, change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=r"invalid alert rule|unknown series|needs a") as info:
        sqlite_ws.alerts.add(_rule(**change))
    assert message in info.value.message


def test_duplicates_and_unknown_rules(sqlite_ws: Workspace, knob: Knob) -> None:
    sqlite_ws.alerts.add(_rule())
    with pytest.raises(AlreadyExists, match="'hot' exists already"):
        sqlite_ws.alerts.add(_rule())
    for call in (
        lambda: sqlite_ws.alerts.get("cold"),
        lambda: sqlite_ws.alerts.delete("cold"),
        lambda: sqlite_ws.alerts.enable("cold"),
        lambda: sqlite_ws.alerts.update("cold", threshold=2),
        lambda: sqlite_ws.alerts.history("cold"),
    ):
        with pytest.raises(NotFound, match="no alert rule named 'cold'"):
            call()
    with pytest.raises(InvalidInput, match="cannot be renamed"):
        sqlite_ws.alerts.update("hot", name="cold")
    with pytest.raises(InvalidInput, match="op must be"):
        sqlite_ws.alerts.update("hot", op="!")


def test_an_alert_on_the_real_latency_of_served_rows(sqlite_ws: Workspace) -> None:
    train(sqlite_ws)
    slow = [400.0] * 100
    log_rows(sqlite_ws, BASE, drift_frame(100, 2, labelled=False), latencies=[5.0] * 100)
    log_rows(sqlite_ws, BASE + 2 * MINUTE, drift_frame(100, 3, labelled=False), latencies=slow)
    alerts = sqlite_ws.alerts
    alerts.add(_rule(series="latency_p99", threshold=250, window="1m", **{"for": "0s"}))
    alerts.add(_rule(name="quiet", series="volume", op="<", threshold=1, window="1m"))
    assert alerts.evaluate(BASE + MINUTE) == []  # p99 5 ms, 100 rows
    events = alerts.evaluate(BASE + 2 * MINUTE + 30 * timedelta(seconds=1))
    assert [(e.rule, e.kind) for e in events] == [("hot", "firing"), ("hot", "notified")]
    assert events[0].value == pytest.approx(400.0)
    # the minute after: no traffic, so no latency (resolved), and a volume of 0 (pending)
    later = alerts.evaluate(BASE + 4 * MINUTE)
    assert [(e.rule, e.kind) for e in later] == [
        ("hot", "resolved"),
        ("hot", "notified"),
        ("quiet", "pending"),
    ]
    assert later[2].value == 0


# -- Prometheus ---------------------------------------------------------------------------------


def _referenced(expr: str) -> set[str]:
    import re

    names = set(re.findall(r"\b(mloop_[a-z_]+)", expr))
    return {re.sub(r"_(bucket|total|count|sum)$", "", n) for n in names}


def test_prometheus_rules_parse_and_name_what_the_server_exports(
    sqlite_ws: Workspace, knob: Knob
) -> None:
    rules = [
        AlertRule.model_validate(_rule(name="slow", series="latency_p99", threshold=250)),
        AlertRule.model_validate(
            _rule(name="median", series="latency_p50", threshold=20, **{"for": "0s"})
        ),
        AlertRule.model_validate(_rule(name="failing", series="error_rate", threshold=0.05)),
        AlertRule.model_validate(
            _rule(name="drifting", series="drift_share", threshold=0.3, severity="critical")
        ),
        AlertRule.model_validate(_rule(name="unserved", series="error_rate", model="other")),
    ]
    text = prometheus_rules(rules, deployments={MODEL: ["web", "api"]})
    document = yaml.safe_load(text)
    [group] = document["groups"]
    by_name = {r["alert"]: r for r in group["rules"]}
    assert set(by_name) == {"slow", "median", "failing", "drifting", "unserved"}
    slow = by_name["slow"]
    assert slow["for"] == "10m"
    assert slow["labels"] == {"severity": "warning", "model": MODEL}
    assert slow["expr"].startswith("histogram_quantile(0.99, sum by (le) (rate(")
    assert 'mloop_deployment_latency_seconds_bucket{deployment=~"api|web"}[5m]' in slow["expr"]
    assert slow["expr"].endswith("* 1000 > 250")
    assert "for" not in by_name["median"]
    assert "mloop_deployment_errors_total" in by_name["failing"]["expr"]
    assert by_name["drifting"]["expr"] == 'mloop_alert_value{rule="drifting"} > 0.3'
    assert by_name["unserved"]["expr"] == 'mloop_alert_value{rule="unserved"} > 1'
    assert by_name["drifting"]["annotations"]["summary"] == "drift_share of scorer > 0.3"

    # every metric an expression names is one /metrics of `mloop serve` exports
    sqlite_ws.alerts.add(_rule(**{"for": "0s"}))
    knob.value = 3.0
    sqlite_ws.alerts.evaluate(BASE)
    with TestClient(create_app(sqlite_ws, log_predictions=False)) as client:
        exposition = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    for rule in group["rules"]:
        assert _referenced(rule["expr"]) <= set(families), rule["expr"]
    state = families["mloop_alert_state"].samples
    assert [(s.labels, s.value) for s in state] == [({"rule": "hot", "severity": "warning"}, 2.0)]
    value = families["mloop_alert_value"].samples
    assert [(s.labels, s.value) for s in value] == [({"rule": "hot"}, 3.0)]


def test_the_workspace_writes_rules_for_its_deployments(sqlite_ws: Workspace) -> None:
    train(sqlite_ws)
    sqlite_ws.deployments.create("web", {"variants": [{"name": "main", "model": MODEL}]})
    sqlite_ws.alerts.add(_rule(series="error_rate", threshold=0.01))
    sqlite_ws.alerts.add(_rule(name="off", series="volume", op="<", threshold=1))
    sqlite_ws.alerts.enable("off", False)
    [rule] = yaml.safe_load(sqlite_ws.alerts.prometheus_rules())["groups"][0]["rules"]
    assert rule["alert"] == "hot"
    assert 'mloop_deployment_errors_total{deployment="web"}' in rule["expr"]


@pytest.mark.postgres
def test_two_evaluators_at_once_fire_and_notify_once(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL runs the two evaluations' transactions side by side: the rule's row is
    # locked while one decides, so the other reads the state it left ("firing", notified)
    from mloop.monitoring.alerts import AlertService

    first = Workspace.open(tmp_path / "ws", database_url=pg_url)
    second = Workspace.open(tmp_path / "ws", database_url=pg_url)
    try:
        train(first)
        log_rows(first, BASE, drift_frame(50, 2, labelled=False))
        first.alerts.add(
            {"name": "busy", "model": MODEL, "series": "volume", "op": ">", "threshold": 0}
        )
        both_inside = threading.Barrier(2)
        original = AlertService._event

        def meet(conn: Any, *args: Any, **kwargs: Any) -> Any:
            with contextlib.suppress(threading.BrokenBarrierError):
                both_inside.wait(timeout=3)  # only one gets here while the row is locked
            return original(conn, *args, **kwargs)

        monkeypatch.setattr(AlertService, "_event", staticmethod(meet))
        at = BASE + timedelta(minutes=1)
        out: dict[int, list[str]] = {}

        def evaluate(i: int, ws: Workspace) -> None:
            out[i] = [e.kind for e in ws.alerts.evaluate(at)]

        threads = [
            threading.Thread(target=evaluate, args=(i, w)) for i, w in enumerate((first, second))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        kinds = sorted(kind for events in out.values() for kind in events)
        assert kinds == ["firing", "notified"]
        assert [e.kind for e in first.alerts.history("busy")].count("firing") == 1
    finally:
        first.close()
        second.close()
