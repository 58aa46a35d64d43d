"""The pipeline page's graph: an SVG of the steps, left to right in the order they can run.

A step's column is the length of the longest chain of steps it waits for, so
every arrow points right; an arrow is labelled with the data it carries (or
"after" for a plain ordering). Each box links to the step's run and is
coloured by its status, like the status badges.
"""

from __future__ import annotations

from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from pipelines.definition import TYPE_LABELS

BOX_W, BOX_H = 200, 74
GAP_X, GAP_Y = 90, 26
PAD = 12
# Fill, stroke and text colour per status (the badge colours of studio.css).
COLOURS = {
    "Completed": ("#dcf1e1", "#1e7e34", "#14532d"),
    "Failed": ("#fbe0de", "#b42318", "#7a1a12"),
    "Canceled": ("#fbe0de", "#b42318", "#7a1a12"),
    "CancelRequested": ("#fdf0d5", "#a15c00", "#6b3d00"),
    "NotResponding": ("#fdf0d5", "#a15c00", "#6b3d00"),
    "NotStarted": ("#f3f4f6", "#9aa3ad", "#374151"),
}
ACTIVE = ("#dde9f8", "#1d5fb4", "#163e74")


def columns(steps) -> dict[str, int]:
    by_name = {step.name: step for step in steps}
    depth: dict[str, int] = {}

    def of(name: str) -> int:
        if name not in depth:
            deps = [d for d in by_name[name].depends_on if d in by_name]
            depth[name] = 1 + max((of(d) for d in deps), default=-1)
        return depth[name]

    for step in steps:
        of(step.name)
    return depth


def pipeline_svg(steps, *, slug: str) -> SafeString:
    """The graph of `steps` (PipelineStep with their runs) as inline SVG."""
    column = columns(steps)
    rows: dict[int, int] = {}
    place: dict[str, tuple[int, int]] = {}
    for step in steps:
        col = column[step.name]
        row = rows.get(col, 0)
        rows[col] = row + 1
        place[step.name] = (PAD + col * (BOX_W + GAP_X), PAD + row * (BOX_H + GAP_Y))
    width = PAD * 2 + (max(column.values(), default=0) + 1) * (BOX_W + GAP_X) - GAP_X
    height = PAD * 2 + max(rows.values(), default=1) * (BOX_H + GAP_Y) - GAP_Y

    edges = []
    for step in steps:
        x2, y2 = place[step.name]
        for dep in step.depends_on:
            if dep not in place:
                continue
            producer = next(s for s in steps if s.name == dep)
            carried = [data for data in step.inputs if data in producer.outputs]
            label = ", ".join(carried) or "after"
            x1, y1 = place[dep]
            start = (x1 + BOX_W, y1 + BOX_H / 2)
            end = (x2 - 6, y2 + BOX_H / 2)
            middle = (start[0] + end[0]) / 2
            edges.append(
                format_html(
                    '<path class="edge" d="M{} {} C{} {} {} {} {} {}" fill="none" '
                    'stroke="#6b7280" stroke-width="1.5" marker-end="url(#arrow)"/>'
                    '<text x="{}" y="{}" font-size="11" fill="#374151" text-anchor="middle">'
                    "{}</text>",
                    start[0],
                    start[1],
                    middle,
                    start[1],
                    middle,
                    end[1],
                    end[0],
                    end[1],
                    middle,
                    (start[1] + end[1]) / 2 - 5,
                    label,
                )
            )

    boxes = []
    for step in steps:
        x, y = place[step.name]
        run = step.run
        fill, stroke, text = COLOURS.get(run.status, ACTIVE)
        href = reverse("run_detail", args=[slug, run.pk])
        boxes.append(
            format_html(
                '<a href="{}" class="step" data-step="{}" data-status="{}">'
                "<title>{}: {}</title>"
                '<rect x="{}" y="{}" width="{}" height="{}" rx="8" fill="{}" stroke="{}" '
                'stroke-width="2"/>'
                '<text x="{}" y="{}" font-size="14" font-weight="600" fill="{}">{}</text>'
                '<text x="{}" y="{}" font-size="11" fill="{}">{} on {}</text>'
                '<text x="{}" y="{}" font-size="12" font-weight="600" fill="{}">{}</text>'
                "</a>",
                href,
                step.name,
                run.status,
                step.name,
                run.status,
                x,
                y,
                BOX_W,
                BOX_H,
                fill,
                stroke,
                x + 10,
                y + 22,
                text,
                step.name,
                x + 10,
                y + 40,
                text,
                TYPE_LABELS.get(step.step_type, step.step_type),
                run.target_name or "—",
                x + 10,
                y + 60,
                stroke,
                run.status,
            )
        )
    summary = "; ".join(f"{step.name}: {step.run.status}" for step in steps)
    return format_html(
        '<svg class="pipeline-graph" role="img" aria-label="Pipeline graph. {}" '
        'viewBox="0 0 {} {}" width="{}" height="{}" xmlns="http://www.w3.org/2000/svg">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10 z" '
        'fill="#6b7280"/></marker></defs>{}{}</svg>',
        summary,
        width,
        height,
        width,
        height,
        mark_safe("".join(edges)),  # noqa: S308 - each piece built with format_html  # nosec B308 B703
        format_html_join("", "{}", ((box,) for box in boxes)),
    )
