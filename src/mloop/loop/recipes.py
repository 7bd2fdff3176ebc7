"""Training recipes: how the loop trains a challenger.

A recipe is a function of one :class:`RecipeContext` returning the registered version it
trained (a :class:`~mloop.registry.ModelVersion` or its number). Register one by name::

    import mloop.loop

    @mloop.loop.recipe("churn-weekly")
    def churn_weekly(ctx: mloop.loop.RecipeContext) -> int:
        fresh = ctx.ws.features.training_set(...)        # a point-in-time training set
        return ctx.ws.training.train(fresh.version.ref, "churned", register=ctx.model).version

or name one by import path (``"mypkg.recipes:churn_weekly"``), which every process running the
loop (``mloop serve``, ``mloop loop run``) can find without registration.

``retrain`` is built in: it trains the champion's estimator again, on the same target and
input columns, on the newest version of its training dataset (or ``params.dataset``) — or, with
``params.training_set`` (``{entities: NAME, features: [...], timestamp_column: ...}``), on a
point-in-time training set built fresh from the feature store.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mloop.core.errors import InvalidInput, NotFound
from mloop.registry import ModelVersion

RecipeFunction = Callable[["RecipeContext"], "ModelVersion | int"]
_RECIPES: dict[str, RecipeFunction] = {}


@dataclass
class RecipeContext:
    """What a recipe gets: the workspace, the model it retrains, the champion it challenges
    (None when the alias is unset), why the loop runs, and the policy's recipe params."""

    ws: Any  # the Workspace (which composes this package, so not imported)
    model: str
    champion: ModelVersion | None
    reason: str
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)  # put them on the run you start


def recipe(name: str) -> Callable[[RecipeFunction], RecipeFunction]:
    """Register ``fn`` as the recipe ``name`` (in this process)."""
    if not name or ":" in name:
        raise InvalidInput(f"a recipe name must be non-empty and have no ':', got {name!r}")

    def register(fn: RecipeFunction) -> RecipeFunction:
        _RECIPES[name] = fn
        return fn

    return register


def registered_recipes() -> list[str]:
    return sorted(_RECIPES)


def find_recipe(name: str) -> RecipeFunction:
    """The recipe ``name``: registered, built in, or ``module:function``; InvalidInput says
    why it cannot be found."""
    if name in _RECIPES:
        return _RECIPES[name]
    if ":" not in name:
        known = ", ".join(registered_recipes())
        raise InvalidInput(
            f"no training recipe named {name!r} (registered: {known}); register it with "
            "@mloop.loop.recipe or name it by import path, 'module:function'"
        )
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInput(
            f"recipe {name!r}: module {module_name!r} cannot be imported: {exc}"
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise InvalidInput(f"recipe {name!r}: {module_name} has no function {attr!r}")
    return fn  # type: ignore[no-any-return]


def run_recipe(fn: RecipeFunction, ctx: RecipeContext) -> ModelVersion:
    """Run ``fn`` and return the version it registered for ``ctx.model``."""
    produced = fn(ctx)
    if isinstance(produced, ModelVersion):
        version = produced
    elif isinstance(produced, int) and not isinstance(produced, bool):
        version = ctx.ws.registry.get_version(ctx.model, produced)
    else:
        raise InvalidInput(
            f"a recipe must return the version it registered (a ModelVersion or its number), "
            f"got {type(produced).__name__}"
        )
    if version.name != ctx.model:
        raise InvalidInput(f"the recipe registered {version.ref}, not a version of {ctx.model!r}")
    if ctx.champion is not None and version.version == ctx.champion.version:
        raise InvalidInput(f"the recipe returned the champion itself ({version.ref})")
    return version


@recipe("retrain")
def retrain(ctx: RecipeContext) -> ModelVersion:
    """The champion's estimator, target and inputs, trained on the freshest data."""
    ws, params = ctx.ws, dict(ctx.params)
    base = ctx.champion
    if base is None:
        versions = ws.registry.versions(ctx.model)
        if not versions:
            raise NotFound(f"{ctx.model!r} has no version to take a configuration from")
        base = versions[-1]
    info = base.info
    target = params.pop("target", None) or info.get("target")
    if not target:
        raise InvalidInput(f"{base.ref} records no target; give recipe params.target")
    estimator = params.pop("model", None)
    if estimator is None and base.run_id:
        estimator = ws.tracking.get_run(base.run_id).params.get("estimator")
    spec = params.pop("training_set", None)
    if spec is not None:
        if not isinstance(spec, dict) or "entities" not in spec or "features" not in spec:
            raise InvalidInput("recipe params.training_set needs 'entities' and 'features'")
        entities = ws.datasets.load_polars(ws.datasets.get(str(spec["entities"])))
        built = ws.features.training_set(
            entities,
            list(spec["features"]),
            timestamp_column=spec.get("timestamp_column", "event_timestamp"),
            name=spec.get("name") or f"{ctx.model}_training_set",
        )
        dataset = built.version.ref
    else:
        dataset = str(params.pop("dataset", None) or str(info.get("dataset", "")).split("@")[0])
        if not dataset:
            raise InvalidInput(f"{base.ref} records no training dataset; give params.dataset")
        dataset = ws.datasets.get(dataset).ref  # the newest version, checked now
    features = params.pop("features", None) or info.get("features")
    result = ws.training.train(
        dataset,
        target,
        model=estimator or "sklearn.ensemble.HistGradientBoostingClassifier",
        params=params.pop("params", None),
        features=features,
        register=ctx.model,
        tags=ctx.tags,
        plots=bool(params.pop("plots", False)),
        onnx=bool(params.pop("onnx", False)),
        **params,
    )
    version: ModelVersion | None = result.model_version
    assert version is not None
    return version
