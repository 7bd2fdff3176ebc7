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
from mloop.monitoring import HIGHER_IS_BETTER, LOWER_IS_BETTER
from mloop.registry import ModelVersion
from mloop.security import AuditLog, local_actor
from mloop.storage import LineageStore, tables

log = logging.getLogger("mloop.loop")

ACTIVE = ("training", "gating", "canary")
ENDED = ("promoted", "rolled_back", "refused", "failed")
CHALLENGER = "challenger"  # the canary variant's name in the deployment
MIN_LATENCY_REQUESTS = 20  # requests each side needs before their latencies are compared
DEFAULT_MAX_TRAINING = timedelta(hours=6)  # for a pass whose policy is gone


class _Lost(Exception):
    """The pass moved on elsewhere (another controller ended it) since this one read it."""


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
            if isinstance(trigger, DecayTrigger) and trigger.metric is not None:
                _check_metric(trigger.metric, "the decay trigger's metric")
        if policy.canary is not None and policy.canary.guardrails.metric is not None:
            _check_metric(policy.canary.guardrails.metric, "the guardrail's metric")
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
                    champion=self._champion_number(model, policy),
                    active=active,
                    last=last,
                    policy=policy.model_dump(mode="json"),
                )
            )
        return out

    # -- the controller ---------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> list[LoopRun]:
        """One round: move every pass under way along (advance a canary; end a pass whose
        controller died, or whose policy was disabled or deleted), then start a pass for each
        enabled policy whose trigger fires (outside its cooldown). Returns the passes it
        moved."""
        moved = []
        policies = {model: (policy, enabled) for model, policy, enabled in self.policies()}
        t = tables.loop_runs
        with self._db.read() as conn:
            active = [_run(r) for r in conn.execute(sa.select(t).where(t.c.state.in_(ACTIVE)))]
        for run in active:
            at = now or self._now()
            try:
                found = self._tend(run, policies.get(run.model), at)
            except _Lost:
                continue
            except MloopError as exc:
                log.error("loop for %s: %s", run.model, exc.message)
                continue
            if found is not None:
                moved.append(found)
        busy = {run.model for run in active}
        for model, (policy, enabled) in policies.items():
            if not enabled or model in busy:
                continue
            at = now or self._now()
            try:
                fired = self._fired(model, policy, at)
                if fired is not None:
                    moved.append(self.start(model, fired[0], fired[1], now=at))
            except MloopError as exc:
                log.error("loop for %s: %s", model, exc.message)
        return moved

    def _tend(
        self, run: LoopRun, found: tuple[LoopPolicy, bool] | None, at: datetime
    ) -> LoopRun | None:
        policy, enabled = found if found is not None else (None, False)
        if run.state == "canary":
            if policy is None or not enabled:
                why = "was deleted" if policy is None else "was disabled"
                return self._rollback(run, f"the loop policy of {run.model} {why}")
            return self._advance(run, policy, at)
        limit = (
            timedelta(seconds=seconds(policy.max_training))
            if policy is not None
            else DEFAULT_MAX_TRAINING
        )
        if at - run.updated_at > limit:
            return self._end(
                run.id,
                "failed",
                f"no sign of life since {run.updated_at:%Y-%m-%d %H:%M} UTC: the controller "
                f"stopped while {run.state}",
                expected=(run.state,),
                expected_updated_ms=to_ms(run.updated_at),
            )
        return None

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
            return self._carry_out(run_id, model, policy, champion, reason)
        except _Lost:
            log.warning("loop %s for %s was ended elsewhere while it ran", run_id, model)
            return self.get_run(run_id)

    def _carry_out(
        self,
        run_id: str,
        model: str,
        policy: LoopPolicy,
        champion: ModelVersion | None,
        reason: str,
    ) -> LoopRun:
        beat = min(60.0, seconds(policy.max_training) / 4)
        stop_beating = threading.Event()
        heart = threading.Thread(
            target=self._heartbeat, args=(run_id, beat, stop_beating), daemon=True
        )
        heart.start()
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
        except BaseException:  # Ctrl-C, SystemExit: the pass must not stay "training"
            self._end(run_id, "failed", "interrupted while training", model=model)
            raise
        finally:
            stop_beating.set()
            heart.join()
        with self._db.write() as conn:
            LineageStore.add(conn, ("loop_run", run_id), ("model_version", candidate.id), "trained")
        self._move(
            run_id,
            "gating",
            f"trained {candidate.ref}",
            candidate=candidate.version,
            expected=("training",),
        )
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
            spec, stable, challenger = self._canary_spec(original, model, policy, candidate)
            self._ws.deployments.update(policy.deployment, spec)
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
                "stable_variant": stable,
                "canary_variant": challenger,
                "canary_started_ms": to_ms(self._now()),
            },
            audit="loop.canary",
            expected=("gating",),
        )

    def _heartbeat(self, run_id: str, every: float, stop: threading.Event) -> None:
        """While the recipe runs: a pass that shows no sign of life for max_training is
        taken for dead (its controller stopped), so a slow training keeps saying it lives."""
        t = tables.loop_runs
        while not stop.wait(every):
            try:
                with self._db.write() as conn:
                    conn.execute(
                        t.update()
                        .where(t.c.id == run_id, t.c.state == "training")
                        .values(updated_at=to_ms(self._now()))
                    )
            except Exception:  # a database hiccup: the next beat tries again
                log.exception("loop %s: heartbeat failed", run_id)

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
    def _canary_spec(
        original: Any, model: str, policy: LoopPolicy, candidate: ModelVersion
    ) -> tuple[Any, str, str]:
        """The deployment with the challenger beside the variant serving MODEL@ALIAS, and
        the two variants' names (the challenger's unused by any other variant)."""
        assert policy.canary is not None
        wanted = f"{model}@{policy.alias}"
        stable = next(v for v in original.served() if v.model == wanted)
        taken = {v.name for v in original.variants}
        names = (CHALLENGER, *(f"{CHALLENGER}-{i}" for i in range(2, 100)))
        name = next(n for n in names if n not in taken)
        challenger = stable.model_copy(
            update={
                "name": name,
                "model": f"{model}@{candidate.version}",
                "weight": policy.canary.percent,
            }
        )
        spec = original.model_copy(
            update={
                "strategy": "canary",
                "variants": [stable, challenger, *original.shadows()],
            }
        )
        return spec, stable.name, name

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
            tables.NOT_SHADOW,
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
        mine = traffic.get(str(run.detail.get("canary_variant")))
        theirs = traffic.get(str(run.detail.get("stable_variant")))
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
            wanted = f" of {canary.requests}" if canary.requests is not None else ""
            return self._rollback(
                run,
                f"the canary got {got}{wanted} requests in {canary.max_duration}, its max_duration",
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
        lower_is_better = metric in LOWER_IS_BETTER
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
            expected=("canary",),
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
        expected = ("canary",) if restore is not None else ("gating",)
        try:
            self._ws.promotion.promote(model, candidate.version, reason=f"loop {run_id}: {why}")
        except Exception as exc:
            message = exc.message if isinstance(exc, MloopError) else f"{type(exc).__name__}: {exc}"
            note = self._restored(restore)
            return self._end(
                run_id, "refused", f"promotion refused: {message}{note}", expected=expected
            )
        # the deployment's stable variant follows the alias: back to the spec it had
        note = self._restored(restore)
        return self._end(
            run_id,
            "promoted",
            f"promoted {candidate.ref}: {why}{note}",
            detail={"gates": gates, **({"progress": progress} if progress else {})},
            audit="loop.promote",
            expected=expected,
        )

    def _restored(self, run: LoopRun | None) -> str:
        """Put the deployment back as it was before the canary; a note when that failed (the
        pass ends all the same: the alias is what decides what the stable variant serves)."""
        if run is None:
            return ""
        try:
            self._restore(run)
        except MloopError as exc:
            return f"; restoring the deployment failed: {exc.message}"
        return ""

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
            except MloopError as exc:  # this trigger is broken; the others still count
                log.error("loop for %s: the %s trigger: %s", model, trigger.type, exc.message)
                reason = None
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
            count = self._ws.performance.labeled_count(model, since_ms)
            if count >= trigger.min_new:
                return f"labels: {count} new labeled predictions (≥ {trigger.min_new})"
            return None
        if isinstance(trigger, AlertTrigger):
            state = self._alert_state(trigger.rule)
            return f"alert: rule {trigger.rule!r} is firing" if state == "firing" else None
        raise InvalidInput(f"unknown trigger {trigger!r}")

    def _alert_state(self, rule: str) -> str:
        try:
            return str(self._ws.alerts.get(rule).state)
        except NotFound:
            raise InvalidInput(
                f"the policy names alert rule {rule!r}, which does not exist"
            ) from None

    # -- records ----------------------------------------------------------------------------

    def _champion_number(self, model: str, policy: LoopPolicy) -> int | None:
        try:
            number: int | None = self._ws.registry.get_model(model).aliases.get(policy.alias)
        except NotFound:  # the model was deleted under its policy
            return None
        return number

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
        expected: tuple[str, ...] = ACTIVE,
        expected_updated_ms: int | None = None,
    ) -> LoopRun:
        """Move the pass to ``state`` if it is still in an ``expected`` state (and, when
        given, was last updated at ``expected_updated_ms``); _Lost if it moved on elsewhere."""
        t = tables.loop_runs
        now = to_ms(self._now())
        with self._db.write() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == run_id).with_for_update()).first()
            assert row is not None
            if row.state not in expected or (
                expected_updated_ms is not None and row.updated_at != expected_updated_ms
            ):
                raise _Lost(run_id)
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
        expected: tuple[str, ...] = ACTIVE,
        expected_updated_ms: int | None = None,
    ) -> LoopRun:
        return self._move(
            run_id,
            state,
            note,
            detail=detail,
            audit=audit,
            ended=True,
            model=model,
            expected=expected,
            expected_updated_ms=expected_updated_ms,
        )

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC)


def _check_metric(metric: str, what: str) -> None:
    if metric not in HIGHER_IS_BETTER and metric not in LOWER_IS_BETTER:
        known = ", ".join(sorted(HIGHER_IS_BETTER | LOWER_IS_BETTER))
        raise InvalidInput(f"{what} {metric!r} is not a live metric; one of {known}")


def _default_metric(metrics: dict[str, float]) -> str:
    for name in ("accuracy", "rmse"):
        if name in metrics:
            return name
    return next(iter(metrics))
