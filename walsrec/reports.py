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
