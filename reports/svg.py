"""Small helpers for the report's hand-written inline SVG charts: linear scales, "nice" axis
ticks, axes and text.

Why hand-written rather than matplotlib: the charts must be byte-identical between runs
(no timestamps, ids or hash salts), small, styled by the shared stylesheet, and carry
links and tooltips into the report; a few primitives do that in plain strings. Every text
from data goes through `esc`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from reports.templates import esc

HATCH = ('<defs><pattern id="hatch" width="4" height="4" patternUnits="userSpaceOnUse" '
         'patternTransform="rotate(45)"><rect width="4" height="4" fill="#dfe4ea"/>'
         '<line x1="0" y1="0" x2="0" y2="4" stroke="#8a96a3" stroke-width="1.5"/></pattern></defs>')


@dataclass(frozen=True)
class Scale:
    """Maps [d0, d1] (data) onto [r0, r1] (pixels), clamped."""

    d0: float
    d1: float
    r0: float
    r1: float

    def __call__(self, v: float) -> float:
        span = self.d1 - self.d0
        t = 0.5 if span == 0 else (v - self.d0) / span
        return self.r0 + (self.r1 - self.r0) * min(max(t, 0.0), 1.0)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def tick_label(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 and abs(v) < 1e6 else f"{v:.3g}"


def f1(v: float) -> str:
    """Pixel coordinate with one decimal (keeps files small and output stable)."""
    return f"{v:.1f}"


def text(x: float, y: float, s: str, cls: str = "", anchor: str = "start", rotate: float | None = None) -> str:
    attrs = f' class="{cls}"' if cls else ""
    if anchor != "start":
        attrs += f' text-anchor="{anchor}"'
    if rotate is not None:
        attrs += f' transform="rotate({rotate:g} {f1(x)} {f1(y)})"'
    return f'<text x="{f1(x)}" y="{f1(y)}"{attrs}>{esc(s)}</text>'


def line(x1: float, y1: float, x2: float, y2: float, cls: str) -> str:
    return f'<line x1="{f1(x1)}" y1="{f1(y1)}" x2="{f1(x2)}" y2="{f1(y2)}" class="{cls}"/>'


def y_axis(sy: Scale, ticks: Sequence[float], x: float, width: float, labels: Sequence[str] | None = None) -> str:
    """Left axis with grid lines across `width`."""
    parts = [line(x, sy.r0, x, sy.r1, "ax")]
    for i, t in enumerate(ticks):
        y = sy(t)
        parts.append(line(x, y, x + width, y, "grid"))
        parts.append(text(x - 4, y + 3.5, labels[i] if labels else tick_label(t), "small", "end"))
    return "".join(parts)


def x_axis(sx: Scale, ticks: Sequence[float], y: float, labels: Sequence[str] | None = None) -> str:
    parts = [line(sx.r0, y, sx.r1, y, "ax")]
    for i, t in enumerate(ticks):
        x = sx(t)
        parts.append(line(x, y, x, y + 4, "ax"))
        parts.append(text(x, y + 14, labels[i] if labels else tick_label(t), "small", "middle"))
    return "".join(parts)


def svg(width: int, height: int, body: str, label: str, defs: str = "") -> str:
    return (f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="{esc(label)}">{defs}{body}</svg>')


def title(s: str) -> str:
    return f"<title>{esc(s)}</title>"
