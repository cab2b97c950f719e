"""The overview's chart as inline SVG (no JavaScript, no CDN): one line per series over
the last hour, each scaled to its own maximum, with the maximum written beside it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Series:
    name: str
    colour: str  # a CSS colour of ours, never input
    values: Sequence[float]  # oldest first, one per minute


def line_chart(series: Sequence[Series], width: int = 640, height: int = 160) -> str:
    pad, label_h = 6, 16
    plot_h = height - label_h - 2 * pad
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" aria-label="last hour">'
        ),
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fafafa" stroke="#ddd"/>',
    ]
    for index, line in enumerate(series):
        values = list(line.values)
        top = max(values, default=0.0) or 1.0
        step = (width - 2 * pad) / max(1, len(values) - 1)
        points = " ".join(
            f"{pad + i * step:.1f},{pad + plot_h - plot_h * value / top:.1f}"
            for i, value in enumerate(values)
        )
        if points:
            parts.append(
                f'<polyline fill="none" stroke="{line.colour}" stroke-width="2" points="{points}"/>'
            )
        parts.append(
            f'<text x="{pad + index * 260}" y="{height - 4}" font-size="12" '
            f'fill="{line.colour}">{escape(line.name)} (max {max(values, default=0):g})</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
