"""A validation report as one self-contained HTML page (inline CSS, no script, no fetch)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any

from mloop.data.validation import ValidationReport

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1f2328}
h1{font-size:1.35rem;margin:0 0 .3rem}
.meta{color:#59636e;margin-bottom:1rem}
.verdict{display:inline-block;padding:.15rem .6rem;border-radius:1rem;font-weight:600}
.pass{background:#dafbe1;color:#116329}.fail{background:#ffebe9;color:#a40e26}
.warn{background:#fff8c5;color:#7d4e00}
table{border-collapse:collapse;width:100%;margin:.6rem 0 1.2rem}
th,td{border-bottom:1px solid #d1d9e0;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
pre{background:#f6f8fa;padding:.5rem;overflow:auto;margin:.2rem 0}
details summary{cursor:pointer;color:#0969da}
.summary td{border:none;padding:.1rem 1rem .1rem 0}
"""


def _status(check: Any) -> tuple[str, str]:
    if check.success:
        return "pass", "pass"
    return ("warn", "warn") if check.severity == "warn" else ("fail", "FAIL")


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def render_html(report: ValidationReport, *, title: str | None = None) -> str:
    """The report as a standalone HTML document: the verdict, counts, then one row per check
    (status, severity, the check, failing rows, what was observed) with sample failing rows."""
    verdict = "pass" if report.success else "fail"
    word = "passed" if report.success else "FAILED"
    heading = title or f"Validation of {report.dataset or 'data'}"
    suite = f"{report.suite}@{report.suite_version}" if report.suite_version else report.suite
    failed = [c for c in report.checks if not c.success]
    rows = []
    # failing checks first, errors before warnings; then the passing ones, in suite order
    order = sorted(
        range(len(report.checks)),
        key=lambda i: (
            report.checks[i].success,
            report.checks[i].severity != "error",
            i,
        ),
    )
    for i in order:
        check = report.checks[i]
        css, label = _status(check)
        kind = check.expectation.get("type", "")
        sample = ""
        if check.sample:
            lines = "\n".join(_json(r) for r in check.sample)
            sample = (
                f"<details><summary>{len(check.sample)} sample failing rows</summary>"
                f"<pre>{escape(lines)}</pre></details>"
            )
        rows.append(
            f'<tr class="check {css}-row"><td><span class="verdict {css}">{label}</span></td>'
            f"<td>{escape(check.severity)}</td><td><code>{escape(kind)}</code></td>"
            f"<td>{escape(check.message)}{sample}</td>"
            f'<td class="num">{check.failing_rows:,}</td>'
            f'<td class="num">{check.failing_fraction:.2%}</td>'
            f"<td><code>{escape(_json(check.observed))}</code></td></tr>"
        )
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    failing_list = "".join(f"<li>{escape(c.message)}</li>" for c in failed)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(heading)}</title><style>{_CSS}</style></head>
<body>
<h1>{escape(heading)} <span class="verdict {verdict}">{word}</span></h1>
<div class="meta">suite <b>{escape(suite)}</b> · {report.rows:,} rows ·
generated {generated} by mloop</div>
<table class="summary"><tr>
<td>checks <b>{len(report.checks)}</b></td>
<td>failed (error) <b>{report.failed_checks}</b></td>
<td>warnings <b>{report.warnings}</b></td>
<td>failing rows <b>{report.failing_rows:,}</b></td></tr></table>
{f'<h2>Failing checks</h2><ul class="failing">{failing_list}</ul>' if failed else ""}
<h2>Checks</h2>
<table><thead><tr><th>status</th><th>severity</th><th>check</th><th>result</th>
<th>failing rows</th><th>share</th><th>observed</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody></table>
</body></html>
"""
