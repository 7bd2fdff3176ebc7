"""Alert rules over monitored series: a condition, how long it must hold, whom to tell.

Each evaluation of an enabled rule reads its series' newest window (the ``window`` before the
moment of evaluation) and moves the rule through::

    ok ──condition true──▶ pending ──held for ``for``──▶ firing ──condition false──▶ ok
     ▲                        │                             (a "resolved" event)
     └───condition false──────┘

With ``for`` = 0 a rule fires at once. A firing rule notifies its destinations (``log``,
``webhook:URL``) when it starts firing and again after each ``cooldown`` while it keeps firing;
a flap inside the cooldown is not notified twice. A resolution is notified too. Every
transition and notification is an event in ``alert_events``; a window without data counts as
"condition false" (like Prometheus); a series that cannot be computed is an ``error`` event
and leaves the state as it was. A failed notification is an event, never an exception.
In-process subscribers (``subscribe``) hear of every rule that starts firing.
"""

from __future__ import annotations

import builtins
import logging
import math
import operator
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mloop.core.clock import from_ms, now, to_ms
from mloop.core.errors import AlreadyExists, InvalidInput, MloopError, NotFound
from mloop.core.ids import new_id
from mloop.data import check_name, parse_duration
from mloop.monitoring.series import SeriesService
from mloop.registry import parse_model_ref
from mloop.security import AuditLog
from mloop.storage import Database, tables

log = logging.getLogger("mloop.alerts")

Op = Literal[">", ">=", "<", "<="]
Severity = Literal["info", "warning", "critical"]
State = Literal["ok", "pending", "firing"]
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
STATE_CODES: dict[str, int] = {"ok": 0, "pending": 1, "firing": 2}
WEBHOOK_TIMEOUT = 5.0


def duration_seconds(text: str, what: str, *, allow_zero: bool = False) -> float:
    """Seconds in ``"90s"``, ``"5m"``, ``"1h"``, ``"1d 12h"``; ``"0"`` too when allowed."""
    raw = str(text).strip()
    if allow_zero and raw in ("0", "0s", "0m", "0h"):
        return 0.0
    try:
        return parse_duration(raw)
    except ValueError:
        least = "0 or more" if allow_zero else "more than 0"
        raise ValueError(
            f"{what} {text!r} is not a duration of {least}, such as 30s, 5m, 1h or 1d 12h"
        ) from None


