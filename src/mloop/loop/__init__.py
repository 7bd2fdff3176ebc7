"""The closed loop: retraining policies and the controller that carries them out —
trigger → train → gate → canary → promote or roll back."""

from mloop.loop.controller import (
    ACTIVE,
    ENDED,
    LoopRun,
    LoopService,
    LoopStatus,
    VariantTraffic,
)
from mloop.loop.policy import (
    AlertTrigger,
    Canary,
    DecayTrigger,
    DriftTrigger,
    Guardrails,
    LabelsTrigger,
    LoopPolicy,
    Recipe,
    ScheduleTrigger,
    parse_policy,
)
from mloop.loop.recipes import RecipeContext, find_recipe, recipe, registered_recipes

__all__ = [
    "ACTIVE",
    "ENDED",
    "AlertTrigger",
    "Canary",
    "DecayTrigger",
    "DriftTrigger",
    "Guardrails",
    "LabelsTrigger",
    "LoopPolicy",
    "LoopRun",
    "LoopService",
    "LoopStatus",
    "Recipe",
    "RecipeContext",
    "ScheduleTrigger",
    "VariantTraffic",
    "find_recipe",
    "parse_policy",
    "recipe",
    "registered_recipes",
]
