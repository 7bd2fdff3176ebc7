"""A model card: what the model is, what it was trained on, how well it does and where it may not.

:func:`model_card` gathers plain values (no database) into a :class:`ModelCard`, derives caveats
from them, and renders Markdown or one self-contained HTML page (inline CSS and SVG, no scripts,
no external assets). Every piece of text that came from a user is escaped in both.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from mloop.core.errors import InvalidInput
from mloop.core.schema import Column
from mloop.training.evaluation import FairnessReport, SliceResult

if TYPE_CHECKING:
    from mloop.models import Signature
    from mloop.training.explain import Explanation

NOT_STATED = "not stated"
DEFAULT_SMALL_SLICE_ROWS = 30
DEFAULT_FAIRNESS_THRESHOLD = 0.1
DEFAULT_SLICE_GAP = 0.1  # relative: a slice 10% worse than the whole hold-out
DEFAULT_TOP_FEATURES = 10
SMALL_EVALUATION_ROWS = 100
MAX_CAVEAT_ITEMS = 5
# the metric a slice is compared on, and whether higher is better
PRIMARY_METRIC = {"classification": ("accuracy", True), "regression": ("rmse", False)}


class FeatureInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    type: str


class FeatureImportance(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    mean_abs_shap: float


class ModelCard(BaseModel):
    """The card's content, JSON-ready (``model_dump(mode="json")``), and its two renderings."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str | None = None
    description: str | None = None
    estimator: str | None = None
    task: str | None = None
    created: datetime | None = None
    run_id: str | None = None
    dataset: str | None = None
    training_rows: int | None = None
    evaluation_rows: int | None = None
    target: str | None = None
    classes: list[Any] | None = None
    features: list[FeatureInfo] = []
    metrics: dict[str, float] = {}
    slices: list[SliceResult] = []
    fairness: FairnessReport | None = None
    explanation_method: str | None = None
    explanation_output: str | None = None
    explained_rows: int | None = None
    top_features: list[FeatureImportance] = []
    intended_use: str | None = None
    limitations: str | None = None
    caveats: list[str] = []
    small_slice_rows: int = DEFAULT_SMALL_SLICE_ROWS
    fairness_threshold: float = DEFAULT_FAIRNESS_THRESHOLD

    @property
    def title(self) -> str:
        return f"{self.name} v{self.version}" if self.version else self.name

    def to_markdown(self) -> str:
        return _markdown(self)

    def to_html(self) -> str:
        return _html(self)


def _features(
    features: Sequence[Column] | Mapping[str, str] | Sequence[tuple[str, str]] | None,
) -> list[FeatureInfo]:
    if features is None:
        return []
    if isinstance(features, Mapping):
        return [FeatureInfo(name=str(k), type=str(v)) for k, v in features.items()]
    out = []
    for f in features:
        if isinstance(f, Column):
            out.append(FeatureInfo(name=f.name, type=f.type))
        elif isinstance(f, tuple) and len(f) == 2:
            out.append(FeatureInfo(name=str(f[0]), type=str(f[1])))
        else:
            raise InvalidInput(f"a feature is a Column or a (name, type) pair, not {f!r}")
    return out


