"""Dataset against dataset: every column's drift from compact summaries, a multivariate score,
and a light HTML report (summaries only: no row of either dataset is embedded)."""

from __future__ import annotations

import html
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from mloop.core.errors import InvalidInput
from mloop.core.lazy import lazy_module
from mloop.monitoring.drift import ColumnDrift
from mloop.monitoring.summary import (
    CategoricalSummary,
    NumericSummary,
    Profile,
    Summary,
    Thresholds,
    column_kind,
    compare,
)

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
else:
    np = lazy_module("numpy")
    pl = lazy_module("polars")

DATASET_DRIFT_SHARE = 0.5
DOMAIN_AUC = 0.55  # a classifier telling the two apart this well: multivariate drift
DOMAIN_SAMPLE = 20_000  # rows of each side the domain classifier sees, at most
PARALLEL_ROWS = 100_000  # frames at least this tall are summarised a column per thread


class MultivariateDrift(BaseModel):
    """A classifier trained to tell reference rows from current rows: its cross-validated ROC
    AUC is 0.5 when it cannot (no drift) and 1 when every row gives itself away."""

    model_config = ConfigDict(frozen=True)

    method: str = "domain_classifier_auc"
    statistic: float
    threshold: float
    drifted: bool
    rows: int
    top_columns: list[dict[str, Any]]


class DatasetDriftReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    reference: str
    current: str
    reference_rows: int
    current_rows: int
    columns: list[ColumnDrift]
    drifted_columns: list[str]
    share_drifted: float
    dataset_drift: bool
    multivariate: MultivariateDrift | None
    skipped_columns: list[str]
    thresholds: dict[str, Any]
    seconds: float


def _map(fn: Any, items: list[Any], rows: int) -> list[Any]:
    if rows < PARALLEL_ROWS or len(items) < 2:
        return [fn(item) for item in items]
    # NumPy's searchsorted and Polars' value counts leave the interpreter lock
    with ThreadPoolExecutor(max_workers=min(len(items), os.cpu_count() or 1)) as pool:
        return list(pool.map(fn, items))


def _schema(frame: pl.DataFrame | pl.LazyFrame) -> Any:
    return frame.collect_schema() if isinstance(frame, pl.LazyFrame) else frame.schema


def _height(frame: pl.DataFrame | pl.LazyFrame) -> int:
    if isinstance(frame, pl.LazyFrame):
        return int(frame.select(pl.len()).collect().item())
    return frame.height


def _column(frame: pl.DataFrame | pl.LazyFrame, name: str) -> pl.Series:
    """One column; from a lazy frame (a Parquet scan), only that column is read."""
    if isinstance(frame, pl.LazyFrame):
        return frame.select(name).collect().get_column(name)
    return frame.get_column(name)


def profile_frame(frame: pl.DataFrame | pl.LazyFrame, columns: list[str]) -> Profile:
    """The reference's profile, a column per thread on a tall frame."""
    height = _height(frame)

    def one(name: str) -> Profile:
        return Profile.from_frame(_column(frame, name).to_frame())

    parts = _map(one, columns, height)
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part.columns)
    return Profile(merged, height)


def summarize_frame(profile: Profile, frame: pl.DataFrame | pl.LazyFrame) -> Summary:
    summary = profile.window()
    schema = _schema(frame)
    missing = [name for name in summary.columns if name not in schema]
    if missing:
        raise InvalidInput(f"the current data lacks column(s) {missing}")
    height = _height(frame)

    def one(name: str) -> None:
        summary.columns[name].update(_column(frame, name))

    _map(one, list(summary.columns), height)
    summary.rows = height
    return summary


def comparable_columns(
    reference: pl.DataFrame | pl.LazyFrame,
    current: pl.DataFrame | pl.LazyFrame,
    columns: list[str] | None,
) -> tuple[list[str], list[str]]:
    """The columns to compare (named, or every column both have) and those skipped: of a type
    drift does not measure, or of kinds that differ between the two."""
    ref_schema, cur_schema = _schema(reference), _schema(current)
    if columns:
        for side, schema in (("reference", ref_schema), ("current", cur_schema)):
            absent = [c for c in columns if c not in schema]
            if absent:
                raise InvalidInput(f"the {side} has no column(s) {absent}")
        names = list(columns)
    else:
        names = [c for c in ref_schema if c in cur_schema]
        if not names:
            raise InvalidInput("the reference and the current data share no column")
    chosen, skipped = [], []
    for name in names:
        ref_kind = column_kind(ref_schema[name])
        cur_kind = column_kind(cur_schema[name])
        if ref_kind is None or ref_kind != cur_kind:
            if columns:
                raise InvalidInput(
                    f"column {name!r} cannot be compared: {ref_schema[name]} in the "
                    f"reference, {cur_schema[name]} in the current data"
                )
            skipped.append(name)
        else:
            chosen.append(name)
    if not chosen:
        raise InvalidInput(f"no column of a type drift measures (skipped: {skipped})")
    return chosen, skipped


