"""Promotion gates: parsed with ast (never eval-ed), checked against candidate and champion."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mloop.core.errors import InvalidInput
from mloop.registry import Gate, check_gates, parse_gates


def test_gates_compare_candidate_with_champion() -> None:
    gate = Gate("roc_auc >= champion.roc_auc - 0.005")
    assert gate.metrics == ["roc_auc"]
    assert gate.champion_metrics == ["roc_auc"]
    assert gate.check({"roc_auc": 0.80}, {"roc_auc": 0.804}).passed is True
    failed = gate.check({"roc_auc": 0.79}, {"roc_auc": 0.80})
    assert failed.passed is False
    assert failed.values == {"roc_auc": 0.79, "champion.roc_auc": 0.80}
    assert "roc_auc=0.79" in failed.message
    assert "champion.roc_auc=0.8" in failed.message


def test_absolute_gates_chains_boolean_and_functions() -> None:
    assert Gate("latency_p99_ms <= 5").check({"latency_p99_ms": 4.9}, None).passed is True
    assert Gate("latency_p99_ms <= 5").check({"latency_p99_ms": 5.1}, None).passed is False
    chain = Gate("0.7 <= accuracy <= 0.99")
    assert chain.check({"accuracy": 0.8}, None).passed is True
    assert chain.check({"accuracy": 0.995}, None).passed is False
    both = Gate("f1 > 0.5 and not (log_loss > 1)")
    assert both.check({"f1": 0.6, "log_loss": 0.9}, None).passed is True
    assert both.check({"f1": 0.6, "log_loss": 1.1}, None).passed is False
    either = Gate("rmse <= 1 or r2 >= 0.9")
    assert either.check({"rmse": 2.0, "r2": 0.95}, None).passed is True
    close = Gate("abs(rmse - champion.rmse) <= max(0.1, champion.rmse * 0.05)")
    assert close.check({"rmse": 2.05}, {"rmse": 2.0}).passed is True
    assert close.check({"rmse": 2.2}, {"rmse": 2.0}).passed is False


def test_quoted_metric_names() -> None:
    gate = Gate("`demographic_parity_difference[sex]` <= 0.1")
    assert gate.metrics == ["demographic_parity_difference[sex]"]
    assert gate.check({"demographic_parity_difference[sex]": 0.05}, None).passed is True
    assert gate.check({"demographic_parity_difference[sex]": 0.2}, None).passed is False


def test_no_champion_skips_champion_gates_and_missing_metrics_fail() -> None:
    report = check_gates(
        parse_gates(["roc_auc >= champion.roc_auc", "latency_p99_ms <= 5", "pr_auc >= 0.5"]),
        {"roc_auc": 0.7, "latency_p99_ms": 3.0},
        None,
    )
    first, second, third = report.results
    assert first.passed is None
    assert "no champion" in first.message
    assert second.passed is True
    assert third.passed is False
    assert "no value for pr_auc" in third.message
    assert not report.passed
    assert [r.gate for r in report.failed] == ["pr_auc >= 0.5"]
    assert "pr_auc >= 0.5" in report.summary()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "a comparison"),
        ("roc_auc >=", "not a valid expression"),
        ("roc_auc", "must be a comparison"),
        ("roc_auc + 1", "must be a comparison"),
        ("__import__('os').system('true') == 0", "may be called"),
        ("roc_auc.real >= 0", "champion.METRIC"),
        ("champion >= 1", "champion.METRIC"),
        ("roc_auc >= 'high'", "not a number"),
        ("roc_auc >= True", "not a number"),
        ("roc_auc in [1, 2]", "unsupported comparison"),
        ("roc_auc ** 2 >= 0.5", "unsupported operator"),
        ("[x for x in ()] == []", "not allowed"),
        ("roc_auc >= " + "1 + " * 200 + "1", "longer than"),
    ],
)
def test_bad_gates_are_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        Gate(text)


def test_a_gate_given_twice_is_refused() -> None:
    with pytest.raises(InvalidInput, match="given twice"):
        parse_gates(["f1 >= 0.5", " f1 >= 0.5 "])


def test_division_by_zero_fails_the_gate() -> None:
    result = Gate("roc_auc / champion.roc_auc >= 0.99").check({"roc_auc": 0.5}, {"roc_auc": 0})
    assert result.passed is False
    assert "division by zero" in result.message


@given(
    candidate=st.floats(-1e6, 1e6, allow_nan=False),
    champion=st.floats(-1e6, 1e6, allow_nan=False),
    margin=st.floats(0, 100, allow_nan=False),
)
def test_gate_agrees_with_python_arithmetic(
    candidate: float, champion: float, margin: float
) -> None:
    gate = Gate(f"score >= champion.score - {margin!r}")
    expected = candidate >= champion - margin
    assert gate.check({"score": candidate}, {"score": champion}).passed is expected
