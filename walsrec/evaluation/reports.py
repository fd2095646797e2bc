"""Human-readable views of training and evaluation: a learning curve and a metrics table.

Plain HTML with inline SVG and Markdown, so they render in the ZenML dashboard and in a browser
without any plotting library.
"""

from __future__ import annotations

import html
import math


def _polyline(values: list[float], width: int, height: int, pad: int) -> str:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return ""
    low, high = min(finite), max(finite)
    span = (high - low) or 1.0
    step = (width - 2 * pad) / max(len(values) - 1, 1)
    points = []
    for index, value in enumerate(values):
        if value is None or not math.isfinite(value):
            continue
        x = pad + index * step
        y = height - pad - (value - low) / span * (height - 2 * pad)
        points.append(f"{x:.1f},{y:.1f}")
    return " ".join(points)


def _chart(title: str, values: list[float], color: str) -> str:
    width, height, pad = 520, 220, 30
    finite = [v for v in values if v is not None and math.isfinite(v)]
    low = f"{min(finite):.5g}" if finite else "-"
    high = f"{max(finite):.5g}" if finite else "-"
    return (
        f"<figure><figcaption>{html.escape(title)} (min {low}, max {high})</figcaption>"
        f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f'<rect width="{width}" height="{height}" fill="white" stroke="#ccc"/>'
        f'<polyline fill="none" stroke="{color}" stroke-width="2" '
        f'points="{_polyline(values, width, height, pad)}"/>'
        f'<text x="{pad}" y="{height - 8}" font-size="11">epoch 1</text>'
        f'<text x="{width - pad - 50}" y="{height - 8}" font-size="11">epoch {len(values)}</text>'
        "</svg></figure>"
    )


def learning_curve_html(history: list[dict]) -> str:
    """An HTML page with the training loss (and validation metrics, if any) per epoch.

    Args:
        history: one dict per epoch with "epoch", "loss", "seconds" and optional
            "validation" (a dict of metric name -> value).
    """
    if not history:
        return "<html><body><p>No training history recorded.</p></body></html>"
    charts = [_chart("training loss", [row["loss"] for row in history], "#1f77b4")]
    metric_names = sorted({name for row in history for name in row.get("validation", {})})
    for name in metric_names:
        values = [row.get("validation", {}).get(name) for row in history]
        charts.append(_chart(f"validation {name}", values, "#d62728"))
    header = "<tr><th>epoch</th><th>loss</th><th>seconds</th>" + "".join(
        f"<th>{html.escape(name)}</th>" for name in metric_names
    )
    rows = []
    for row in history:
        cells = [str(row["epoch"]), f"{row['loss']:.6g}", f"{row['seconds']:.3f}"]
        cells += [
            f"{row.get('validation', {}).get(name, float('nan')):.4f}" for name in metric_names
        ]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return (
        "<html><head><meta charset='utf-8'><title>Learning curve</title></head><body>"
        "<h2>Learning curve</h2>"
        + "".join(charts)
        + "<table border='1' cellpadding='3'>"
        + header
        + "</tr>"
        + "".join(rows)
        + "</table></body></html>"
    )


def metrics_table_markdown(metrics: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per metric, one column per model (e.g. wals, popularity)."""
    models = list(metrics)
    names: list[str] = []
    for model in models:
        names += [name for name in metrics[model] if name not in names]
    lines = ["| metric | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for name in names:
        cells = []
        for model in models:
            value = metrics[model].get(name)
            cells.append(
                "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _version_bars(metric: str, rows: list[dict], baseline: float | None) -> str:
    """One SVG bar chart: `metric` per model version, the popularity baseline dashed."""
    width, height, pad, top = 560, 230, 34, 16
    values = [row["metrics"].get(metric) for row in rows]
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if baseline is not None and math.isfinite(baseline):
        finite.append(baseline)
    high = max(finite) if finite else 1.0
    high = high if high > 0 else 1.0
    slot = (width - 2 * pad) / max(len(rows), 1)
    bar = max(2.0, min(40.0, slot * 0.7))

    def y_of(value: float) -> float:
        return height - pad - max(value, 0.0) / high * (height - pad - top)

    parts = [
        f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f'<rect width="{width}" height="{height}" fill="white" stroke="#ccc"/>',
    ]
    for index, (row, value) in enumerate(zip(rows, values, strict=True)):
        x = pad + index * slot + (slot - bar) / 2
        label = f"v{row['version']}"
        parts.append(
            f'<text x="{x + bar / 2:.1f}" y="{height - pad + 14}" font-size="10" '
            f'text-anchor="middle">{html.escape(label)}</text>'
        )
        if value is None or not math.isfinite(value):
            continue
        # Versions evaluated on another test set are grey: their numbers don't compare.
        fill = "#1f77b4" if row["comparable"] else "#bbbbbb"
        if row["current"]:
            fill = "#ff7f0e"
        stroke = ' stroke="#2ca02c" stroke-width="3"' if row["stage"] == "production" else ""
        y = y_of(value)
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
            f'height="{height - pad - y:.1f}" fill="{fill}"{stroke}>'
            f"<title>{html.escape(label)} {html.escape(metric)} {value:.4f}</title></rect>"
        )
        parts.append(
            f'<text x="{x + bar / 2:.1f}" y="{y - 3:.1f}" font-size="9" '
            f'text-anchor="middle">{value:.3f}</text>'
        )
    if baseline is not None and math.isfinite(baseline):
        y = y_of(baseline)
        parts.append(
            f'<line x1="{pad}" x2="{width - pad}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d62728" '
            f'stroke-dasharray="5,4"><title>popularity {baseline:.4f}</title></line>'
        )
    parts.append("</svg>")
    return f"<figure><figcaption>{html.escape(metric)}</figcaption>{''.join(parts)}</figure>"


def model_versions_html(rows: list[dict], metric_names: list[str], baseline: dict) -> str:
    """An HTML page comparing model versions on their test metrics: one bar chart per metric
    and a table.

    Args:
        rows: one dict per model version, oldest first: "version" (number), "stage" (None,
            "staging", "production", ...), "metrics" (metric name -> value), "comparable"
            (evaluated on the same test set as the current version) and "current" (this run's).
        metric_names: the metrics to chart, in order.
        baseline: metric name -> the popularity baseline's value on the current test set.
    """
    if not rows:
        return "<html><body><p>No model versions with metrics yet.</p></body></html>"
    charts = "".join(_version_bars(name, rows, baseline.get(name)) for name in metric_names)
    header = "<tr><th>version</th><th>stage</th><th>same test set</th>" + "".join(
        f"<th>{html.escape(name)}</th>" for name in metric_names
    )
    lines = []
    for row in rows:
        cells = [
            f"{row['version']}{' (this run)' if row['current'] else ''}",
            row["stage"] or "-",
            "yes" if row["comparable"] else "no",
        ]
        for name in metric_names:
            value = row["metrics"].get(name)
            cells.append("-" if value is None else f"{value:.4f}")
        lines.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return (
        "<html><head><meta charset='utf-8'><title>Model versions</title></head><body>"
        "<h2>Model versions on their test sets</h2>"
        "<p>Orange: this run's version; blue: versions evaluated on the same test set; grey: "
        "another test set (not comparable); green outline: production; dashed red: popularity "
        "on this run's test set.</p>"
        + charts
        + "<table border='1' cellpadding='3'>"
        + header
        + "</tr>"
        + "".join(lines)
        + "</table></body></html>"
    )