def compare_frames(
    reference: pl.DataFrame | pl.LazyFrame,
    current: pl.DataFrame | pl.LazyFrame,
    *,
    columns: list[str] | None = None,
    thresholds: Thresholds | None = None,
    multivariate: bool = False,
    reference_name: str = "reference",
    current_name: str = "current",
    html_path: str | os.PathLike[str] | None = None,
) -> DatasetDriftReport:
    """Every column's drift (and, when asked, the domain classifier's score); with
    ``html_path``, the HTML report written there too. Lazy frames (``pl.scan_parquet``) are
    read a column at a time: memory holds one column of each side, not the data."""
    import time

    started = time.perf_counter()
    ref_rows, cur_rows = _height(reference), _height(current)
    if ref_rows == 0 or cur_rows == 0:
        raise InvalidInput(
            f"cannot compare: the {'reference' if ref_rows == 0 else 'current data'} has no rows"
        )
    limits = thresholds or Thresholds()
    chosen, skipped = comparable_columns(reference, current, columns)
    unknown = set(limits.columns) - set(chosen)
    if unknown:
        raise InvalidInput(f"thresholds name column(s) not compared: {sorted(unknown)}")
    profile = profile_frame(reference, chosen)
    summary = summarize_frame(profile, current)
    results = compare(profile, summary, limits)
    drifted = [r.column for r in results if r.drifted]
    share = len(drifted) / max(len(results), 1)
    domain = domain_classifier(reference, current, chosen) if multivariate else None
    report = DatasetDriftReport(
        reference=reference_name,
        current=current_name,
        reference_rows=ref_rows,
        current_rows=cur_rows,
        columns=results,
        drifted_columns=drifted,
        share_drifted=share,
        dataset_drift=share >= DATASET_DRIFT_SHARE,
        multivariate=domain,
        skipped_columns=skipped,
        thresholds={
            "small_sample_rows": limits.small_sample,
            "p_value": limits.p_value,
            "effect_size": limits.effect_size,
            "dataset_drift_share": DATASET_DRIFT_SHARE,
            "domain_classifier_auc": DOMAIN_AUC,
            "columns": limits.columns,
        },
        seconds=time.perf_counter() - started,
    )
    if html_path is not None:
        from pathlib import Path

        try:
            Path(html_path).write_text(render_html(report, profile, summary), encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot write the HTML report to {html_path}: {exc}") from exc
    return report


def _rows(frame: pl.DataFrame | pl.LazyFrame, columns: list[str], n: int, seed: int) -> Any:
    if isinstance(frame, pl.LazyFrame):  # every k-th row of the scan, without loading it all
        step = max(1, _height(frame) // n)
        return frame.select(columns).gather_every(step).head(n).collect()
    return frame.select(columns).sample(n, seed=seed)


def domain_classifier(
    reference: pl.DataFrame | pl.LazyFrame,
    current: pl.DataFrame | pl.LazyFrame,
    columns: list[str],
    *,
    seed: int = 0,
) -> MultivariateDrift:
    """Cross-validated ROC AUC of a gradient-boosted classifier telling a sample of the current
    rows from a sample of the reference's; and the columns that tell them apart best alone
    (each column's own AUC, folded so that 0.5 is none and 1 is perfect)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    n = min(DOMAIN_SAMPLE, _height(reference), _height(current))
    if n < 20:
        raise InvalidInput("the domain classifier needs at least 20 rows on each side")
    ref = _rows(reference, columns, n, seed)
    cur = _rows(current, columns, n, seed + 1)
    n = min(ref.height, cur.height)
    ref, cur = ref.head(n), cur.head(n)
    both = pl.concat([ref, cur], how="vertical_relaxed")
    categorical = []
    encoded = []
    for name in columns:
        series = both.get_column(name)
        if column_kind(series.dtype) == "numeric":
            encoded.append(series.cast(pl.Float64, strict=False).to_numpy())
            categorical.append(False)
        else:
            codes = series.cast(pl.String).rank("dense").cast(pl.Float64).to_numpy()
            # HistGradientBoosting takes at most 255 categories natively; beyond, an order
            codes = np.where(np.isfinite(codes), codes - 1, np.nan)
            encoded.append(codes)
            categorical.append(bool(np.nanmax(codes, initial=0) < 255))
    X = np.column_stack(encoded)
    y = np.r_[np.zeros(n), np.ones(n)]
    model = HistGradientBoostingClassifier(
        max_iter=50, categorical_features=np.array(categorical), random_state=seed
    )
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, X, y, cv=folds, method="predict_proba")[:, 1]
    auc = float(roc_auc_score(y, scores))
    # which columns separate the two: each column alone, by how far its own AUC is from 0.5
    alone: list[dict[str, Any]] = []
    for i, name in enumerate(columns):
        col = X[:, i]
        mask = np.isfinite(col)
        if mask.sum() < 2 or len(np.unique(y[mask])) < 2:
            continue
        a = float(roc_auc_score(y[mask], col[mask]))
        alone.append({"column": name, "auc_alone": max(a, 1 - a)})
    alone.sort(key=lambda d: -float(d["auc_alone"]))
    return MultivariateDrift(
        statistic=auc,
        threshold=DOMAIN_AUC,
        drifted=auc >= DOMAIN_AUC,
        rows=2 * n,
        top_columns=alone[:5],
    )


# -- HTML ----------------------------------------------------------------------------------------


def _bars(shares: list[tuple[str, float, float]], width: int = 240, height: int = 60) -> str:
    """An inline SVG of reference (grey) against current (colour) shares, one pair per bin."""
    if not shares:
        return ""
    top = max(max(r, c) for _, r, c in shares) or 1.0
    step = width / len(shares)
    parts = [f'<svg width="{width}" height="{height + 12}" role="img">']
    for i, (label, r, c) in enumerate(shares):
        x = i * step
        for j, (share, fill) in enumerate(((r, "#bbb"), (c, "#d9534f"))):
            h = height * share / top
            parts.append(
                f'<rect x="{x + j * step / 2:.1f}" y="{height - h:.1f}" '
                f'width="{max(step / 2 - 1, 1):.1f}" height="{h:.1f}" fill="{fill}">'
                f"<title>{html.escape(label)}: {'reference' if j == 0 else 'current'} "
                f"{share:.1%}</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _decile_shares(ref: NumericSummary, cur: NumericSummary) -> list[tuple[str, float, float]]:
    groups = np.array_split(np.arange(ref.counts.size), min(10, ref.counts.size))
    out = []
    for g in groups:
        lo = ref.edges[max(g[0] - 1, 0)]
        label = f"≥ {lo:.4g}"
        out.append(
            (
                label,
                float(ref.counts[g].sum()) / max(ref.n, 1),
                float(cur.counts[g].sum()) / max(cur.n, 1),
            )
        )
    return out


def _category_shares(
    ref: CategoricalSummary, cur: CategoricalSummary, n: int = 10
) -> list[tuple[str, float, float]]:
    n_ref, n_cur = max(ref.n, 1), max(cur.n, 1)
    keys = sorted(set(ref.counts) | set(cur.counts), key=lambda k: -ref.counts.get(k, 0))[:n]
    return [(k, ref.counts.get(k, 0) / n_ref, cur.counts.get(k, 0) / n_cur) for k in keys]


def column_chart(name: str, reference: Profile | Summary | None, current: Summary | None) -> str:
    """A column's reference against its current data, as a small inline SVG: the reference's
    deciles (numbers) or top categories — from the summaries, a few kB whatever the rows."""
    if reference is None or current is None:
        return ""
    ref, cur = reference.columns.get(name), current.columns.get(name)
    if isinstance(ref, NumericSummary) and isinstance(cur, NumericSummary):
        return _bars(_decile_shares(ref, cur))
    if isinstance(ref, CategoricalSummary) and isinstance(cur, CategoricalSummary):
        return _bars(_category_shares(ref, cur))
    return ""


def _drift_row(
    col: ColumnDrift, reference: Profile | Summary | None, current: Summary | None
) -> str:
    """A column's verdict as a table row: column, kind, method, statistic, rule, PSI, nulls,
    verdict, chart."""
    chart = column_chart(col.column, reference, current)
    stat = "–" if col.statistic is None else f"{col.statistic:.4g}"
    rule = "p &lt;" if col.method in ("ks", "chi_square") else "≥"
    psi = "–" if col.psi is None else f"{col.psi:.3f}"
    verdict = '<b class="bad">drift</b>' if col.drifted else '<span class="ok">ok</span>'
    if col.method == "none":
        verdict = f'<span title="{html.escape(col.note or "")}">–</span>'
    return (
        f"<tr><td>{html.escape(col.column)}</td><td>{col.kind}</td><td>{col.method}</td>"
        f"<td>{stat}</td><td>{rule} {col.threshold:g}</td><td>{psi}</td>"
        f"<td>{col.current_null_fraction:.1%}</td><td>{verdict}</td><td>{chart}</td></tr>"
    )


_STYLE = """body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; } td, th { padding: 4px 10px; border-bottom: 1px solid #eee;
text-align: left; vertical-align: middle; } .bad { color: #c9302c; } .ok { color: #3c763d; }"""


def render_html(
    report: DatasetDriftReport, profile: Profile | None = None, summary: Summary | None = None
) -> str:
    """A self-contained page: the verdicts, and per column a small chart of the reference's
    deciles (or top categories) against the current data's — from the summaries, so the page
    stays a few kilobytes a column however many rows were compared."""
    rows = [_drift_row(col, profile, summary) for col in report.columns]
    multi = ""
    if report.multivariate is not None:
        m = report.multivariate
        leaders = ", ".join(f"{d['column']} ({d['auc_alone']:.3f})" for d in m.top_columns)
        multi = (
            f"<p>Domain classifier ROC AUC <b>{m.statistic:.3f}</b> on {m.rows:,} rows "
            f"(drift at ≥ {m.threshold}): {'<b class=bad>drift</b>' if m.drifted else 'ok'}. "
            f"Columns that tell the two apart best on their own: {html.escape(leaders)}.</p>"
        )
    verdict = "dataset drift" if report.dataset_drift else "no dataset drift"
    share = f"{report.share_drifted:.0%}"
    title = f"Drift: {html.escape(report.current)} vs {html.escape(report.reference)}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
{_STYLE}
</style></head><body>
<h1>{title}</h1>
<p>{report.current_rows:,} current rows against {report.reference_rows:,} reference rows:
<b>{len(report.drifted_columns)} of {len(report.columns)}</b> columns drifted ({share},
{verdict} at ≥ {report.thresholds["dataset_drift_share"]:.0%}).
Charts: reference in grey, current in red (numeric: the reference's deciles).</p>
{multi}
<table><tr><th>column</th><th>kind</th><th>method</th><th>statistic</th><th>drift when</th>
<th>PSI</th><th>null (current)</th><th>verdict</th><th>distribution</th></tr>
{"".join(rows)}
</table>
<p>Skipped (a type drift does not measure, or different on the two sides):
{html.escape(", ".join(report.skipped_columns)) or "none"}.</p>
</body></html>
"""


# -- per-window report ---------------------------------------------------------------------------


@dataclass
class WindowSection:
    """One window of a report: its drift (None against the previous window when there was
    none), its quality, and the summaries the charts are drawn from."""

    start: datetime
    end: datetime
    rows: int
    drift: Any  # WindowDrift | None
    quality: Any  # WindowQuality
    reference: Profile | Summary | None
    current: Summary


_DRIFT_HEAD = (
    "<tr><th>column</th><th>kind</th><th>method</th><th>statistic</th><th>drift when</th>"
    "<th>PSI</th><th>null</th><th>verdict</th><th>distribution</th></tr>"
)
_PERFORMANCE_HEAD = (
    "<tr><th>window</th><th>version</th><th>predictions</th><th>labeled</th><th>metrics</th></tr>"
)
_QUALITY_HEAD = (
    "<tr><th>column</th><th>null (training)</th><th>out of range</th><th>limits</th>"
    "<th>unseen categories</th><th>verdict</th><th>issues</th></tr>"
)


def _field(item: Any, name: str, default: Any = None) -> Any:
    """An attribute of an object, or a key of a dict."""
    if isinstance(item, dict):
        return item.get(name, default)
    return getattr(item, name, default)


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


def _quality_row(col: Any) -> str:
    limits = "–"
    if col.kind == "numeric":
        low = "−∞" if col.low is None else f"{col.low:.4g}"
        high = "∞" if col.high is None else f"{col.high:.4g}"
        limits = f"[{low}, {high}]"
    out_of_range = _rate(col.out_of_range_rate) + (" (est.)" if col.estimated else "")
    unseen = _rate(col.unseen_category_rate)
    if col.unseen_categories:
        names = ", ".join(str(u["value"]) for u in col.unseen_categories)
        unseen += f" <small>{html.escape(names)}</small>"
    verdict = '<b class="bad">failed</b>' if col.failed else '<span class="ok">ok</span>'
    return (
        f"<tr><td>{html.escape(col.column)}</td>"
        f"<td>{col.null_rate:.2%} ({col.training_null_rate:.2%})</td><td>{out_of_range}</td>"
        f"<td>{limits}</td><td>{unseen}</td><td>{verdict}</td>"
        f"<td>{html.escape('; '.join(col.issues))}</td></tr>"
    )


def _performance_rows(windows: list[Any]) -> str:
    rows = []
    for w in windows:
        metrics = _field(w, "metrics") or {}
        cells = ", ".join(
            f"{html.escape(str(k))} {v:.4g}" if isinstance(v, int | float) else f"{k} –"
            for k, v in sorted(metrics.items())
        )
        start, end = _instant(_field(w, "start")), _instant(_field(w, "end"))
        span = f"{start:%Y-%m-%d %H:%M:%S} → {end:%H:%M:%S}" if start and end else "–"
        predictions = _field(w, "predictions")
        rows.append(
            f"<tr><td>{span}</td><td>{html.escape(str(_field(w, 'version', '–')))}</td>"
            f"<td>{'–' if predictions is None else f'{predictions:,}'}</td>"
            f"<td>{_field(w, 'labeled', 0) or 0:,}</td><td>{cells or '–'}</td></tr>"
        )
    return "".join(rows)


def _overlapping(performance: list[Any], start: datetime, end: datetime) -> list[Any]:
    out = []
    for w in performance:
        w_start, w_end = _instant(_field(w, "start")), _instant(_field(w, "end"))
        if w_start is not None and w_end is not None and w_start < end and w_end > start:
            out.append(w)
    return out


def render_window_report(
    title: str, sections: list[WindowSection], performance: list[Any] | None = None
) -> str:
    """A self-contained page, newest window first: per window its drift (inputs, then the
    model's outputs) with a chart a column, its data quality a column, and the live
    performance of the windows that overlap it (``performance``: objects or dicts with start,
    end, version, labeled, metrics). Summaries only: no logged row is embedded, so the page
    is a few kB a column whatever the traffic."""
    parts = []
    for section in reversed(sections):
        span = f"{section.start:%Y-%m-%d %H:%M:%S} → {section.end:%Y-%m-%d %H:%M:%S}"
        drift, quality = section.drift, section.quality
        head = f"<h2>{span} <small>({section.rows:,} rows)</small></h2>"
        flags = []
        if drift is not None and drift.drifted_columns:
            flags.append(f"drifted: {', '.join(drift.drifted_columns)}")
        if drift is not None and drift.drifted_outputs:
            flags.append(f"predictions drifted: {', '.join(drift.drifted_outputs)}")
        if quality is not None and quality.failed_columns:
            flags.append(f"quality failed: {', '.join(quality.failed_columns)}")
        summary = "; ".join(flags) or "no drift, no quality issue"
        parts.append(head + f'<p class="{"bad" if flags else "ok"}">{html.escape(summary)}</p>')
        if drift is None:
            parts.append("<p>Drift: no window before this one to compare with.</p>")
        else:
            rows = [_drift_row(c, section.reference, section.current) for c in drift.columns]
            parts.append(
                f"<h3>Drift against the {html.escape(drift.against)}</h3><table>{_DRIFT_HEAD}"
                + "".join(rows)
                + "</table>"
            )
            if drift.outputs:
                rows = [_drift_row(c, section.reference, section.current) for c in drift.outputs]
                parts.append(
                    f"<h3>Prediction drift</h3><table>{_DRIFT_HEAD}{''.join(rows)}</table>"
                )
        if quality is not None:
            parts.append(
                f"<h3>Data quality (limits: {html.escape(quality.bounds)})</h3>"
                f"<table>{_QUALITY_HEAD}{''.join(_quality_row(c) for c in quality.columns)}"
                "</table>"
            )
        if performance:
            matching = _overlapping(performance, section.start, section.end)
            if matching:
                parts.append(
                    "<h3>Performance</h3><table>"
                    f"{_PERFORMANCE_HEAD}{_performance_rows(matching)}</table>"
                )
    if performance:
        parts.append(
            "<h2>Live performance</h2><table>"
            f"{_PERFORMANCE_HEAD}{_performance_rows(performance)}</table>"
        )
    body = "\n".join(parts) or "<p>No window.</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
{_STYLE}
h2 {{ margin-top: 2em; border-top: 2px solid #ddd; padding-top: .5em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{len(sections)} window(s), newest first. Charts: reference in grey, current in red (numbers:
the reference's deciles; categories: the reference's top ten).</p>
{body}
</body></html>
"""
