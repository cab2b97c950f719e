"""The overview's chart as inline SVG (no JavaScript, no CDN): one bar per minute for a
rate and a line for a level over the last hour, each scaled to its own maximum, which is
written in its legend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Series:
    name: str
    colour: str  # a CSS colour of ours, never input
    values: Sequence[float]  # oldest first, one per minute
    bars: bool = False  # bars (a count per minute) or a line (a level)


def line_chart(series: Sequence[Series], width: int = 640, height: int = 170) -> str:
    pad, legend_h = 6, 30
    plot_h = height - legend_h - 2 * pad
    base = pad + plot_h
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" aria-label="the last hour">'
        ),
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fafafa" stroke="#ddd"/>',
        f'<text x="{pad}" y="{base + 13}" font-size="11" fill="#57606a">60 min ago</text>',
        (
            f'<text x="{width - pad}" y="{base + 13}" font-size="11" fill="#57606a" '
            'text-anchor="end">now</text>'
        ),
    ]
    for index, item in enumerate(series):
        values = list(item.values)
        top = max(values, default=0.0) or 1.0
        step = (width - 2 * pad) / max(1, len(values))
        if item.bars:
            parts += [
                f'<rect x="{pad + i * step:.1f}" y="{base - plot_h * value / top:.1f}" '
                f'width="{max(1.0, step - 1):.1f}" height="{plot_h * value / top:.1f}" '
                f'fill="{item.colour}" opacity="0.6"/>'
                for i, value in enumerate(values)
                if value
            ]
        else:
            points = " ".join(
                f"{pad + (i + 0.5) * step:.1f},{base - plot_h * value / top:.1f}"
                for i, value in enumerate(values)
            )
            parts.append(
                f'<polyline fill="none" stroke="{item.colour}" stroke-width="2" points="{points}"/>'
            )
        parts.append(
            f'<text x="{pad + index * 260}" y="{height - 4}" font-size="12" '
            f'fill="{item.colour}">{escape(item.name)} (max {max(values, default=0):g})</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
