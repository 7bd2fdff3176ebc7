"""A retraining policy: when the loop runs for a registered model, how it trains a challenger,
and how carefully the challenger is rolled out.

```yaml
triggers:                      # any one firing starts a pass of the loop
  - {type: drift, window: 1h, share: 0.3}          # share of drifted inputs in the newest window
  - {type: decay, window: 1h, tolerance: 0.05}     # live metric below the training-time one
  - {type: schedule, cron: "0 3 * * *"}            # cron syntax, UTC
  - {type: labels, min_new: 5000}                  # new labeled predictions since the last pass
  - {type: alert, rule: churn-accuracy}            # an alert rule is firing
recipe: {name: retrain, params: {dataset: churn}}  # a registered recipe, or "module:function"
canary: {percent: 10, requests: 2000, duration: 30m,
         guardrails: {max_error_rate: 0.01, max_latency_ratio: 2.0, max_metric_drop: 0.02}}
cooldown: 1h
```

The gates are the registry's: the model's promotion policy (``mloop models policy``) decides
whether a challenger may take the alias at all.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mloop.core.errors import InvalidInput
from mloop.data import parse_duration

_STRICT = ConfigDict(frozen=True, extra="forbid")


def _duration(value: Any, what: str) -> str:
    if isinstance(value, (int, float)):
        value = f"{value}s"
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a duration such as '15m', got {value!r}")
    try:
        parse_duration(value)
    except ValueError:
        raise ValueError(
            f"{what} must be a positive duration such as 90s, 15m, 6h or 2d, got {value!r}"
        ) from None
    return value


def seconds(text: str) -> float:
    return parse_duration(text)


class DriftTrigger(BaseModel):
    """Fires when the newest window (with at least ``min_rows`` predictions) has at least
    ``share`` of its inputs drifted against the training data."""

    model_config = _STRICT
    type: Literal["drift"]
    window: str = "1h"
    share: float = Field(default=0.3, gt=0, le=1)
    min_rows: int = Field(default=200, ge=1)

    _window = field_validator("window")(lambda v: _duration(v, "window"))


class DecayTrigger(BaseModel):
    """Fires when the live metric of the newest window with at least ``min_labels`` labels is
    worse than the training-time one by more than ``tolerance`` (relative)."""

    model_config = _STRICT
    type: Literal["decay"]
    window: str = "1h"
    metric: str | None = None  # the task's default: accuracy, or rmse
    tolerance: float = Field(default=0.05, ge=0, lt=1)
    min_labels: int = Field(default=50, ge=1)

    _window = field_validator("window")(lambda v: _duration(v, "window"))


class ScheduleTrigger(BaseModel):
    """Fires once at each time the cron expression (UTC) names."""

    model_config = _STRICT
    type: Literal["schedule"]
    cron: str

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (e.g. '0 3 * * *')")
        return value


class LabelsTrigger(BaseModel):
    """Fires when at least ``min_new`` labels arrived for the model since the last pass."""

    model_config = _STRICT
    type: Literal["labels"]
    min_new: int = Field(ge=1)


class AlertTrigger(BaseModel):
    """Fires while the named alert rule is firing."""

    model_config = _STRICT
    type: Literal["alert"]
    rule: str = Field(min_length=1)


Trigger = Annotated[
    DriftTrigger | DecayTrigger | ScheduleTrigger | LabelsTrigger | AlertTrigger,
    Field(discriminator="type"),
]


class Recipe(BaseModel):
    """How a challenger is trained: ``name`` is a recipe registered with
    :func:`mloop.loop.recipe` (``retrain`` is built in) or a ``module:function`` path."""

    model_config = _STRICT
    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class Guardrails(BaseModel):
    """What a canary must not do while it runs; any breach rolls it back."""

    model_config = _STRICT
    max_error_rate: float = Field(default=0.01, ge=0, le=1)  # and above the stable variant's
    max_latency_ratio: float | None = Field(default=3.0, gt=0)  # canary p99 / stable p99
    min_latency_ms: float = Field(default=5.0, ge=0)  # p99 below this never counts as slow
    metric: str | None = None  # live metric compared when labels arrive (task default)
    max_metric_drop: float | None = Field(default=0.02, ge=0)  # absolute, canary vs stable
    min_labels: int = Field(default=30, ge=1)  # labels each side needs before comparing


class Canary(BaseModel):
    """Send ``percent`` of traffic to the challenger until it has answered ``requests``
    requests and ``duration`` has passed (either may be left out, not both)."""

    model_config = _STRICT
    percent: float = Field(default=10.0, gt=0, lt=100)
    requests: int | None = Field(default=1000, ge=1)
    duration: str | None = None
    max_duration: str = "24h"  # a canary that never gets its traffic is rolled back after
    guardrails: Guardrails = Guardrails()

    @field_validator("duration", "max_duration")
    @classmethod
    def _durations(cls, value: str | None) -> str | None:
        return None if value is None else _duration(value, "a canary duration")

    @model_validator(mode="after")
    def _some_end(self) -> Canary:
        if self.requests is None and self.duration is None:
            raise ValueError("a canary needs 'requests', 'duration' or both to know when to end")
        if self.duration is not None and seconds(self.duration) >= seconds(self.max_duration):
            raise ValueError(
                f"the canary's duration ({self.duration}) must be shorter than its max_duration "
                f"({self.max_duration}), after which it is rolled back"
            )
        return self


class LoopPolicy(BaseModel):
    """A registered model's retraining policy."""

    model_config = _STRICT
    triggers: list[Trigger] = Field(min_length=1)
    recipe: Recipe
    alias: str = "champion"
    deployment: str | None = None  # where the canary runs; None: promote without a canary
    canary: Canary | None = Canary()
    cooldown: str = "1h"  # at least this long between passes (a failed pass too)
    # a pass still training (or gating) this long after its last step is taken for dead — its
    # controller stopped mid-way — and ends failed, so the next can start
    max_training: str = "6h"

    @field_validator("recipe", mode="before")
    @classmethod
    def _recipe(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("cooldown", "max_training")
    @classmethod
    def _durations(cls, value: str, info: ValidationInfo) -> str:
        return _duration(value, str(info.field_name))

    @property
    def cooldown_delta(self) -> timedelta:
        return timedelta(seconds=parse_duration(self.cooldown))


def parse_policy(spec: Any) -> LoopPolicy:
    """A policy from a mapping (a parsed YAML or JSON file); InvalidInput names what is
    wrong."""
    if isinstance(spec, LoopPolicy):
        return spec
    if not isinstance(spec, dict):
        raise InvalidInput(f"a loop policy must be a mapping, got {type(spec).__name__}")
    from pydantic import ValidationError

    try:
        return LoopPolicy.model_validate(spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "policy"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidInput(f"loop policy: {where}: {message}") from exc