def _top(
    explanation: Explanation | Mapping[str, float] | None, k: int
) -> tuple[list[FeatureImportance], str | None, str | None, int | None]:
    if explanation is None:
        return [], None, None, None
    if isinstance(explanation, Mapping):
        pairs = sorted(explanation.items(), key=lambda t: (-float(t[1]), str(t[0])))
        return (
            [FeatureImportance(name=str(n), mean_abs_shap=float(v)) for n, v in pairs[:k]],
            (None),
            None,
            None,
        )
    top = [FeatureImportance(name=n, mean_abs_shap=v) for n, v in explanation.top(k)]
    return top, explanation.method, explanation.output_space, len(explanation.rows)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _caveats(card: ModelCard, slice_gap: float) -> list[str]:
    out: list[str] = []
    if card.evaluation_rows is not None and card.evaluation_rows < SMALL_EVALUATION_ROWS:
        out.append(
            f"The metrics come from {card.evaluation_rows} held-out rows; with fewer than "
            f"{SMALL_EVALUATION_ROWS} they are noisy."
        )
    small = [s for s in card.slices if s.rows < card.small_slice_rows]
    if small:
        listed = ", ".join(f"{s.column}={s.value} ({s.rows} rows)" for s in small[:5])
        more = f" and {len(small) - 5} more" if len(small) > 5 else ""
        out.append(
            f"{len(small)} slice(s) have fewer than {card.small_slice_rows} rows, so their "
            f"metrics are noisy: {listed}{more}."
        )
    primary = PRIMARY_METRIC.get(card.task or "")
    if primary and primary[0] in card.metrics:
        metric, higher_better = primary
        overall = card.metrics[metric]
        worse = []
        for s in card.slices:
            value = s.metrics.get(metric)
            if value is None or s.rows < card.small_slice_rows:
                continue
            gap = (overall - value) if higher_better else (value - overall)
            if gap > slice_gap * abs(overall) and gap > 0:
                worse.append((gap, s, value))
        worse.sort(key=lambda t: -t[0])
        if worse:
            listed = ", ".join(
                f"{s.column}={s.value} ({metric} {_fmt(v)})" for _, s, v in worse[:5]
            )
            out.append(
                f"{metric} is more than {slice_gap:.0%} worse than overall ({_fmt(overall)}) "
                f"on {len(worse)} slice(s): {listed}."
            )
    if card.task == "classification" and card.fairness is None:
        out.append("No fairness report: no sensitive columns were declared.")
    if card.fairness is not None:
        for c in card.fairness.columns:
            gaps = [
                f"{key.replace('_', ' ')} {_fmt(getattr(c, key))}"
                for key in ("demographic_parity_difference", "equalized_odds_difference")
                if getattr(c, key) > card.fairness_threshold
            ]
            if gaps:
                out.append(
                    f"Fairness gap on {c.column}: {' and '.join(gaps)}, above the threshold "
                    f"of {_fmt(card.fairness_threshold)}."
                )
            lopsided = [g.group for g in c.groups if g.positives == 0 or g.negatives == 0]
            if lopsided:
                out.append(
                    f"In {c.column}, group(s) {', '.join(lopsided[:MAX_CAVEAT_ITEMS])} have no "
                    "positive or no negative examples; their TPR or FPR is undefined and "
                    "counted as 0."
                )
    if card.limitations is None:
        out.append("The model's limitations were not stated by its authors.")
    return out


