"""Promotion: a version takes an alias (``champion``) only if it passes the model's gates,
computed on the policy's evaluation dataset against the version holding the alias now; and
rollback, in one call, to the version the alias held before. Every step is in the audit trail
(who, when, what, why) and the alias history."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field

from mloop.core.errors import GateFailed, InvalidInput
from mloop.registry import (
    DEFAULT_ALIAS,
    GateReport,
    ModelVersion,
    RegistryService,
    check_alias,
    check_gates,
    parse_gates,
)
from mloop.training.evaluator import Evaluation, EvaluationService


class PromotionResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    version: int
    alias: str
    previous: int | None  # the version that held the alias before
    forced: bool
    report: GateReport
    candidate: Evaluation | None = None  # None: the model has no policy, nothing evaluated
    champion: Evaluation | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return self.report.passed


class PromotionService:
    def __init__(self, registry: RegistryService, evaluation: EvaluationService) -> None:
        self._registry = registry
        self._evaluation = evaluation

    def check(self, name: str, version: int) -> PromotionResult:
        """Evaluate ``version`` against the policy's gates without moving anything."""
        return self._check(name, version, alias=None, forced=False)

    def _check(
        self, name: str, version: int, *, alias: str | None, forced: bool
    ) -> PromotionResult:
        policy = self._registry.get_policy(name)
        target = alias or (policy.alias if policy is not None else DEFAULT_ALIAS)
        check_alias(target)
        candidate = self._registry.get_version(name, version)
        current = self._registry.get_model(name).aliases.get(target)
        if policy is None or policy.alias != target:
            return PromotionResult(
                model=name,
                version=version,
                alias=target,
                previous=current,
                forced=forced,
                report=GateReport(results=[]),
            )
        gates = parse_gates(policy.gates)
        options: dict[str, Any] = {
            "sensitive": policy.sensitive,
            "slices": policy.slices,
            "latency_rows": policy.latency_rows,
        }
        mine = self._evaluation.evaluate(candidate, policy.dataset, **options)
        theirs = None
        if current is not None and current != version:
            champion: ModelVersion = self._registry.get_version(name, current)
            theirs = self._evaluation.evaluate(champion, policy.dataset, **options)
        report = check_gates(gates, mine.metrics, theirs.metrics if theirs else None)
        return PromotionResult(
            model=name,
            version=version,
            alias=target,
            previous=current,
            forced=forced,
            report=report,
            candidate=mine,
            champion=theirs,
        )

    def promote(
        self,
        name: str,
        version: int,
        *,
        reason: str | None = None,
        force: bool = False,
        alias: str | None = None,
    ) -> PromotionResult:
        """Move the policy's alias (``champion`` without a policy) to ``version`` if it passes
        every gate; otherwise raise GateFailed naming the failing gates (and record the
        refusal). ``force=True`` promotes anyway and needs a ``reason``."""
        if force and not (reason and reason.strip()):
            raise InvalidInput("a forced promotion needs a reason (it goes in the audit trail)")
        result = self._check(name, version, alias=alias, forced=force)
        if result.previous == version:
            raise InvalidInput(f"{name}@{result.alias} is version {version} already")
        detail: dict[str, Any] = {
            "gates": [r.model_dump(mode="json") for r in result.report.results],
            "forced": force,
            "evaluation": result.candidate.evaluation_id if result.candidate else None,
            "champion_evaluation": result.champion.evaluation_id if result.champion else None,
            "dataset": result.candidate.dataset if result.candidate else None,
        }
        if not result.passed and not force:
            self._registry.record_refusal(name, version, result.alias, reason, detail)
            failing = result.report.failed
            raise GateFailed(
                f"{name} version {version} was refused as {result.alias}: "
                f"{len(failing)} gate(s) failed: {result.report.summary()}",
                details={"gates": detail["gates"], "failed": [r.gate for r in failing]},
            )
        self._registry.set_alias(
            name, result.alias, version, reason=reason, action="promote", detail=detail
        )
        return result

    def rollback(
        self, name: str, alias: str = DEFAULT_ALIAS, *, reason: str | None = None
    ) -> ModelVersion:
        """Point ``alias`` back at the version it held before its last move."""
        return self._registry.rollback(name, alias, reason=reason)
