"""SVG charts drawn on the server: no chart library, no CDN, readable without JavaScript.

Each function returns a complete `<svg>` element as a string (safe to insert: every piece of
text is escaped). Sizes are in user units; the SVG scales to its container.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from html import escape

log = logging.getLogger(__name__)

WIDTH, HEIGHT = 640, 200
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 48, 12, 12, 28
MAX_POINTS = 600  # more points than pixels only costs bytes; keep the last ones


def _ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    if hi <= lo:
        return [lo]
    step = (hi - lo) / count
    return [lo + i * step for i in range(count + 1)]


def _label_ms(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%m-%d %H:%M")


def step_chart(points: Sequence[tuple[int, float]], title: str, unit: str = "",
               floor: float | None = None) -> str:
    """A step line of (epoch ms, value), e.g. stock over time; `floor` draws a dashed line (reorder point)."""
    pts = list(points)[-MAX_POINTS:]
    desc = escape(title)
    if not pts:
        return (f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{desc}: no data yet">'
                f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data yet</text></svg>')
    if len(pts) == 1:
        pts.append((pts[0][0] + 1, pts[0][1]))
    t0, t1 = pts[0][0], pts[-1][0]
    values = [v for _, v in pts] + ([floor] if floor is not None else [])
    lo, hi = min(0.0, *values), max(values)
    hi = hi if hi > lo else lo + 1
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM

    def x(t: float) -> float:
        return PAD_LEFT + (t - t0) / max(1, t1 - t0) * plot_w

    def y(v: float) -> float:
        return PAD_TOP + (hi - v) / (hi - lo) * plot_h

    path = [f"M{x(pts[0][0]):.1f},{y(pts[0][1]):.1f}"]
    for (_, prev_v), (t, v) in zip(pts, pts[1:], strict=False):
        path.append(f"H{x(t):.1f}V{y(v):.1f}")  # stock holds its value until the next movement
        del prev_v
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{desc}">',
             f"<title>{desc}</title>"]
    for v in _ticks(lo, hi):
        parts.append(f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
                     f'<text class="axis" x="{PAD_LEFT - 4}" y="{y(v) + 4:.1f}" text-anchor="end">'
                     f"{v:.0f}{escape(unit)}</text>")
    for t in (t0, t1):
        parts.append(f'<text class="axis" x="{x(t):.1f}" y="{HEIGHT - 8}" '
                     f'text-anchor="{"start" if t == t0 else "end"}">{_label_ms(t)}</text>')
    if floor is not None:
        parts.append(f'<line class="floor" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y(floor):.1f}" '
                     f'y2="{y(floor):.1f}"><title>reorder point {floor:g}</title></line>')
    parts.append(f'<path class="series" d="{"".join(path)}"/></svg>')
    return "".join(parts)


def bar_chart(bars: Sequence[tuple[str, float]], title: str, unit: str = "",
              highlight: str | Collection[str] | None = None) -> str:
    """Horizontal bars (label, value), e.g. lag per node or on-time rate per month; `highlight`
    names the bar (or bars) to draw as hot."""
    hot = {highlight} if isinstance(highlight, str) else set(highlight or ())
    desc = escape(title)
    if not bars:
        return (f'<svg class="chart" viewBox="0 0 {WIDTH} 40" role="img" aria-label="{desc}: no data yet">'
                f'<text x="{WIDTH / 2}" y="24" text-anchor="middle">no data yet</text></svg>')
    row_h, label_w = 22, 160
    height = row_h * len(bars) + 8
    top = max(v for _, v in bars) or 1
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{desc}">',
             f"<title>{desc}</title>"]
    for i, (label, value) in enumerate(bars):
        y = 4 + i * row_h
        w = max(1.0, value / top * (WIDTH - label_w - 70))
        cls = "bar hot" if label in hot else "bar"
        parts.append(f'<text class="axis" x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>'
                     f'<rect class="{cls}" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}"/>'
                     f'<text class="axis" x="{label_w + w + 4:.1f}" y="{y + 15}">{value:g}{escape(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)
