"""Registered models, versions, aliases."""

from mloop.registry.gates import Gate, GateReport, GateResult, check_gates, parse_gates
from mloop.registry.promotion import (
    DEFAULT_LATENCY_ROWS,
    AliasChange,
    PromotionPolicy,
    StoredEvaluation,
)
from mloop.registry.service import (
    DEFAULT_ALIAS,
    FLAVOR_MLFLOW,
    ModelVersion,
    RegisteredModel,
    RegistryService,
    check_alias,
    parse_model_ref,
)

__all__ = [
    "DEFAULT_ALIAS",
    "DEFAULT_LATENCY_ROWS",
    "FLAVOR_MLFLOW",
    "AliasChange",
    "Gate",
    "GateReport",
    "GateResult",
    "ModelVersion",
    "PromotionPolicy",
    "RegisteredModel",
    "RegistryService",
    "StoredEvaluation",
    "check_alias",
    "check_gates",
    "parse_gates",
    "parse_model_ref",
]
