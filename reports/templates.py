"""Static pieces of the HTML report: CSS, the sorting/filter script, the page skeleton and
value formatting.

Why here: the report must open from a file share or an air-gapped laptop years later, so
everything is inline (no CDN, fonts or templates engine), and every value from data goes
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

CSS = """
:root { --fg:#1d232b; --muted:#5f6b7a; --line:#d9dee5; --zebra:#f6f8fa; --accent:#1f5fa8;
  --bar:#c2410c; --base:#9aa6b2; --ok:#1a7f37; --warn:#9a6700; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  color: var(--fg); margin: 0 auto; padding: 24px 28px 48px; max-width: 1400px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; padding-bottom: 4px;
  border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 6px; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
.muted, .note { color: var(--muted); } .note { font-size: 12.5px; max-width: 900px; }
.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 8px 0; }
.kv dt { color: var(--muted); } .kv dd { margin: 0; font-variant-numeric: tabular-nums; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 140px; }
.card b { display: block; font-size: 20px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 14px; font-size: 13px; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; }
th { background: #eef1f5; font-weight: 600; white-space: nowrap; }
tbody tr:nth-child(even) { background: var(--zebra); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.nowrap { white-space: nowrap; }
td.label { max-width: 340px; min-width: 180px; }
table.compact { font-size: 12.5px; } table.compact td, table.compact th { padding: 4px 6px; }
table.compact th { white-space: normal; vertical-align: bottom; }
table.compact td.label { min-width: 160px; } .flag { display: inline-block; min-width: 90px; }
table.sortable th { cursor: pointer; user-select: none; position: sticky; top: 0; }
table.sortable th::after { content: " \\2195"; color: #aab3bf; font-size: 11px; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; color: var(--fg); }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; color: var(--fg); }
.scroll { max-height: 70vh; overflow: auto; border: 1px solid var(--line); }
.scroll table { margin: 0; }
.flag { color: var(--warn); font-size: 12px; }
.unranked td { color: var(--muted); }
tr.member td { font-size: .92em; background: #fafafa; }
svg.bar { vertical-align: middle; margin-left: 6px; }
.pbar { white-space: nowrap; }
input.filter { padding: 5px 8px; width: 320px; border: 1px solid var(--line); border-radius: 4px; }
details { margin: 8px 0; } summary { cursor: pointer; font-weight: 600; }
.report { border: 1px solid var(--line); border-radius: 6px; margin: 10px 0; padding: 0; }
.report header { background: var(--zebra); padding: 6px 10px; font-size: 12.5px;
  color: var(--muted); }
.report pre { margin: 0; padding: 10px; white-space: pre-wrap; word-wrap: break-word;
  font: 12.5px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
mark { background: #fde68a; padding: 0 1px; }
.terms td:first-child { font-weight: 600; }
.score { font-size: 16px; margin: 6px 0; }
footer { margin-top: 40px; font-size: 12px; color: var(--muted); border-top: 1px solid var(--line);
  padding-top: 8px; }
@media print {
  body { padding: 0; max-width: none; font-size: 10pt; }
  .noprint { display: none !important; }
  .scroll { max-height: none; overflow: visible; border: 0; }
  table.sortable th { position: static; } table.sortable th::after { content: ""; }
  tr, .report { break-inside: avoid; } h2, h3 { break-after: avoid; }
  a { color: inherit; }
}
"""

JS = """
(function () {
  function key(td) {
    var v = td.getAttribute('data-v');
    if (v === null) v = td.textContent.trim();
    return v;
  }
  function cmp(a, b, dir) {
    var ea = a === '' || a === '\\u2013', eb = b === '' || b === '\\u2013';
    if (ea || eb) return ea === eb ? 0 : (ea ? 1 : -1);
    var na = parseFloat(a), nb = parseFloat(b);
    if (isFinite(na) && isFinite(nb) && /^[-+0-9.eE]+$/.test(a) && /^[-+0-9.eE]+$/.test(b))
      return dir * (na - nb);
    return dir * a.localeCompare(b, undefined, {numeric: true, sensitivity: 'base'});
  }
  function sortBy(table, th) {
    var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
    var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
    Array.prototype.forEach.call(th.parentNode.children, function (h) {
      h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).map(function (r, i) {
      return {r: r, k: key(r.cells[idx]), i: i}; });
    rows.sort(function (x, y) { return cmp(x.k, y.k, dir) || (x.i - y.i); });
    var frag = document.createDocumentFragment();
    rows.forEach(function (x) { frag.appendChild(x.r); });
    body.appendChild(frag);
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('thead th').forEach(function (th) {
      th.setAttribute('title', 'click to sort');
      th.addEventListener('click', function () { sortBy(table, th); });
    });
  });
  document.querySelectorAll('input.filter').forEach(function (inp) {
    var table = document.getElementById(inp.getAttribute('data-table'));
    inp.addEventListener('input', function () {
      var q = inp.value.toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        r.style.display = r.textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none';
      });
    });
  });
  window.addEventListener('beforeprint', function () {
    document.querySelectorAll('details').forEach(function (d) { d.open = true; });
  });
})();
"""


def page(title: str, body: str, footer: str) -> str:
    """A complete, self-contained HTML document."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n"
        f"<footer>{footer}</footer>\n<script>{JS}</script>\n</body></html>\n"
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
    """data-v attribute for numeric sorting: the raw number, '' when missing."""
    if missing(x):
        return ""
    v = float(x)
    if math.isinf(v):
        return "1e308" if v > 0 else "-1e308"
    return repr(v)


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