def model_card(
    name: str,
    *,
    version: str | int | None = None,
    description: str | None = None,
    estimator: str | None = None,
    task: str | None = None,
    created: datetime | None = None,
    run_id: str | None = None,
    dataset: str | None = None,
    training_rows: int | None = None,
    evaluation_rows: int | None = None,
    signature: Signature | None = None,
    features: Sequence[Column] | Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    target: str | None = None,
    classes: Sequence[Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    slices: Sequence[SliceResult] | None = None,
    fairness: FairnessReport | None = None,
    explanation: Explanation | Mapping[str, float] | None = None,
    intended_use: str | None = None,
    limitations: str | None = None,
    top_features: int = DEFAULT_TOP_FEATURES,
    small_slice_rows: int = DEFAULT_SMALL_SLICE_ROWS,
    fairness_threshold: float = DEFAULT_FAIRNESS_THRESHOLD,
    slice_gap: float = DEFAULT_SLICE_GAP,
) -> ModelCard:
    """A card from what is known about a model version; what is not given is left out (or,
    for intended use and limitations, shown as "not stated").

    ``signature`` fills ``features``, ``target``, ``task`` and ``classes`` unless given.
    ``explanation`` is an :class:`~mloop.training.explain.Explanation` or a mapping of column
    to mean |SHAP| (its ``top_features`` largest are shown). Caveats are derived: a small
    hold-out, slices under ``small_slice_rows`` rows, slices whose accuracy (classification) or
    RMSE (regression) is more than ``slice_gap`` (relative) worse than overall, demographic
    parity or equalized odds differences above ``fairness_threshold``, groups without
    positives or negatives, no fairness report for a classifier, limitations not stated.
    """
    if not name or not name.strip():
        raise InvalidInput("a model card needs the model's name")
    if top_features < 0 or small_slice_rows < 0 or fairness_threshold < 0 or slice_gap < 0:
        raise InvalidInput(
            "top_features, small_slice_rows, fairness_threshold and slice_gap must not be negative"
        )
    if task is not None and task not in PRIMARY_METRIC:
        raise InvalidInput(f"task must be 'classification' or 'regression', not {task!r}")
    if signature is not None:
        features = signature.inputs if features is None else features
        target = target or signature.target
        task = task or signature.task
        classes = classes if classes is not None else signature.classes
    top, method, output, explained = _top(explanation, top_features)
    card = ModelCard(
        name=name,
        version=None if version is None else str(version),
        description=description,
        estimator=estimator,
        task=task,
        created=created,
        run_id=run_id,
        dataset=dataset,
        training_rows=training_rows,
        evaluation_rows=evaluation_rows,
        target=target,
        classes=None if classes is None else list(classes),
        features=_features(features),
        metrics={k: float(v) for k, v in (metrics or {}).items()},
        slices=list(slices or []),
        fairness=fairness,
        explanation_method=method,
        explanation_output=output,
        explained_rows=explained,
        top_features=top,
        intended_use=intended_use,
        limitations=limitations,
        small_slice_rows=small_slice_rows,
        fairness_threshold=fairness_threshold,
    )
    return card.model_copy(update={"caveats": _caveats(card, slice_gap)})


# ---------------------------------------------------------------------------------------------
# Markdown


def _md(text: Any) -> str:
    """User text for Markdown: HTML-escaped (a renderer passes raw HTML through)."""
    return html.escape(str(text), quote=False)


def _cell(text: Any) -> str:
    return _md(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = [
        "| " + " | ".join(_cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(_cell(_fmt(v)) for v in row) + " |" for row in rows]
    return lines


def _model_rows(card: ModelCard) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [("Name", card.name)]
    if card.version is not None:
        rows.append(("Version", card.version))
    for label, value in (
        ("Estimator", card.estimator),
        ("Task", card.task),
        ("Created", card.created.isoformat() if card.created else None),
        ("Run", card.run_id),
        ("Target", card.target),
        ("Classes", ", ".join(map(str, card.classes)) if card.classes else None),
    ):
        if value is not None:
            rows.append((label, value))
    return rows


def _data_rows(card: ModelCard) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [("Training dataset", card.dataset or NOT_STATED)]
    if card.training_rows is not None:
        rows.append(("Training rows", card.training_rows))
    if card.evaluation_rows is not None:
        rows.append(("Evaluation (hold-out) rows", card.evaluation_rows))
    return rows


def _slice_rows(card: ModelCard) -> tuple[list[str], list[list[Any]]]:
    names: list[str] = []
    for s in card.slices:
        names.extend(k for k in s.metrics if k not in names)
    rows = [
        [s.column, s.value, s.rows, *(s.metrics.get(k, "") for k in names)] for s in card.slices
    ]
    return ["column", "slice", "rows", *names], rows


def _group_rows(card: ModelCard) -> list[tuple[str, list[list[Any]]]]:
    assert card.fairness is not None
    return [
        (
            c.column,
            [
                [
                    g.group,
                    g.count,
                    g.selection_rate,
                    g.true_positive_rate,
                    g.false_positive_rate,
                    g.accuracy,
                ]
                for g in c.groups
            ],
        )
        for c in card.fairness.columns
    ]


GROUP_HEADER = ["group", "rows", "selection rate", "TPR", "FPR", "accuracy"]


def _markdown(card: ModelCard) -> str:
    out = [f"# Model card: {_md(card.title)}", ""]
    if card.description:
        out += [_md(card.description), ""]
    out += ["## Model", "", *_md_table(["", ""], _model_rows(card)), ""]
    out += ["## Data", "", *_md_table(["", ""], _data_rows(card)), ""]
    if card.features:
        out += [
            "Features:",
            "",
            *_md_table(["feature", "type"], [(f.name, f.type) for f in card.features]),
            "",
        ]
    out += ["## Metrics", ""]
    if card.metrics:
        out += [*_md_table(["metric", "value"], sorted(card.metrics.items())), ""]
    else:
        out += ["No metrics recorded.", ""]
    out += ["## Slices", ""]
    if card.slices:
        header, rows = _slice_rows(card)
        out += [*_md_table(header, rows), ""]
    else:
        out += ["No slices evaluated.", ""]
    out += ["## Fairness", ""]
    if card.fairness is not None:
        out += [
            f"Positive label: {_md(card.fairness.positive_label)}; {card.fairness.rows} rows.",
            "",
            *_md_table(["measure", "value"], sorted(card.fairness.summary().items())),
            "",
        ]
        for column, rows in _group_rows(card):
            out += [f"### {_md(column)}", "", *_md_table(GROUP_HEADER, rows), ""]
    else:
        out += ["No fairness report (no sensitive columns declared).", ""]
    out += ["## Explanations", ""]
    if card.top_features:
        how = (
            f"SHAP values ({_md(card.explanation_method)}, in {_md(card.explanation_output)}) "
            f"over {card.explained_rows} rows; mean |SHAP| per input column."
            if card.explanation_method
            else "Mean |SHAP| per input column."
        )
        out += [
            how,
            "",
            *_md_table(
                ["feature", "mean |SHAP|"], [(f.name, f.mean_abs_shap) for f in card.top_features]
            ),
            "",
        ]
    else:
        out += ["No explanations computed.", ""]
    out += ["## Intended use", "", _md(card.intended_use or NOT_STATED), ""]
    out += ["## Limitations", "", _md(card.limitations or NOT_STATED), ""]
    out += ["## Caveats", ""]
    out += [f"- {_md(c)}" for c in card.caveats] or ["None derived from the data."]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:960px;
margin:2rem auto;padding:0 1rem;color:#1d232a;line-height:1.45}
h1{font-size:1.6rem;border-bottom:2px solid #e3e7ec;padding-bottom:.4rem}
h2{font-size:1.2rem;margin-top:2rem}h3{font-size:1rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #d8dde3;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f5f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.caveats li{margin:.2rem 0}.muted{color:#68737d}.prose{white-space:pre-wrap}
svg text{font:12px system-ui,sans-serif;fill:#1d232a}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_e(_fmt(v))}</td>'
            if isinstance(v, int | float) and not isinstance(v, bool)
            else f"<td>{_e(v)}</td>"
            for v in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kv_table(rows: Sequence[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_fmt(v))}</td></tr>" for k, v in rows)
    return f"<table><tbody>{body}</tbody></table>"


def _bars(items: Sequence[tuple[str, float]], *, title: str) -> str:
    """A horizontal bar chart as inline SVG."""
    if not items:
        return ""
    top = max((abs(v) for _, v in items), default=0.0) or 1.0
    label_w, bar_w, row_h = 180, 320, 20
    height = row_h * len(items) + 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{label_w + bar_w + 80}" '
        f'height="{height}" aria-label="{_e(title)}"><title>{_e(title)}</title>'
    ]
    for i, (name, value) in enumerate(items):
        y = 4 + i * row_h
        width = max(1.0, bar_w * abs(value) / top)
        label = name if len(name) <= 26 else name[:25] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{_e(label)}</text>'
            f'<rect x="{label_w}" y="{y + 2}" width="{width:.1f}" height="{row_h - 6}" '
            f'fill="#4a7bd0"></rect>'
            f'<text x="{label_w + width + 4:.1f}" y="{y + 14}">{_e(_fmt(value))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _html(card: ModelCard) -> str:
    body: list[str] = [f"<h1>Model card: {_e(card.title)}</h1>"]
    if card.description:
        body.append(f'<p class="prose">{_e(card.description)}</p>')
    body += ["<h2>Model</h2>", _kv_table(_model_rows(card))]
    body += ["<h2>Data</h2>", _kv_table(_data_rows(card))]
    if card.features:
        body.append("<p>Features:</p>")
        body.append(_html_table(["feature", "type"], [(f.name, f.type) for f in card.features]))
    body.append("<h2>Metrics</h2>")
    body.append(
        _html_table(["metric", "value"], sorted(card.metrics.items()))
        if card.metrics
        else '<p class="muted">No metrics recorded.</p>'
    )
    body.append("<h2>Slices</h2>")
    if card.slices:
        header, rows = _slice_rows(card)
        body.append(_html_table(header, rows))
    else:
        body.append('<p class="muted">No slices evaluated.</p>')
    body.append("<h2>Fairness</h2>")
    if card.fairness is not None:
        body.append(
            f"<p>Positive label: <code>{_e(card.fairness.positive_label)}</code>; "
            f"{card.fairness.rows} rows.</p>"
        )
        body.append(_html_table(["measure", "value"], sorted(card.fairness.summary().items())))
        for column, rows in _group_rows(card):
            body.append(f"<h3>{_e(column)}</h3>")
            body.append(_html_table(GROUP_HEADER, rows))
            body.append(
                _bars([(str(r[0]), float(r[2])) for r in rows], title=f"selection rate by {column}")
            )
    else:
        body.append('<p class="muted">No fairness report (no sensitive columns declared).</p>')
    body.append("<h2>Explanations</h2>")
    if card.top_features:
        if card.explanation_method:
            body.append(
                f"<p>SHAP values ({_e(card.explanation_method)}, in "
                f"{_e(card.explanation_output)}) over {card.explained_rows} rows; mean |SHAP| "
                "per input column.</p>"
            )
        body.append(
            _bars(
                [(f.name, f.mean_abs_shap) for f in card.top_features],
                title="mean |SHAP| per input column",
            )
        )
    else:
        body.append('<p class="muted">No explanations computed.</p>')
    body += [
        "<h2>Intended use</h2>",
        f'<p class="prose">{_e(card.intended_use or NOT_STATED)}</p>',
        "<h2>Limitations</h2>",
        f'<p class="prose">{_e(card.limitations or NOT_STATED)}</p>',
        "<h2>Caveats</h2>",
    ]
    if card.caveats:
        items = "".join(f"<li>{_e(c)}</li>" for c in card.caveats)
        body.append(f'<ul class="caveats">{items}</ul>')
    else:
        body.append('<p class="muted">None derived from the data.</p>')
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Model card: {_e(card.title)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
