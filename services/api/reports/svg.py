"""A small SVG bar chart writer: stacked bars with axis, gridlines and legend, for the report endpoints.

No plotting library: a chart of a few dozen bars is a few hundred lines of SVG, and every value and label that
comes from a user is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
FONT = "font-family='system-ui, sans-serif'"


def nice_step(largest: float, ticks: int = 5) -> float:
    """A round gridline step (1, 2 or 5 times a power of ten) giving about `ticks` lines up to `largest`."""
    if largest <= 0:
        return 1.0
    raw = largest / ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(float(m * magnitude) for m in (1, 2, 5, 10) if m * magnitude >= raw)


def _number(value: float) -> str:
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if abs(value) >= 1_000:
        return f"{value / 1_000:g}k"
    return f"{value:g}"


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    width: int = 860,
    height: int = 440,
) -> str:
    """Stacked vertical bars: one per category, one colored segment per series (in legend order)."""
    left, right, top, bottom = 70, 20, 50, 110
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(values[i] for _, values in series) for i in range(len(categories))]
    step = nice_step(max(totals, default=0.0))
    ceiling = step * max(1, math.ceil(max(totals, default=0.0) / step))
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' role='img' aria-label={quoteattr(title)}>",
        f"<rect width='{width}' height='{height}' fill='white'/>",
        f"<text x='{left}' y='28' {FONT} font-size='16' font-weight='600'>{escape(title)}</text>",
    ]
    lines = round(ceiling / step)
    for n in range(lines + 1):
        y = top + plot_h - plot_h * n / lines
        parts.append(f"<line x1='{left}' y1='{y:.1f}' x2='{left + plot_w}' y2='{y:.1f}' stroke='#e5e5e5'/>")
        parts.append(
            f"<text x='{left - 8}' y='{y + 4:.1f}' {FONT} font-size='11' text-anchor='end' fill='#555'>"
            f"{_number(step * n)}</text>"
        )
    if not categories:
        parts.append(
            f"<text x='{left + plot_w / 2:.1f}' y='{top + plot_h / 2:.1f}' {FONT} font-size='14' "
            "text-anchor='middle' fill='#888'>No data for this report</text>"
        )
    slot = plot_w / max(len(categories), 1)
    bar_w = max(2.0, slot * 0.7)
    for index, category in enumerate(categories):
        x = left + slot * index + (slot - bar_w) / 2
        base = float(top + plot_h)
        for color, (name, values) in zip(_colors(len(series)), series, strict=True):
            value = values[index]
            if value <= 0:
                continue
            h = plot_h * value / ceiling
            base -= h
            label = escape(f"{category} · {name}: {value:g}")
            parts.append(
                f"<rect x='{x:.1f}' y='{base:.1f}' width='{bar_w:.1f}' height='{h:.1f}' fill='{color}'>"
                f"<title>{label}</title></rect>"
            )
        cx, cy = x + bar_w / 2, top + plot_h + 14
        parts.append(
            f"<text x='{cx:.1f}' y='{cy:.1f}' {FONT} font-size='11' text-anchor='end' fill='#333' "
            f"transform='rotate(-35 {cx:.1f} {cy:.1f})'>{escape(category)}</text>"
        )
    parts.append(f"<line x1='{left}' y1='{top + plot_h}' x2='{left + plot_w}' y2='{top + plot_h}' stroke='#333'/>")
    legend_x = left
    for color, (name, _) in zip(_colors(len(series)), series, strict=True):
        parts.append(f"<rect x='{legend_x}' y='{height - 22}' width='12' height='12' fill='{color}'/>")
        parts.append(
            f"<text x='{legend_x + 16}' y='{height - 12}' {FONT} font-size='12' fill='#333'>{escape(name)}</text>"
        )
        legend_x += 24 + 7 * len(name)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _colors(count: int) -> list[str]:
    return [PALETTE[i % len(PALETTE)] for i in range(count)]
