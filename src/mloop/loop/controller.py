"""The loop controller: per registered model with a policy, watch the triggers; when one
fires, train a challenger with the recipe, put it through the registry's gates, run it as a
canary beside the champion under guardrails, and promote it or roll it back. No human step.

Each pass of the loop is a row of ``loop_runs`` that moves through
``training → gating → canary → promoted | rolled_back`` (or ends ``refused`` at the gates,
``failed`` when the recipe or a step breaks). Every move is an audit record with its reason,
and the pass is a lineage node between the champion it challenged and the version it trained.
A failure anywhere leaves the champion serving: the alias only moves at promotion, and the
deployment is restored to the spec it had before the canary.

:meth:`LoopService.tick` does one round for every enabled policy; ``mloop loop run`` and
``mloop serve`` call it every ``interval``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from mloop.core.clock import from_ms, to_ms
from mloop.core.errors import InvalidInput, MloopError, NotFound
from mloop.core.ids import new_id
from mloop.loop.policy import (
    AlertTrigger,
    Canary,
    DecayTrigger,
    DriftTrigger,
    LabelsTrigger,
    LoopPolicy,
    ScheduleTrigger,
    parse_policy,
    seconds,
)
from mloop.loop.recipes import RecipeContext, find_recipe, run_recipe
from mloop.registry import ModelVersion
from mloop.security import AuditLog, local_actor
from mloop.storage import LineageStore, tables

log = logging.getLogger("mloop.loop")

ACTIVE = ("training", "gating", "canary")
ENDED = ("promoted", "rolled_back", "refused", "failed")
CHALLENGER = "challenger"  # the canary variant's name in the deployment
MIN_LATENCY_REQUESTS = 20  # requests each side needs before their latencies are compared


class LoopRun(BaseModel):
    """One pass of the loop for a model."""

    model_config = ConfigDict(frozen=True)

    id: str
    model: str
    state: str
    trigger: str
    reason: str
    champion_version: int | None
    candidate_version: int | None
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    detail: dict[str, Any]

    @property
    def outcome(self) -> str:
        """What the newest step did (why a pass ended where it did)."""
        steps = self.detail.get("steps") or []
        return str(steps[-1]["note"]) if steps else self.reason


class LoopStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    enabled: bool
    state: str  # idle, or the active pass's state
    champion: int | None
    active: LoopRun | None
    last: LoopRun | None  # the newest pass that ended
    policy: dict[str, Any]


class VariantTraffic(BaseModel):
    model_config = ConfigDict(frozen=True)

    requests: int
    errors: int
    error_rate: float
    p99_ms: float | None


def _run(row: Any) -> LoopRun:
    return LoopRun(
        id=row.id,
        model=row.model_name,
        state=row.state,
        trigger=row.trigger,
        reason=row.reason,
        champion_version=row.champion_version,
        candidate_version=row.candidate_version,
        started_at=from_ms(row.started_at),
        updated_at=from_ms(row.updated_at),
        ended_at=from_ms(row.ended_at) if row.ended_at is not None else None,
        detail=dict(row.detail or {}),
    )


class LoopService:
    def __init__(self, ws: Any) -> None:  # the Workspace (it composes this package)
        self._ws = ws
        self._db = ws.db

    # -- policies ---------------------------------------------------------------------------

    def set_policy(self, model: str, spec: LoopPolicy | dict[str, Any]) -> LoopPolicy:
        """Set ``model``'s retraining policy (replacing any), after checking that everything
        it names exists: the model, the recipe, the alert rules, the deployment serving
        ``model@alias``."""
        policy = parse_policy(spec)
        self._ws.registry.get_model(model)
        find_recipe(policy.recipe.name)
        for trigger in policy.triggers:
            if isinstance(trigger, AlertTrigger):
                self._alert_state(trigger.rule)
        if policy.deployment is not None:
            deployment = self._ws.deployments.get(policy.deployment)
            wanted = f"{model}@{policy.alias}"
            if not any(v.model == wanted for v in deployment.served()):
                raise InvalidInput(
                    f"deployment {policy.deployment!r} does not serve {wanted}: the canary runs "
                    f"beside the variant that does"
                )
        t = tables.loop_policies
        body = policy.model_dump(mode="json")
        with self._db.write() as conn:
            conn.execute(t.delete().where(t.c.model_name == model))
            conn.execute(
                t.insert().values(
                    model_name=model,
                    spec=body,
                    enabled=True,
                    updated_at=to_ms(self._now()),
                    updated_by=local_actor(),
                )
            )
            AuditLog.record(conn, "loop.policy.set", "model", model, body)
        return policy

    def get_policy(self, model: str) -> LoopPolicy:
        row = self._policy_row(model)
        return parse_policy(dict(row.spec))

    def _policy_row(self, model: str) -> Any:
        t = tables.loop_policies
        with self._db.read() as conn:
            row = conn.execute(sa.select(t).where(t.c.model_name == model)).first()
        if row is None:
            raise NotFound(f"{model!r} has no loop policy (mloop loop set {model} -f POLICY)")
        return row

    def delete_policy(self, model: str) -> None:
        self._policy_row(model)
        t = tables.loop_policies
        with self._db.write() as conn:
            conn.execute(t.delete().where(t.c.model_name == model))
            AuditLog.record(conn, "loop.policy.delete", "model", model, {})

    def enable(self, model: str, enabled: bool = True) -> None:
        self._policy_row(model)
        t = tables.loop_policies
        with self._db.write() as conn:
            conn.execute(t.update().where(t.c.model_name == model).values(enabled=enabled))
            action = "loop.policy.enable" if enabled else "loop.policy.disable"
            AuditLog.record(conn, action, "model", model, {})

    def policies(self, *, enabled_only: bool = False) -> list[tuple[str, LoopPolicy, bool]]:
        t = tables.loop_policies
        query = sa.select(t).order_by(t.c.model_name)
        if enabled_only:
            query = query.where(t.c.enabled.is_(True))
        with self._db.read() as conn:
            rows = conn.execute(query).all()
        return [(r.model_name, parse_policy(dict(r.spec)), bool(r.enabled)) for r in rows]

    # -- passes -----------------------------------------------------------------------------

    def runs(self, model: str | None = None, *, limit: int = 20) -> list[LoopRun]:
        """The newest passes first."""
        t = tables.loop_runs
        query = sa.select(t).order_by(t.c.started_at.desc(), t.c.id.desc()).limit(limit)
        if model is not None:
            query = query.where(t.c.model_name == model)
        with self._db.read() as conn:
            return [_run(r) for r in conn.execute(query).all()]

    def get_run(self, run_id: str) -> LoopRun:
        t = tables.loop_runs
        with self._db.read() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == run_id)).first()
        if row is None:
            raise NotFound(f"no loop run {run_id!r}")
        return _run(row)

    def status(self) -> list[LoopStatus]:
        out = []
        for model, policy, enabled in self.policies():
            runs = self.runs(model, limit=50)
            active = next((r for r in runs if r.state in ACTIVE), None)
            last = next((r for r in runs if r.state in ENDED), None)
            out.append(
                LoopStatus(
                    model=model,
                    enabled=enabled,
                    state=active.state if active else "idle",
                    champion=self._ws.registry.get_model(model).aliases.get(policy.alias),
                    active=active,
                    last=last,
                    policy=policy.model_dump(mode="json"),
                )
            )
        return out

    # -- the controller ---------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> list[LoopRun]:
        """One round: advance every running canary, then start a pass for each enabled policy
        whose trigger fires (outside its cooldown). Returns the passes it moved."""
        moved = []
        for model, policy, _ in self.policies(enabled_only=True):
            at = now or self._now()
            try:
                active = self._active(model)
                if active is not None:
                    if active.state == "canary":
                        moved.append(self._advance(active, policy, at))
                    elif at - active.updated_at > timedelta(seconds=seconds(policy.max_training)):
                        moved.append(
                            self._end(
                                active.id,
                                "failed",
                                f"no step since {active.updated_at:%Y-%m-%d %H:%M} UTC: the "
                                f"controller stopped while {active.state} (max_training "
                                f"{policy.max_training})",
                            )
                        )
                    continue
                fired = self._fired(model, policy, at)
                if fired is not None:
                    moved.append(self.start(model, fired[0], fired[1], now=at))
            except MloopError as exc:
                log.error("loop for %s: %s", model, exc.message)
        return moved

    def run_forever(
        self,
        *,
        interval: float = 30.0,
        stop: threading.Event | None = None,
        max_passes: int | None = None,
    ) -> int:
        """Every ``interval`` seconds until ``stop`` is set (or ``max_passes`` rounds):
        evaluate the alert rules (their firing is what ``alert`` triggers read, and their
        notifications go out), then :meth:`tick`. Returns the rounds done."""
        stop = stop or threading.Event()
        rounds = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                alerts = getattr(self._ws, "alerts", None)
                if alerts is not None:
                    alerts.evaluate()
                self.tick()
            except Exception:  # a database hiccup: log it, try again next round
                log.exception("loop round failed")
            rounds += 1
            if max_passes is not None and rounds >= max_passes:
                break
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
        return rounds

    def trigger(self, model: str, reason: str = "asked by hand") -> LoopRun:
        """Start a pass now, whatever the triggers say (not while one is running)."""
        self.get_policy(model)
        return self.start(model, "manual", reason)

    def start(
        self, model: str, trigger: str, reason: str, *, now: datetime | None = None
    ) -> LoopRun:
        """One pass: train with the recipe, gate, then canary (or promote directly when the
        policy has no canary). Returns the pass in the state it reached."""
        policy = self.get_policy(model)
        at = now or self._now()
        champion = self._champion(model, policy)
        run_id = new_id()
        try:
            self._claim(model, run_id, trigger, reason, champion, at)
        except sa.exc.IntegrityError:  # another controller claimed it between check and insert
            raise InvalidInput(f"a pass of the loop for {model!r} is running") from None
        log.info("loop %s for %s: %s — training", run_id, model, reason)
        try:
            candidate = run_recipe(
                find_recipe(policy.recipe.name),
                RecipeContext(
                    ws=self._ws,
                    model=model,
                    champion=champion,
                    reason=reason,
                    params=dict(policy.recipe.params),
                    tags={"mloop.loop_run": run_id},
                ),
            )
        except Exception as exc:
            message = exc.message if isinstance(exc, MloopError) else f"{type(exc).__name__}: {exc}"
            return self._end(run_id, "failed", f"the recipe failed: {message}", model=model)
        with self._db.write() as conn:
            LineageStore.add(conn, ("loop_run", run_id), ("model_version", candidate.id), "trained")
        self._move(run_id, "gating", f"trained {candidate.ref}", candidate=candidate.version)
        try:
            check = self._ws.promotion.check(model, candidate.version)
        except Exception as exc:
            message = exc.message if isinstance(exc, MloopError) else f"{type(exc).__name__}: {exc}"
            return self._end(run_id, "failed", f"the gates could not be computed: {message}")
        gates = [r.model_dump(mode="json") for r in check.report.results]
        if not check.passed:
            return self._end(
                run_id,
                "refused",
                f"{candidate.ref} failed the gates: {check.report.summary()}",
                detail={"gates": gates},
            )
        if policy.deployment is None or policy.canary is None:
            return self._promote(run_id, model, candidate, "passed the gates (no canary)", gates)
        try:
            original = self._ws.deployments.get(policy.deployment).spec()
            self._ws.deployments.update(
                policy.deployment, self._canary_spec(original, model, policy, candidate)
            )
        except Exception as exc:
            message = exc.message if isinstance(exc, MloopError) else f"{type(exc).__name__}: {exc}"
            return self._end(run_id, "failed", f"the canary could not start: {message}")
        return self._move(
            run_id,
            "canary",
            f"{candidate.ref} passed the gates; canary at {policy.canary.percent:g} % of "
            f"{policy.deployment}",
            detail={
                "gates": gates,
                "deployment": policy.deployment,
                "original_spec": original.model_dump(mode="json"),
                "canary_started_ms": to_ms(self._now()),
            },
            audit="loop.canary",
        )

    def _claim(
        self,
        model: str,
        run_id: str,
        trigger: str,
        reason: str,
        champion: ModelVersion | None,
        at: datetime,
    ) -> None:
        """Insert the pass in state training, unless one is under way (the partial unique
        index ux_loop_runs_active settles a race between two controllers)."""
        t = tables.loop_runs
        with self._db.write() as conn:
            busy = conn.execute(
                sa.select(t.c.id).where(t.c.model_name == model, t.c.state.in_(ACTIVE))
            ).first()
            if busy is not None:
                raise InvalidInput(f"a pass of the loop for {model!r} is running ({busy.id})")
            conn.execute(
                t.insert().values(
                    id=run_id,
                    model_name=model,
                    state="training",
                    trigger=trigger,
                    reason=reason,
                    champion_version=champion.version if champion else None,
                    candidate_version=None,
                    started_at=to_ms(at),
                    updated_at=to_ms(at),
                    ended_at=None,
                    detail={},
                )
            )
            AuditLog.record(
                conn,
                "loop.trigger",
                "model",
                model,
                {"run": run_id, "trigger": trigger, "reason": reason},
            )
            if champion is not None:
                LineageStore.add(
                    conn, ("model_version", champion.id), ("loop_run", run_id), "retrained_by"
                )

    # -- the canary -------------------------------------------------------------------------

    @staticmethod
    def _canary_spec(original: Any, model: str, policy: LoopPolicy, candidate: ModelVersion) -> Any:
        assert policy.canary is not None
        wanted = f"{model}@{policy.alias}"
        stable = next(v for v in original.served() if v.model == wanted)
        challenger = stable.model_copy(
            update={
                "name": CHALLENGER if stable.name != CHALLENGER else "challenger-2",
                "model": f"{model}@{candidate.version}",
                "weight": policy.canary.percent,
            }
        )
        return original.model_copy(
            update={
                "strategy": "canary",
                "variants": [stable, challenger, *original.shadows()],
            }
        )

    def traffic(
        self, deployment: str, since_ms: int, until_ms: int | None = None
    ) -> dict[str, VariantTraffic]:
        """Requests, failed requests and the p99 row latency of each variant of
        ``deployment`` since ``since_ms``, read from the prediction log."""
        import numpy as np

        p = tables.predictions
        where = [
            p.c.deployment == deployment,
            p.c.ts >= since_ms,
            sa.or_(p.c.shadow.is_(None), p.c.shadow.is_(False)),
        ]
        if until_ms is not None:
            where.append(p.c.ts < until_ms)
        with self._db.read() as conn:
            counts = conn.execute(
                sa.select(
                    p.c.variant,
                    sa.func.count(sa.distinct(p.c.request_id)),
                    sa.func.count(p.c.error),
                )
                .where(*where)
                .group_by(p.c.variant)
            ).all()
            latencies: dict[str, list[float]] = {}
            for variant, latency in conn.execute(
                sa.select(p.c.variant, p.c.latency_ms).where(*where, p.c.error.is_(None))
            ):
                latencies.setdefault(variant, []).append(latency)
        out = {}
        for variant, requests, errors in counts:
            found = latencies.get(variant)
            out[variant] = VariantTraffic(
                requests=int(requests),
                errors=int(errors),
                error_rate=errors / requests if requests else 0.0,
                p99_ms=float(np.quantile(found, 0.99)) if found else None,
            )
        return out

    def _advance(self, run: LoopRun, policy: LoopPolicy, now: datetime) -> LoopRun:
        """Check a running canary's guardrails; roll back on a breach, promote when it has
        had its traffic and time."""
        canary = policy.canary
        deployment = run.detail.get("deployment")
        if canary is None or deployment is None or run.candidate_version is None:
            return self._rollback(run, "the policy no longer has a canary for this pass")
        started = int(run.detail["canary_started_ms"])
        traffic = self.traffic(deployment, started)
        stable_name = self._stable_name(run)
        mine = traffic.get(CHALLENGER) or traffic.get("challenger-2")
        theirs = traffic.get(stable_name) if stable_name else None
        progress = {
            "challenger": mine.model_dump() if mine else None,
            "stable": theirs.model_dump() if theirs else None,
        }
        breach = self._breach(run, canary, mine, theirs, started, progress)
        if breach is not None:
            return self._rollback(run, breach, progress)
        elapsed = to_ms(now) - started
        enough_requests = canary.requests is None or (
            mine is not None and mine.requests >= canary.requests
        )
        enough_time = canary.duration is None or elapsed >= seconds(canary.duration) * 1000
        if enough_requests and enough_time:
            candidate = self._ws.registry.get_version(run.model, run.candidate_version)
            served = mine.requests if mine else 0
            return self._promote(
                run.id,
                run.model,
                candidate,
                f"the canary answered {served} requests within its guardrails",
                run.detail.get("gates", []),
                progress=progress,
                restore=run,
            )
        if elapsed >= seconds(canary.max_duration) * 1000:
            got = mine.requests if mine else 0
            return self._rollback(
                run,
                f"the canary got {got} of {canary.requests} requests in {canary.max_duration}",
                progress,
            )
        self._update_detail(run.id, {"progress": progress})
        return self.get_run(run.id)

    def _breach(
        self,
        run: LoopRun,
        canary: Canary,
        mine: VariantTraffic | None,
        theirs: VariantTraffic | None,
        started_ms: int,
        progress: dict[str, Any],
    ) -> str | None:
        rails = canary.guardrails
        if mine is None:
            return None
        stable_rate = theirs.error_rate if theirs else 0.0
        if mine.errors and mine.error_rate > rails.max_error_rate and mine.error_rate > stable_rate:
            return (
                f"error rate {mine.error_rate:.1%} ({mine.errors} of {mine.requests} requests) "
                f"above the guardrail {rails.max_error_rate:.1%} and the champion's "
                f"{stable_rate:.1%}"
            )
        if (
            rails.max_latency_ratio is not None
            and theirs is not None
            and mine.requests >= MIN_LATENCY_REQUESTS
            and theirs.requests >= MIN_LATENCY_REQUESTS
            and mine.p99_ms is not None
            and theirs.p99_ms is not None
            and mine.p99_ms > rails.min_latency_ms
            and mine.p99_ms > rails.max_latency_ratio * theirs.p99_ms
        ):
            return (
                f"p99 latency {mine.p99_ms:.2f} ms, over {rails.max_latency_ratio:g}× the "
                f"champion's {theirs.p99_ms:.2f} ms"
            )
        performance = getattr(self._ws, "performance", None)
        if rails.max_metric_drop is None or performance is None or run.champion_version is None:
            return None
        assert run.candidate_version is not None
        live = performance.by_version(run.model, since=from_ms(started_ms))
        a, b = live.get(run.candidate_version), live.get(run.champion_version)
        if a is None or b is None or min(a.labeled, b.labeled) < rails.min_labels:
            return None
        metric = rails.metric or _default_metric(a.metrics)
        if metric not in a.metrics or metric not in b.metrics:
            return None
        mine_value, theirs_value = a.metrics[metric], b.metrics[metric]
        progress["metric"] = {
            "name": metric,
            "challenger": mine_value,
            "champion": theirs_value,
            "labels": [a.labeled, b.labeled],
        }
        lower_is_better = metric in ("rmse", "mae", "mse", "log_loss")
        worse = (
            (mine_value - theirs_value) / max(abs(theirs_value), 1e-12)
            if lower_is_better
            else theirs_value - mine_value
        )
        if worse > rails.max_metric_drop:
            return (
                f"live {metric} {mine_value:.4f} against the champion's {theirs_value:.4f} "
                f"on {a.labeled} and {b.labeled} labeled predictions: worse by more than "
                f"{rails.max_metric_drop:g}"
            )
        return None

    def _stable_name(self, run: LoopRun) -> str | None:
        spec = run.detail.get("original_spec") or {}
        policy_alias = self.get_policy(run.model).alias
        wanted = f"{run.model}@{policy_alias}"
        for variant in spec.get("variants", []):
            if variant.get("model") == wanted and not variant.get("shadow"):
                return str(variant["name"])
        return None

    def _restore(self, run: LoopRun) -> None:
        deployment = run.detail.get("deployment")
        original = run.detail.get("original_spec")
        if deployment and original:
            self._ws.deployments.update(deployment, original)

    def _rollback(
        self, run: LoopRun, reason: str, progress: dict[str, Any] | None = None
    ) -> LoopRun:
        try:
            self._restore(run)
        except MloopError as exc:
            reason = f"{reason}; restoring the deployment failed: {exc.message}"
        if run.candidate_version is not None:
            with contextlib.suppress(MloopError):
                self._ws.registry.set_version_tag(
                    run.model, run.candidate_version, "mloop.loop", "rolled_back"
                )
        return self._end(
            run.id,
            "rolled_back",
            f"rolled back: {reason}",
            detail={"progress": progress} if progress else None,
            audit="loop.rollback",
        )

    def _promote(
        self,
        run_id: str,
        model: str,
        candidate: ModelVersion,
        why: str,
        gates: list[Any],
        *,
        progress: dict[str, Any] | None = None,
        restore: LoopRun | None = None,
    ) -> LoopRun:
        try:
            self._ws.promotion.promote(model, candidate.version, reason=f"loop {run_id}: {why}")
        except Exception as exc:
            message = exc.message if isinstance(exc, MloopError) else f"{type(exc).__name__}: {exc}"
            if restore is not None:
                self._restore(restore)
            return self._end(run_id, "refused", f"promotion refused: {message}")
        if restore is not None:
            self._restore(restore)  # the deployment's stable variant follows the alias
        return self._end(
            run_id,
            "promoted",
            f"promoted {candidate.ref}: {why}",
            detail={"gates": gates, **({"progress": progress} if progress else {})},
            audit="loop.promote",
        )

    # -- triggers ---------------------------------------------------------------------------

    def _fired(self, model: str, policy: LoopPolicy, now: datetime) -> tuple[str, str] | None:
        last = self.runs(model, limit=1)
        since = self._policy_row(model).updated_at
        if last:
            last_start = to_ms(last[0].started_at)
            if now - last[0].started_at < policy.cooldown_delta:
                return None
            since = max(since, last_start)
        for trigger in policy.triggers:
            try:
                reason = self._check(model, policy, trigger, since, now)
            except NotFound:
                reason = None  # nothing to judge yet (no traffic, no labels)
            if reason is not None:
                return trigger.type, reason
        return None

    def _check(
        self, model: str, policy: LoopPolicy, trigger: Any, since_ms: int, now: datetime
    ) -> str | None:
        ref = f"{model}@{policy.alias}"
        if isinstance(trigger, DriftTrigger):
            windows = self._ws.monitoring.window_drift(
                ref, width=timedelta(seconds=seconds(trigger.window)), last=1
            )
            if not windows or windows[-1].rows < trigger.min_rows:
                return None
            w = windows[-1]
            if w.share_drifted >= trigger.share:
                return (
                    f"drift: {len(w.drifted_columns)} of {len(w.columns)} inputs drifted "
                    f"({w.share_drifted:.0%} ≥ {trigger.share:.0%}) in the window from "
                    f"{w.start:%Y-%m-%d %H:%M} ({', '.join(w.drifted_columns[:5])})"
                )
            return None
        if isinstance(trigger, DecayTrigger):
            performance = getattr(self._ws, "performance", None)
            if performance is None:
                return None
            report = performance.decay(
                ref,
                width=timedelta(seconds=seconds(trigger.window)),
                metric=trigger.metric,
                tolerance=trigger.tolerance,
                min_labels=trigger.min_labels,
            )
            return f"decay: {report.reason}" if report.decayed else None
        if isinstance(trigger, ScheduleTrigger):
            from croniter import croniter

            due = croniter(trigger.cron, from_ms(since_ms)).get_next(datetime)
            if due <= now:
                return f"schedule: {trigger.cron} was due at {due:%Y-%m-%d %H:%M} UTC"
            return None
        if isinstance(trigger, LabelsTrigger):
            f = tables.feedback
            with self._db.read() as conn:
                count = conn.execute(
                    sa.select(sa.func.count()).where(
                        f.c.model_name == model, f.c.received_at >= since_ms
                    )
                ).scalar_one()
            if count >= trigger.min_new:
                return f"labels: {count} new labeled predictions (≥ {trigger.min_new})"
            return None
        if isinstance(trigger, AlertTrigger):
            state = self._alert_state(trigger.rule)
            return f"alert: rule {trigger.rule!r} is firing" if state == "firing" else None
        raise InvalidInput(f"unknown trigger {trigger!r}")

    def _alert_state(self, rule: str) -> str:
        t = tables.alert_rules
        with self._db.read() as conn:
            state = conn.execute(sa.select(t.c.state).where(t.c.name == rule)).scalar()
        if state is None:
            raise InvalidInput(f"the policy names alert rule {rule!r}, which does not exist")
        return str(state)

    # -- records ----------------------------------------------------------------------------

    def _champion(self, model: str, policy: LoopPolicy) -> ModelVersion | None:
        number = self._ws.registry.get_model(model).aliases.get(policy.alias)
        return self._ws.registry.get_version(model, number) if number is not None else None

    def _active(self, model: str) -> LoopRun | None:
        t = tables.loop_runs
        with self._db.read() as conn:
            row = conn.execute(
                sa.select(t).where(t.c.model_name == model, t.c.state.in_(ACTIVE))
            ).first()
        return _run(row) if row is not None else None

    def _update_detail(self, run_id: str, detail: dict[str, Any]) -> None:
        t = tables.loop_runs
        with self._db.write() as conn:
            current = conn.execute(sa.select(t.c.detail).where(t.c.id == run_id)).scalar_one()
            conn.execute(
                t.update()
                .where(t.c.id == run_id)
                .values(detail={**dict(current or {}), **detail}, updated_at=to_ms(self._now()))
            )

    def _move(
        self,
        run_id: str,
        state: str,
        note: str,
        *,
        candidate: int | None = None,
        detail: dict[str, Any] | None = None,
        audit: str | None = None,
        ended: bool = False,
        model: str | None = None,
    ) -> LoopRun:
        t = tables.loop_runs
        now = to_ms(self._now())
        with self._db.write() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == run_id)).first()
            assert row is not None
            values: dict[str, Any] = {
                "state": state,
                "updated_at": now,
                "detail": {
                    **dict(row.detail or {}),
                    **(detail or {}),
                    "steps": [
                        *dict(row.detail or {}).get("steps", []),
                        {"state": state, "at": now, "note": note},
                    ],
                },
            }
            if candidate is not None:
                values["candidate_version"] = candidate
            if ended:
                values["ended_at"] = now
            conn.execute(t.update().where(t.c.id == run_id).values(**values))
            AuditLog.record(
                conn,
                audit or f"loop.{state}",
                "model",
                row.model_name,
                {"run": run_id, "state": state, "reason": note},
            )
        log.info("loop %s for %s: %s — %s", run_id, model or row.model_name, state, note)
        return self.get_run(run_id)

    def _end(
        self,
        run_id: str,
        state: str,
        note: str,
        *,
        detail: dict[str, Any] | None = None,
        audit: str | None = None,
        model: str | None = None,
    ) -> LoopRun:
        return self._move(run_id, state, note, detail=detail, audit=audit, ended=True, model=model)

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC)


def _default_metric(metrics: dict[str, float]) -> str:
    for name in ("accuracy", "rmse"):
        if name in metrics:
            return name
    return next(iter(metrics))
