"""Line charts of metric series, drawn as SVG on the server: no JavaScript, works offline."""

from __future__ import annotations

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

COLOURS = ("#0a66c2", "#d1495b", "#2e8540", "#8a5a00", "#6f42c1", "#00798c", "#c2185b", "#555")
WIDTH, HEIGHT = 520, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 44


def _n(value: float) -> str:
    return f"{value:.1f}"


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.3g}"
    return f"{value:.4g}"


def line_chart(title: str, series: dict[str, list[tuple[int, float]]]) -> SafeString:
    """An accessible SVG chart: one line per series over steps, with axes and a legend."""
    points = [p for values in series.values() for p in values]
    if not points:
        return mark_safe("")  # noqa: S308 - constant  # nosec B308
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    x_min, x_max = min(xs), max(xs)
    y_min, y_max = min(ys), max(ys)
    if x_min == x_max:
        x_min, x_max = x_min - 1, x_max + 1
    if y_min == y_max:
        pad = abs(y_min) * 0.1 or 1.0
        y_min, y_max = y_min - pad, y_max + pad
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x - x_min) / (x_max - x_min) * plot_w

    def sy(y: float) -> float:
        return TOP + (1 - (y - y_min) / (y_max - y_min)) * plot_h

    parts = []
    for i in range(5):
        value = y_min + (y_max - y_min) * i / 4
        y = sy(value)
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" class="grid"/>'
                '<text x="{}" y="{}" class="tick" text-anchor="end">{}</text>',
                LEFT,
                WIDTH - RIGHT,
                y,
                y,
                LEFT - 6,
                y + 4,
                _fmt(value),
            )
        )
    for x_value in sorted({x_min, x_max, round((x_min + x_max) / 2)}):
        parts.append(
            format_html(
                '<text x="{}" y="{}" class="tick" text-anchor="middle">{}</text>',
                sx(x_value),
                HEIGHT - BOTTOM + 16,
                x_value,
            )
        )
    parts.append(
        format_html(
            '<text x="{}" y="{}" class="tick" text-anchor="middle">step</text>',
            LEFT + plot_w / 2,
            HEIGHT - 6,
        )
    )
    legend = []
    for index, (label, values) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values)
        parts.append(
            format_html(
                '<polyline points="{}" fill="none" stroke="{}" stroke-width="2">'
                "<title>{}</title></polyline>",
                coords,
                colour,
                label,
            )
        )
        if len(values) == 1:
            x, y = values[0]
            parts.append(
                format_html(
                    '<circle cx="{}" cy="{}" r="3" fill="{}"/>', _n(sx(x)), _n(sy(y)), colour
                )
            )
        last = values[-1][1]
        legend.append(
            format_html(
                '<li><span class="swatch" style="background:{}"></span>{} '
                '<span class="muted">last {}</span></li>',
                colour,
                label,
                _fmt(last),
            )
        )
    summary = ", ".join(f"{label}: {len(values)} points" for label, values in series.items())
    svg = format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}">{}</svg>',
        WIDTH,
        HEIGHT,
        f"{title} over steps ({summary})",
        mark_safe("".join(parts)),  # noqa: S308 - each part built with format_html  # nosec B308 B703
    )
    return format_html(
        '<figure class="metric-chart" data-metric="{}"><figcaption>{}</figcaption>{}'
        '<ul class="legend">{}</ul></figure>',
        title,
        escape(title),
        svg,
        mark_safe("".join(legend)),  # noqa: S308 - built by format_html  # nosec B308 B703
    )