class AlertRule(BaseModel):
    """A rule: ``series`` of ``model`` compared (``op``) with ``threshold`` over windows
    ``window`` wide; fires once true for ``for``; notifies at most once per ``cooldown``."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str
    model: str = Field(description="NAME, NAME@ALIAS or NAME@N")
    series: str = Field(description="latency_p99, error_rate, drift_share, drift:COLUMN, ...")
    op: Op
    threshold: float
    window: str = "5m"
    for_: str = Field(default="0s", alias="for")
    cooldown: str = "1h"
    destinations: list[str] = Field(default_factory=lambda: ["log"])
    severity: Severity = "warning"
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return check_name(value, "alert rule")
        except InvalidInput as exc:
            raise ValueError(exc.message) from None

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        try:
            parse_model_ref(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
        return value.strip()

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"threshold must be a finite number, got {value}")
        return value

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        if duration_seconds(value, "window") < 1:
            raise ValueError(f"window must be at least 1 second, got {value!r}")
        return value

    @field_validator("for_")
    @classmethod
    def _for(cls, value: str) -> str:
        duration_seconds(value, "for", allow_zero=True)
        return value

    @field_validator("cooldown")
    @classmethod
    def _cooldown(cls, value: str) -> str:
        duration_seconds(value, "cooldown", allow_zero=True)
        return value

    @field_validator("destinations")
    @classmethod
    def _destinations(cls, value: list[str]) -> list[str]:
        for dest in value:
            if dest == "log":
                continue
            kind, _, url = dest.partition(":")
            if kind != "webhook" or not url.startswith(("http://", "https://")):
                raise ValueError(f"destination {dest!r} is not 'log' or 'webhook:http(s)://...'")
        return list(dict.fromkeys(value))

    @property
    def window_delta(self) -> timedelta:
        return timedelta(seconds=duration_seconds(self.window, "window"))

    @property
    def for_delta(self) -> timedelta:
        return timedelta(seconds=duration_seconds(self.for_, "for", allow_zero=True))

    @property
    def cooldown_delta(self) -> timedelta:
        return timedelta(seconds=duration_seconds(self.cooldown, "cooldown", allow_zero=True))

    def condition(self) -> str:
        return f"{self.series} of {self.model} {self.op} {self.threshold:g}"


class Alert(AlertRule):
    """A stored rule and where it stands."""

    enabled: bool
    state: State
    state_since: datetime | None
    last_value: float | None
    last_notified_at: datetime | None
    last_evaluated_at: datetime | None
    created_at: datetime
    updated_at: datetime

    def rule(self) -> AlertRule:
        return AlertRule.model_validate(
            self.model_dump(by_alias=True, include=set(AlertRule.model_fields))
        )


EventKind = Literal[
    "pending", "firing", "resolved", "ok", "notified", "notify_failed", "error", "disabled"
]


class AlertEvent(BaseModel):
    """One transition or notification of a rule. ``detail`` holds the rule's model, series,
    op, threshold and severity (and, for notifications, the destination)."""

    model_config = ConfigDict(frozen=True)

    id: str
    rule: str
    ts: datetime
    kind: EventKind
    value: float | None
    message: str
    detail: dict[str, Any]


Subscriber = Callable[[AlertEvent], None]


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else to_ms(moment)


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else from_ms(int(ms))


def _validate(data: dict[str, Any]) -> AlertRule:
    try:
        return AlertRule.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "rule"
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "literal_error" and where == "op":
            message = f"op must be one of >, >=, <, <=, got {first.get('input')!r}"
        raise InvalidInput(f"invalid alert rule ({where}): {message}") from None


class AlertService:
    def __init__(
        self,
        db: Database,
        series: SeriesService,
        audit: AuditLog,
        *,
        deployments: Any = None,
        webhook_timeout: float = WEBHOOK_TIMEOUT,
    ) -> None:
        """``deployments``: the deployment service (its ``list()``), so that Prometheus rules
        on latency and errors read the metrics of the deployments serving the model."""
        self._db = db
        self.series = series
        self._audit = audit
        self._deployments = deployments
        self._webhook_timeout = webhook_timeout
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    # -- rules -------------------------------------------------------------------------------

    def add(self, rule: AlertRule | dict[str, Any]) -> Alert:
        """Store a new rule (AlreadyExists if one of that name exists)."""
        rule = self._check(rule.model_dump(by_alias=True) if isinstance(rule, AlertRule) else rule)
        t = tables.alert_rules
        stamp = to_ms(now())
        spec = rule.model_dump(by_alias=True, mode="json")
        with self._db.write() as conn:
            if conn.execute(sa.select(t.c.id).where(t.c.name == rule.name)).first():
                raise AlreadyExists(f"alert rule {rule.name!r} exists already")
            conn.execute(
                t.insert().values(
                    id=new_id(),
                    name=rule.name,
                    spec=spec,
                    enabled=True,
                    state="ok",
                    state_since=stamp,
                    created_at=stamp,
                    updated_at=stamp,
                )
            )
            self._audit.record(conn, "alert.create", "alert_rule", rule.name, spec)
        return self.get(rule.name)

    def update(self, name: str, /, **changes: Any) -> Alert:
        """Change some fields of a rule (``for_`` or ``for``); its state is kept."""
        current = self.get(name)
        data = current.rule().model_dump(by_alias=True)
        for key, value in changes.items():
            data["for" if key == "for_" else key] = value
        if data["name"] != name:
            raise InvalidInput("a rule cannot be renamed; delete it and add a new one")
        rule = self._check(data)
        spec = rule.model_dump(by_alias=True, mode="json")
        t = tables.alert_rules
        with self._db.write() as conn:
            conn.execute(
                t.update().where(t.c.name == name).values(spec=spec, updated_at=to_ms(now()))
            )
            self._audit.record(conn, "alert.update", "alert_rule", name, spec)
        return self.get(name)

    def _check(self, data: dict[str, Any]) -> AlertRule:
        rule = _validate(data)
        self.series.parse(rule.series)  # InvalidInput naming the known series
        return rule

    def get(self, name: str) -> Alert:
        t = tables.alert_rules
        with self._db.read() as conn:
            row = conn.execute(sa.select(t).where(t.c.name == name)).mappings().first()
        if row is None:
            raise NotFound(f"no alert rule named {name!r}")
        return _alert(row)

    def list(self) -> builtins.list[Alert]:
        t = tables.alert_rules
        with self._db.read() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.name)).mappings().all()
        return [_alert(r) for r in rows]

    def delete(self, name: str) -> None:
        """Remove a rule; its history stays."""
        t = tables.alert_rules
        with self._db.write() as conn:
            if conn.execute(t.delete().where(t.c.name == name)).rowcount == 0:
                raise NotFound(f"no alert rule named {name!r}")
            self._audit.record(conn, "alert.delete", "alert_rule", name, {})

    def enable(self, name: str, enabled: bool = True) -> Alert:
        """Enable or disable a rule; disabling one that is pending or firing puts it back to
        ok (a ``disabled`` event)."""
        t = tables.alert_rules
        stamp = to_ms(now())
        with self._db.write() as conn:
            row = conn.execute(sa.select(t).where(t.c.name == name)).mappings().first()
            if row is None:
                raise NotFound(f"no alert rule named {name!r}")
            values: dict[str, Any] = {"enabled": enabled, "updated_at": stamp}
            if not enabled and row["state"] != "ok":
                values.update(state="ok", state_since=stamp)
                self._event(
                    conn,
                    name,
                    stamp,
                    "disabled",
                    row["last_value"],
                    f"{name}: disabled while {row['state']}",
                    _detail(_alert(row)),
                )
            conn.execute(t.update().where(t.c.name == name).values(**values))
            action = "alert.enable" if enabled else "alert.disable"
            self._audit.record(conn, action, "alert_rule", name, {})
        return self.get(name)

    # -- subscribers -------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` in-process whenever a rule starts firing (after the event
        is stored). Returns a function that unsubscribes. A callback's exception is logged."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    # -- evaluation --------------------------------------------------------------------------

    def value(self, rule: AlertRule, at: datetime | None = None) -> float | None:
        """The rule's series over the ``window`` before ``at``: the newest window that
        overlaps it (None: no data)."""
        moment = at or now()
        width = rule.window_delta
        points = self.series.compute(
            rule.model, rule.series, width=width, until=moment, last=2, trailing=True
        )
        if points and points[-1].end > moment - width:
            return points[-1].value
        return None

    def evaluate(self, now: datetime | None = None) -> builtins.list[AlertEvent]:
        """One pass over every enabled rule at ``now`` (default: the clock): the events it
        caused, in order. Never raises for one rule's trouble: that is an ``error`` event."""
        moment = now or _clock()
        events: builtins.list[AlertEvent] = []
        for alert in self.list():
            if alert.enabled:
                events.extend(self._evaluate(alert, moment))
        return events

    def _evaluate(self, alert: Alert, moment: datetime) -> builtins.list[AlertEvent]:
        value: float | None = None
        error: str | None = None
        try:
            value = self.value(alert, moment)
        except MloopError as exc:
            error = exc.message
        except Exception as exc:  # a series plugin's bug must not stop the other rules
            log.exception("alert rule %s: its series failed", alert.name)
            error = f"{type(exc).__name__}: {exc}"
        stamp = to_ms(moment)
        t = tables.alert_rules
        events: builtins.list[AlertEvent] = []
        notify: str | None = None  # "firing" or "resolved"
        with self._db.write() as conn:
            # locked (PostgreSQL: FOR UPDATE; SQLite's write transaction is exclusive): a
            # second evaluator reads the state this one leaves, so it does not fire twice
            row = (
                conn.execute(sa.select(t).where(t.c.name == alert.name).with_for_update())
                .mappings()
                .first()
            )
            if row is None or not row["enabled"]:
                return []
            current = _alert(row)
            detail = _detail(current)
            if error is not None:
                e = tables.alert_events
                previous = conn.execute(
                    sa.select(e.c.kind, e.c.message)
                    .where(e.c.rule_name == alert.name)
                    .order_by(e.c.ts.desc(), e.c.id.desc())
                    .limit(1)
                ).first()
                message = f"{alert.name}: cannot compute {current.series}: {error}"
                if previous is None or (previous.kind, previous.message) != ("error", message):
                    events.append(
                        self._event(conn, alert.name, stamp, "error", None, message, detail)
                    )
                conn.execute(
                    t.update().where(t.c.name == alert.name).values(last_evaluated_at=stamp)
                )
            else:
                state, since = current.state, _ms(current.state_since)
                holds = value is not None and OPS[current.op](value, current.threshold)
                shown = "no data" if value is None else f"{value:.6g}"
                what = f"{current.series} of {current.model} is {shown}"
                values: dict[str, Any] = {"last_value": value, "last_evaluated_at": stamp}
                fire = False
                if holds and state == "ok":
                    if current.for_delta.total_seconds() == 0:
                        fire = True
                    else:
                        state, since = "pending", stamp
                        events.append(
                            self._event(
                                conn,
                                alert.name,
                                stamp,
                                "pending",
                                value,
                                f"{alert.name} pending: {what} ({current.op} "
                                f"{current.threshold:g}), firing after {current.for_}",
                                detail,
                            )
                        )
                elif holds and state == "pending":
                    held = stamp - (since if since is not None else stamp)
                    if held >= current.for_delta.total_seconds() * 1000:
                        fire = True
                elif not holds and state == "pending":
                    state, since = "ok", stamp
                    events.append(
                        self._event(
                            conn,
                            alert.name,
                            stamp,
                            "ok",
                            value,
                            f"{alert.name} ok: {what}, cleared before {current.for_}",
                            detail,
                        )
                    )
                elif not holds and state == "firing":
                    state, since = "ok", stamp
                    notify = "resolved"
                    events.append(
                        self._event(
                            conn,
                            alert.name,
                            stamp,
                            "resolved",
                            value,
                            f"{alert.name} resolved: {what}",
                            detail,
                        )
                    )
                if fire:
                    state, since = "firing", stamp
                    events.append(
                        self._event(
                            conn,
                            alert.name,
                            stamp,
                            "firing",
                            value,
                            f"{alert.name} firing: {what} ({current.op} {current.threshold:g})",
                            detail,
                        )
                    )
                if state == "firing":
                    last = _ms(current.last_notified_at)
                    cooldown = current.cooldown_delta.total_seconds() * 1000
                    if last is None or stamp - last >= cooldown:
                        notify = "firing"
                        values["last_notified_at"] = stamp  # claimed: a second evaluator waits
                values.update(state=state, state_since=since)
                conn.execute(t.update().where(t.c.name == alert.name).values(**values))
        if notify is not None:
            events.extend(self._notify(current, notify, value, moment))
        for event in events:
            if event.kind == "firing":
                self._tell_subscribers(event)
        return events

    @staticmethod
    def _event(
        conn: Any,
        rule: str,
        stamp: int,
        kind: str,
        value: float | None,
        message: str,
        detail: dict[str, Any],
    ) -> AlertEvent:
        event_id = new_id()
        conn.execute(
            tables.alert_events.insert().values(
                id=event_id,
                rule_name=rule,
                ts=stamp,
                kind=kind,
                value=value,
                message=message,
                detail=detail,
            )
        )
        return AlertEvent(
            id=event_id,
            rule=rule,
            ts=from_ms(stamp),
            kind=kind,
            value=value,
            message=message,
            detail=detail,
        )

    def _tell_subscribers(self, event: AlertEvent) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:
                log.exception("an alert subscriber failed on %s", event.rule)

    # -- notifications -----------------------------------------------------------------------

    def _notify(
        self, alert: Alert, status: str, value: float | None, moment: datetime
    ) -> builtins.list[AlertEvent]:
        payload = {
            "rule": alert.name,
            "status": status,
            "model": alert.model,
            "series": alert.series,
            "op": alert.op,
            "threshold": alert.threshold,
            "value": value,
            "window": alert.window,
            "severity": alert.severity,
            "description": alert.description,
            "at": moment.isoformat(),
            "message": (
                f"{alert.name} {status}: {alert.series} of {alert.model} is "
                f"{'no data' if value is None else f'{value:.6g}'} "
                f"(rule: {alert.op} {alert.threshold:g})"
            ),
        }
        outcomes: builtins.list[tuple[str, str | None]] = []
        for dest in alert.destinations:
            outcomes.append((dest, self._send(dest, payload, alert.severity, status)))
        stamp = to_ms(moment)
        detail = _detail(alert)
        events = []
        with self._db.write() as conn:
            for dest, failure in outcomes:
                shown = "log" if dest == "log" else dest.partition(":")[2]
                if failure is None:
                    events.append(
                        self._event(
                            conn,
                            alert.name,
                            stamp,
                            "notified",
                            value,
                            f"{alert.name} {status}: told {shown}",
                            {**detail, "destination": dest, "status": status},
                        )
                    )
                else:
                    events.append(
                        self._event(
                            conn,
                            alert.name,
                            stamp,
                            "notify_failed",
                            value,
                            f"{alert.name} {status}: could not tell {shown}: {failure}",
                            {**detail, "destination": dest, "status": status, "error": failure},
                        )
                    )
        return events

    def _send(self, dest: str, payload: dict[str, Any], severity: str, status: str) -> str | None:
        """Deliver one notification: None when done, else why not."""
        if dest == "log":
            level = logging.INFO
            if status == "firing":
                level = {"critical": logging.ERROR, "warning": logging.WARNING}.get(
                    severity, logging.INFO
                )
            log.log(level, "%s", payload["message"], extra={"alert": payload})
            return None
        url = dest.partition(":")[2]
        try:
            response = httpx.post(url, json=payload, timeout=self._webhook_timeout)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if response.status_code >= 300:
            return f"HTTP {response.status_code}"
        return None

    # -- history -----------------------------------------------------------------------------

    def history(
        self, rule: str | None = None, *, since: datetime | None = None, limit: int = 100
    ) -> builtins.list[AlertEvent]:
        """Events, newest first: of one rule (NotFound if it neither exists nor has any),
        since a moment, at most ``limit``."""
        if limit < 1:
            raise InvalidInput(f"limit must be at least 1, got {limit}")
        e = tables.alert_events
        query = sa.select(e).order_by(e.c.ts.desc(), e.c.id.desc()).limit(limit)
        if rule is not None:
            query = query.where(e.c.rule_name == rule)
        if since is not None:
            query = query.where(e.c.ts >= to_ms(since))
        with self._db.read() as conn:
            rows = conn.execute(query).mappings().all()
        if rule is not None and not rows:
            self.get(rule)  # NotFound for a rule that never was
        return [
            AlertEvent(
                id=r["id"],
                rule=r["rule_name"],
                ts=from_ms(r["ts"]),
                kind=r["kind"],
                value=r["value"],
                message=r["message"],
                detail=r["detail"] or {},
            )
            for r in rows
        ]

    def prometheus_rules(self, group: str = "mloop") -> str:
        """Prometheus alerting rules (YAML) for every enabled rule."""
        from mloop.monitoring.prometheus import prometheus_rules

        served: dict[str, list[str]] = {}
        for deployment in self._deployments.list() if self._deployments is not None else []:
            for variant in deployment.variants:
                if not variant.shadow:
                    name, _ = parse_model_ref(variant.model)
                    served.setdefault(name, []).append(deployment.name)
        rules = [a.rule() for a in self.list() if a.enabled]
        return prometheus_rules(rules, deployments=served, group=group)


def _clock() -> datetime:
    return now()


def _detail(alert: AlertRule) -> dict[str, Any]:
    return {
        "model": alert.model,
        "series": alert.series,
        "op": alert.op,
        "threshold": alert.threshold,
        "severity": alert.severity,
    }


def _alert(row: Any) -> Alert:
    spec = dict(row["spec"])
    return Alert.model_validate(
        {
            **spec,
            "enabled": bool(row["enabled"]),
            "state": row["state"],
            "state_since": _dt(row["state_since"]),
            "last_value": row["last_value"],
            "last_notified_at": _dt(row["last_notified_at"]),
            "last_evaluated_at": _dt(row["last_evaluated_at"]),
            "created_at": _dt(row["created_at"]),
            "updated_at": _dt(row["updated_at"]),
        }
    )


__all__ = [
    "OPS",
    "STATE_CODES",
    "Alert",
    "AlertEvent",
    "AlertRule",
    "AlertService",
    "Subscriber",
    "duration_seconds",
]
