"""The overview's charts, drawn on the server as SVG.

Server-side SVG needs no JavaScript library in the wheel, costs a few kilobytes per chart,
and shows in the page as an ``<img>``, where an SVG can run no script whatever it holds.
Every text in it is escaped all the same. The page reloads the image when it polls.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

__all__ = ["failure_rate_svg", "throughput_svg"]

WIDTH, HEIGHT = 600, 180
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 22

#: Colours of the outcomes, stacked bottom to top (the page's legend uses the same).
OUTCOME_COLOURS = (
    ("succeeded", "#2e7d32"),
    ("retried", "#ef8f00"),
    ("failed", "#c62828"),
    ("cancelled", "#757575"),
)


def _frame(title: str, body: list[str], top_label: str, minutes: Sequence[dict[str, Any]]) -> str:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    first = str(minutes[0]["minute"])[11:16] if minutes else ""
    last = str(minutes[-1]["minute"])[11:16] if minutes else ""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}" '
        'font-family="system-ui, sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT + plot_w}" y2="{TOP}" stroke="#e0e0e0"/>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h / 2}" x2="{LEFT + plot_w}" '
        f'y2="{TOP + plot_h / 2}" stroke="#eeeeee"/>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" '
        'stroke="#9e9e9e"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 4}" text-anchor="end" fill="#555">'
        f"{escape(top_label)}</text>",
        f'<text x="{LEFT - 4}" y="{TOP + plot_h + 4}" text-anchor="end" fill="#555">0</text>',
        f'<text x="{LEFT}" y="{HEIGHT - 6}" fill="#555">{escape(first)} UTC</text>',
        f'<text x="{LEFT + plot_w}" y="{HEIGHT - 6}" text-anchor="end" fill="#555">'
        f"{escape(last)}</text>",
        *body,
        "</svg>",
    ]
    return "\n".join(parts)


def throughput_svg(minutes: Sequence[dict[str, Any]], title: str = "Jobs per minute") -> str:
    """Stacked bars: the runs that ended each minute, by outcome."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    peak = max((int(m["finished"]) for m in minutes), default=0)
    scale_top = max(peak, 1)
    slot = plot_w / max(len(minutes), 1)
    body: list[str] = []
    for i, minute in enumerate(minutes):
        y: float = TOP + plot_h
        for outcome, colour in OUTCOME_COLOURS:
            count = int(minute[outcome])
            if not count:
                continue
            height = plot_h * count / scale_top
            y -= height
            body.append(
                f'<rect x="{LEFT + i * slot + 0.5:.1f}" y="{y:.1f}" '
                f'width="{max(slot - 1, 1):.1f}" height="{height:.1f}" fill="{colour}">'
                f"<title>{escape(str(minute['minute'])[11:16])}: {count} {outcome}</title>"
                "</rect>"
            )
    if peak == 0:
        body.append(
            f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle" '
            'fill="#777">no job finished in the last hour</text>'
        )
    return _frame(title, body, str(scale_top), minutes)


def failure_rate_svg(minutes: Sequence[dict[str, Any]], title: str = "Failure rate") -> str:
    """A line: the share of runs that raised (retried or failed) among those that ended,
    per minute; minutes without a run leave a gap."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(minutes), 1)
    segments: list[list[str]] = [[]]
    for i, minute in enumerate(minutes):
        rate = minute["failure_rate"]
        if rate is None:
            if segments[-1]:
                segments.append([])
            continue
        x = LEFT + (i + 0.5) * slot
        y = TOP + plot_h * (1 - float(rate))
        segments[-1].append(f"{x:.1f},{y:.1f}")
    body: list[str] = []
    for points in segments:
        if len(points) == 1:
            cx, cy = points[0].split(",")
            body.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="#c62828"/>')
        elif points:
            body.append(
                f'<polyline points="{" ".join(points)}" fill="none" stroke="#c62828" '
                'stroke-width="2"/>'
            )
    if not any(segments):
        body.append(
            f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle" '
            'fill="#777">no job finished in the last hour</text>'
        )
    return _frame(title, body, "100%", minutes)
