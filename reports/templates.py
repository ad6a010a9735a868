"""The page skeleton and value formatting of the HTML report (its CSS and script are in
`reports/assets.py`, written once per report as `assets/report.css` and `assets/report.js`).

Why here: the report must open from a file share or an air-gapped laptop years later, so
nothing is fetched (no CDN, fonts or templates engine), and every value from data goes
through `esc`, so a report text containing markup shows as text. Missing values render as
"–" everywhere; a researcher must never have to wonder whether "nan" is a finding.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

DASH = "–"
CSS_FILE = "assets/report.css"
JS_FILE = "assets/report.js"

# No network, no inline script or style: even a payload that escaped `esc` could neither
# run nor fetch anything. 'self' and file: let the shared assets load from a file share.
CSP = ("default-src 'none'; script-src 'self' file:; style-src 'self' file:; img-src data:; "
       "base-uri 'none'; form-action 'none'")


def page(title: str, body: str, footer: str, root: str = "") -> str:
    """A complete HTML document using the shared `assets/` of the report folder; `root` is
    the relative path from the page to the report folder ("" or "../")."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{esc(title)}</title><link rel="stylesheet" href="{root}{CSS_FILE}"></head>\n<body>\n{body}\n'
        f'<footer>{footer}</footer>\n<script src="{root}{JS_FILE}"></script>\n</body></html>\n'
    )


# ---------------------------------------------------------------- values
def missing(x: Any) -> bool:
    """None, NaN, pd.NA and NaT are all "missing"; lists and arrays are not."""
    if x is None or x is pd.NA or x is pd.NaT:
        return True
    if isinstance(x, (float, np.floating)):
        return math.isnan(float(x))
    return False


def esc(x: Any) -> str:
    """HTML-escape any value. '//' is written as '/&#47;' (it displays the same) so text
    from data can never put a URL-looking string into the file."""
    if missing(x):
        return DASH
    return html.escape(str(x), quote=True).replace("//", "/&#47;")


def num(x: Any, digits: int = 3) -> str:
    """Significant-digit number, '∞' for infinity, '–' when missing."""
    if missing(x):
        return DASH
    v = float(x)
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    return f"{v:.{digits}g}"


def ratio_from_log(x: Any) -> float:
    """exp of a log ratio; infinity past float range (a separated table's log-OR can be
    in the thousands) instead of OverflowError."""
    v = float(x)
    return math.inf if v > 709.0 else math.exp(v)


def fixed2(x: Any) -> str:
    """Two decimals (balanced accuracy), '–' when missing."""
    return DASH if missing(x) else f"{float(x):.2f}"


def integer(x: Any) -> str:
    """Thousands-separated integer, '–' when missing."""
    return DASH if missing(x) else f"{int(x):,}"


def pct(p: Any) -> str:
    """A probability as a percentage with sensible precision (0.68%, 32.7%)."""
    if missing(p):
        return DASH
    v = 100.0 * float(p)
    if v == 0:
        return "0%"
    return f"{v:.2g}%" if abs(v) < 1 else f"{v:.1f}%"


def pval(p: Any) -> str:
    """p- and q-values: scientific below 0.001, two significant digits above."""
    if missing(p):
        return DASH
    v = float(p)
    return f"{v:.1e}" if 0 < v < 1e-3 else f"{v:.2g}"


def or_ci(o: Any, lo: Any, hi: Any) -> str:
    """Odds ratio with its 95% CI: '2.13 (1.80–2.51)'."""
    if missing(o):
        return DASH
    return f"{num(o)} ({num(lo)}–{num(hi)})"


def sort_value(x: Any) -> str:
    """data-v attribute for numeric sorting: the raw number, '' when missing; a string is
    taken as an already made key (small-cell bounds)."""
    if isinstance(x, str):
        return x
    if missing(x):
        return ""
    v = float(x)
    if math.isinf(v):
        return "1e308" if v > 0 else "-1e308"
    return f"{v:.7g}"  # enough to order any two values the page shows apart; full repr bloats big tables


def td(text: str, v: Any = None, cls: str = "") -> str:
    """A cell whose `text` is already HTML; `v` (raw value) drives numeric sorting."""
    attrs = f' class="{cls}"' if cls else ""
    if v is not None or cls == "num":
        attrs += f' data-v="{sort_value(v)}"'
    return f"<td{attrs}>{text}</td>"


def bar(p_exposed: Any, p_base: Any, scale: float) -> str:
    """Tiny inline SVG: P(outcome | cohort) (dark) above the baseline (grey), both on the
    same scale so rows of one table compare at a glance."""
    if missing(p_exposed) and missing(p_base):
        return ""
    s = scale if scale > 0 else 1.0
    w1 = 0.0 if missing(p_exposed) else 90.0 * min(float(p_exposed) / s, 1.0)
    w2 = 0.0 if missing(p_base) else 90.0 * min(float(p_base) / s, 1.0)
    return (
        '<svg class="bar" width="92" height="14" viewBox="0 0 92 14" role="img" '
        f'aria-label="{esc(pct(p_exposed))} vs {esc(pct(p_base))}">'
        f'<rect x="1" y="1" width="{w1:.1f}" height="6" fill="#c2410c"/>'
        f'<rect x="1" y="8" width="{w2:.1f}" height="5" fill="#9aa6b2"/></svg>'
    )


def kv(items: Mapping[str, str]) -> str:
    """Definition list; values are already HTML."""
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items.items())
    return f'<dl class="kv">{rows}</dl>'


def as_list(x: Any) -> list[Any]:
    """A list column value (list, numpy array or missing) as a plain list."""
    if x is None or (not isinstance(x, (list, tuple, np.ndarray)) and missing(x)):
        return []
    return list(x)
