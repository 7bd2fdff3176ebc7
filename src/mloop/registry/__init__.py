"""Registered models, versions, aliases."""

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
    "FLAVOR_MLFLOW",
    "ModelVersion",
    "RegisteredModel",
    "RegistryService",
    "check_alias",
    "parse_model_ref",
]
