"""The model card: its content, its caveats, and user text escaped in Markdown and HTML."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from mloop import InvalidInput
from mloop.core.schema import Column
from mloop.models import Signature
from mloop.training.card import NOT_STATED, model_card
from mloop.training.evaluation import FairnessReport, fairness_report, slice_metrics
from mloop.training.explain import Explanation

EVIL = '<script>alert("x")</script>'
METRICS = {"accuracy": 0.8731, "roc_auc": 0.91234, "f1": 0.5}


def _fairness() -> FairnessReport:
    pytest.importorskip("fairlearn")
    y_true = np.array(["yes", "yes", "no", "no", "yes", "yes", "no", "no"])
    y_pred = np.array(["yes", "no", "no", "no", "yes", "yes", "yes", "no"])
    sex = np.array(["F", "F", "F", "F", "M", "M", "M", "M"])
    return fairness_report(y_true, y_pred, {"sex": sex}, "yes")  # DP and EO differences 0.5


def _signature() -> Signature:
    return Signature(
        inputs=[Column(name="age", type="float"), Column(name="sex", type="string")],
        target="approved",
        target_type="string",
        task="classification",
        classes=["no", "yes"],
    )


def test_card_holds_the_numbers_in_both_renderings() -> None:
    card = model_card(
        "credit",
        version=3,
        estimator="sklearn.ensemble.HistGradientBoostingClassifier",
        created=datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
        run_id="run-123",
        dataset="loans@2",
        training_rows=800,
        evaluation_rows=200,
        signature=_signature(),
        metrics=METRICS,
        fairness=_fairness(),
        explanation={"sex": 0.05, "age": 0.3},
        intended_use="Pre-screening loan applications.",
        limitations="Trained on one country's data.",
    )
    assert card.task == "classification"
    assert [f.name for f in card.features] == ["age", "sex"]
    assert [f.name for f in card.top_features] == ["age", "sex"]
    for text in (card.to_markdown(), card.to_html()):
        for needle in (
            "credit",
            "HistGradientBoostingClassifier",
            "run-123",
            "loans@2",
            "800",
            "0.8731",
            "0.9123",
            "2026-11-24T12:00:00+00:00",
            "Pre-screening loan applications.",
            "Trained on one country",
            "demographic_parity_difference[sex]",
            "0.3333",  # the demographic parity ratio, 0.25 / 0.75
        ):
            assert needle in text, needle
    md = card.to_markdown()
    assert "| accuracy | 0.8731 |" in md
    assert "| demographic_parity_difference | 0.5 |" in md
    # the fairness gap of 0.5 is above the default threshold of 0.1
    assert any("Fairness gap on sex" in c for c in card.caveats)
    assert card.model_dump(mode="json")["metrics"] == METRICS


def test_user_text_is_escaped_everywhere() -> None:
    frame = pd.DataFrame({"city": pd.Series([EVIL] * 40 + ["ok"] * 40, dtype=object)})
    y = np.array([0, 1] * 40)
    slices = slice_metrics(frame, y, y, None, [0, 1], "classification", ["city"])
    card = model_card(
        EVIL,
        description=EVIL,
        features=[(EVIL, "string")],
        metrics={"accuracy": 1.0},
        slices=slices,
        explanation={EVIL: 1.0},
        intended_use=EVIL,
        limitations=f"a | b {EVIL}",
    )
    html = card.to_html()
    md = card.to_markdown()
    assert "<script" not in html
    assert "<script" not in md
    assert "&lt;script&gt;" in html
    assert "&lt;script&gt;" in md
    assert "a | b" in md  # prose keeps its pipes; table cells escape them
    # self-contained: no scripts, stylesheets, images or frames fetched from elsewhere
    assert not re.search(r"<(script|link|img|iframe)\b|\bsrc=|@import", html)
    assert html.startswith("<!DOCTYPE html>")
    assert "<svg" in html  # the importance bars


def test_missing_sections_say_so() -> None:
    card = model_card("bare", task="regression")
    md = card.to_markdown()
    assert f"## Intended use\n\n{NOT_STATED}\n" in md
    assert f"## Limitations\n\n{NOT_STATED}\n" in md
    assert f"| Training dataset | {NOT_STATED} |" in md
    assert "No metrics recorded." in md
    assert "No slices evaluated." in md
    assert "No explanations computed." in md
    assert "The model's limitations were not stated by its authors." in card.caveats
    # a regressor has no fairness report, and no caveat asking for one
    assert not any("fairness" in c.lower() for c in card.caveats)
    assert (
        "No fairness report: no sensitive columns were declared."
        in model_card("clf", task="classification").caveats
    )


def test_caveats_are_derived_from_slices_and_the_hold_out() -> None:
    rng = np.random.default_rng(0)
    region = np.array(["north"] * 60 + ["south"] * 30 + ["east"] * 12, dtype=object)
    y = rng.choice([0, 1], size=len(region))
    pred = y.copy()
    pred[60:90] = 1 - pred[60:90]  # wrong on every southern row
    frame = pd.DataFrame({"region": pd.Series(region, dtype=object)})
    slices = slice_metrics(frame, y, pred, None, [0, 1], "classification", ["region"])
    card = model_card(
        "m",
        task="classification",
        evaluation_rows=len(y),
        metrics={"accuracy": float(np.mean(y == pred))},
        slices=slices,
        limitations="none known",
        small_slice_rows=20,
    )
    small = [c for c in card.caveats if "fewer than 20 rows" in c]
    assert len(small) == 1
    assert "region=east (12 rows)" in small[0]
    worse = [c for c in card.caveats if "accuracy is more than 10% worse" in c]
    assert len(worse) == 1
    assert "region=south (accuracy 0)" in worse[0]
    assert "north" not in worse[0]
    assert not any("held-out rows" in c for c in card.caveats)  # 102 rows is enough
    assert any("held-out rows" in c for c in model_card("m", evaluation_rows=50).caveats)


def test_card_refuses_bad_input() -> None:
    with pytest.raises(InvalidInput, match="name"):
        model_card("  ")
    with pytest.raises(InvalidInput, match="task must be"):
        model_card("m", task="ranking")
    with pytest.raises(InvalidInput, match="Column or a"):
        model_card("m", features=["age"])  # type: ignore[arg-type]


def test_card_shows_an_explanations_top_features() -> None:
    explanation = Explanation(
        method="tree",
        explainer="shap.TreeExplainer",
        output_space="log_odds",
        task="classification",
        features=["a", "b", "c"],
        rows=np.arange(4),
        values=np.array([[0.1, -2.0, 0.0], [0.3, 1.0, 0.0], [-0.1, 1.0, 0.1], [0.1, 0.0, 0.1]]),
        base_values=np.zeros(4),
        data=pd.DataFrame({"a": [1, 2, 3, 4], "b": [0, 0, 1, 1], "c": [5, 5, 5, 5]}),
    )
    card = model_card("m", explanation=explanation, top_features=2)
    assert [(f.name, f.mean_abs_shap) for f in card.top_features] == [("b", 1.0), ("a", 0.15)]
    assert (card.explanation_method, card.explanation_output, card.explained_rows) == (
        "tree",
        "log_odds",
        4,
    )
    md = card.to_markdown()
    assert "SHAP values (tree, in log_odds) over 4 rows" in md
    assert "| b | 1 |" in md
    assert "| c |" not in md
