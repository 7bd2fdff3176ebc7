"""Alerts in Prometheus: the rules' state as gauges of the server's ``/metrics``, and the rules
as a Prometheus alerting-rules file.

:class:`MonitoringCollector` reads every enabled rule's state from the workspace database on
each scrape (one query): ``mloop_alert_state{rule,severity}`` (0 ok, 1 pending, 2 firing) and
``mloop_alert_value{rule}`` (the series' value at the last evaluation).

:func:`prometheus_rules` writes one Prometheus alerting rule per mloop rule. A rule on
``latency_p99``/``latency_p50``/``error_rate`` of a model served by deployments reads the
server's own metrics (``mloop_deployment_latency_seconds``, ``mloop_deployment_requests`` and
``mloop_deployment_errors`` of those deployments), so Prometheus judges it without mloop;
every other rule reads ``mloop_alert_value``, which needs ``mloop alerts watch`` (or another
evaluator) to keep it current.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import yaml
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mloop.registry import parse_model_ref
from mloop.storage import Database, tables

if TYPE_CHECKING:
    from mloop.monitoring.alerts import AlertRule

log = logging.getLogger("mloop.alerts")

STATE_METRIC = "mloop_alert_state"
VALUE_METRIC = "mloop_alert_value"
_STATES = {"ok": 0.0, "pending": 1.0, "firing": 2.0}
_QUANTILES = {"latency_p99": 0.99, "latency_p50": 0.5}


class MonitoringCollector(Collector):
    """Alert rules' state, read from the workspace database when Prometheus scrapes."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def describe(self) -> Iterable[Any]:
        return self._families()

    def _families(self) -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                STATE_METRIC,
                "State of each enabled alert rule: 0 ok, 1 pending, 2 firing.",
                labels=["rule", "severity"],
            ),
            GaugeMetricFamily(
                VALUE_METRIC,
                "Value of each enabled alert rule's series at its last evaluation.",
                labels=["rule"],
            ),
        ]

    def collect(self) -> Iterator[Any]:
        state, value = self._families()
        t = tables.alert_rules
        try:
            with self._db.read() as conn:
                rows = conn.execute(
                    sa.select(t.c.name, t.c.spec, t.c.state, t.c.last_value).where(
                        t.c.enabled.is_(True)
                    )
                ).all()
        except Exception as exc:  # a scrape never fails for the database's sake
            log.warning("alert state not exported: %s", exc)
            rows = []
        for name, spec, current, last in rows:
            severity = str((spec or {}).get("severity", "warning"))
            state.add_metric([name, severity], _STATES.get(current, 0.0))
            if last is not None:
                value.add_metric([name], float(last))
        yield state
        yield value


def _duration(seconds: float) -> str:
    """A Prometheus duration: ``90s``, ``10m``, ``1h``, ``2d``."""
    whole = max(round(seconds), 1)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def _selector(deployments: Sequence[str]) -> str:
    if len(deployments) == 1:
        return f'deployment="{deployments[0]}"'
    return f'deployment=~"{"|".join(sorted(deployments))}"'


def rule_expr(rule: AlertRule, deployments: Sequence[str] = ()) -> str:
    """The PromQL expression that is true (non-empty) while ``rule``'s condition holds."""
    window = _duration(rule.window_delta.total_seconds())
    threshold = f"{rule.threshold:g}"
    if deployments and rule.series in _QUANTILES:
        q = _QUANTILES[rule.series]
        sel = _selector(deployments)
        return (
            f"histogram_quantile({q}, sum by (le) "
            f"(rate(mloop_deployment_latency_seconds_bucket{{{sel}}}[{window}]))) * 1000 "
            f"{rule.op} {threshold}"
        )
    if deployments and rule.series == "error_rate":
        sel = _selector(deployments)
        errors = f"sum(rate(mloop_deployment_errors_total{{{sel}}}[{window}]))"
        answered = f"sum(rate(mloop_deployment_requests_total{{{sel}}}[{window}]))"
        return f"{errors} / ({answered} + {errors}) {rule.op} {threshold}"
    return f'{VALUE_METRIC}{{rule="{rule.name}"}} {rule.op} {threshold}'


def prometheus_rules(
    rules: Iterable[AlertRule],
    *,
    deployments: Mapping[str, Sequence[str]] | None = None,
    group: str = "mloop",
) -> str:
    """A Prometheus alerting-rules file (YAML) for ``rules``; ``deployments`` maps a model's
    name to the deployments serving it (their metrics then judge latency and error rules)."""
    served = deployments or {}
    out = []
    for rule in rules:
        name, _ = parse_model_ref(rule.model)
        entry: dict[str, Any] = {
            "alert": rule.name,
            "expr": rule_expr(rule, served.get(name, ())),
        }
        seconds = rule.for_delta.total_seconds()
        if seconds:
            entry["for"] = _duration(seconds)
        entry["labels"] = {"severity": rule.severity, "model": rule.model}
        summary = f"{rule.series} of {rule.model} {rule.op} {rule.threshold:g}"
        entry["annotations"] = {
            "summary": summary,
            "description": rule.description or summary,
        }
        out.append(entry)
    document = {"groups": [{"name": group, "rules": out}]}
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


__all__ = ["STATE_METRIC", "VALUE_METRIC", "MonitoringCollector", "prometheus_rules", "rule_expr"]
