"""The report's one stylesheet and one script, written to `assets/` beside the pages.

Why one shared pair of files: every page (the index and hundreds of feature pages) uses the
same CSS and sorting/filter script; inlining them would add ~10 KB to every page, and the
pages' Content-Security-Policy forbids inline script and style. Relative links keep the
report working from a `file://` URL or any folder it is copied to."""

from __future__ import annotations

from pathlib import Path

from reports.templates import CSS_FILE, JS_FILE

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
.auto { width: auto; }
figure { margin: 10px 0 18px; } figcaption { font-size: 12.5px; color: var(--muted); max-width: 900px; }
svg.chart { display: block; max-width: 100%; height: auto; font: 11px system-ui, sans-serif; }
svg.chart text { fill: var(--fg); } svg.chart .ax { stroke: #8a96a3; stroke-width: 1; fill: none; }
svg.chart .grid { stroke: #e6eaef; stroke-width: 1; } svg.chart .slot { fill: #f3f5f8; }
svg.chart .m0 { fill: #1f5fa8; } svg.chart .m1 { fill: #c2410c; } svg.chart .m2 { fill: #1a7f37; }
svg.chart .s0 { stroke: #1f5fa8; } svg.chart .s1 { stroke: #c2410c; } svg.chart .s2 { stroke: #1a7f37; }
svg.chart circle { fill-opacity: .55; } svg.chart circle.hit { fill-opacity: 1; stroke: #111; stroke-width: .8; }
svg.chart .band { stroke: #9aa6b2; stroke-width: 3; stroke-opacity: .5; }
svg.chart .cut { stroke-width: 1.4; stroke-dasharray: 5 3; fill: none; }
svg.chart .lbl { font-size: 10px; } svg.chart .small { font-size: 9.5px; fill: var(--muted); }
svg.chart .bar { fill: #5b7db1; } svg.chart .bar0 { fill: #b8c2cc; } svg.chart .sup { fill: url(#hatch); }
svg.chart .thr { stroke: #c0392b; stroke-width: 1.6; stroke-dasharray: 4 3; }
svg.chart .ci { stroke: #2c3e50; stroke-width: 1.4; } svg.chart .pt { fill: #2c3e50; }
svg.chart .val .ci { stroke: #c2410c; } svg.chart .val .pt { fill: #c2410c; }
svg.chart .one { stroke: #9aa6b2; stroke-dasharray: 3 3; }
svg.chart .km-exposed { stroke: #c0392b; } svg.chart .km-unexposed { stroke: #2c3e50; }
svg.chart .aj { stroke-dasharray: 4 2; stroke-width: 1.2; }
svg.chart a:hover circle { stroke: #000; stroke-width: 1.5; fill-opacity: 1; }
svg.chart path.fam { fill-opacity: .8; stroke: #111; stroke-width: .6; }
svg.chart a:hover path.fam { stroke-width: 1.5; }
svg.chart .mem { fill-opacity: .3; } svg.chart line.tie { stroke: #8a94a3; stroke-width: .6; }
tr.member td { font-size: .92em; background: #fafafa; } tr.member td:nth-child(2) { padding-left: 18px; }
.legend { font-size: 12px; color: var(--muted); } .legend i { display: inline-block; width: 10px; height: 10px;
  border-radius: 50%; margin: 0 4px 0 10px; vertical-align: -1px; }
.legend i.m0 { background: #1f5fa8; } .legend i.m1 { background: #c2410c; } .legend i.m2 { background: #1a7f37; }
.charts { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.thumbs { display: flex; flex-wrap: wrap; gap: 14px; } .thumbs section { border: 1px solid var(--line);
  border-radius: 6px; padding: 6px 8px; } .thumbs h4 { margin: 0 0 4px; font-size: 12.5px; }
.thumb { display: inline-block; margin: 0 6px 4px 0; text-align: center; font-size: 11px; color: var(--muted);
  vertical-align: top; } .thumb img { display: block; image-rendering: pixelated; width: 96px; height: auto;
  background: #000; border: 1px solid var(--line); } .thumb .err { display: block; width: 96px; height: 60px;
  font-size: 10.5px; border: 1px dashed var(--line); padding: 4px; }
.capnote { border-left: 3px solid var(--warn); padding: 4px 10px; background: #fff8e6; font-size: 12.5px; }
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


def write_assets(out_dir: Path) -> list[Path]:
    """Write the stylesheet and script under `out_dir`; returns their paths."""
    paths = []
    for rel, text in ((CSS_FILE, CSS), (JS_FILE, JS)):
        p = Path(out_dir) / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text.lstrip("\n"), encoding="utf-8")
        paths.append(p)
    return paths
