"""A feature page's figures: activation histogram (ACTIVATION_HISTOGRAMS), forest plot of
adjusted ORs across outcomes in discovery and validation (FOREST), and the strip of CT
thumbnails of its top-activating studies beside controls (THUMBNAILS)."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping

import pandas as pd

from reports.cells import SmallCells
from reports.svg import HATCH, Scale, f1, line, nice_ticks, svg, text, title, x_axis, y_axis
from reports.templates import esc, missing, num, or_ci

OR_RANGE = (0.01, 100.0)


# ---------------------------------------------------------------- histogram
def histogram_svg(hist: pd.DataFrame, threshold: float | None, cells: SmallCells) -> str:
    """Bars over activation values > 0 (equal widths), the not-firing studies as a bar of
    their own (another scale: usually most studies), the cohort threshold as a dashed line.
    A bin of 1..threshold studies is drawn hatched at the suppression limit, whatever its
    true height."""
    if hist.empty:
        return ""
    width, height, top, bottom, left0, left = 520, 210, 14, 172, 44, 118
    h = hist.sort_values("bin")
    zero, pos = h[h["bin"] == 0], h[h["bin"] > 0]
    shown = [cells.limit if cells.hidden(n) else float(n) for n in pos["n_studies"]]
    sy = Scale(0.0, max([1.0, *shown]) * 1.05, bottom, top)
    hi = float(pos["hi"].max()) if len(pos) else 1.0
    sx = Scale(0.0, hi, left, width - 10)
    parts = [y_axis(sy, nice_ticks(0.0, sy.d1, 4), left, width - 10 - left), x_axis(sx, nice_ticks(0.0, hi, 5), bottom)]
    if len(zero):
        n0 = zero["n_studies"].iloc[0]
        parts.append(f'<rect x="{left0}" y="{top + 12}" width="40" height="{bottom - top - 12}" class="bar0">'
                     f"{title(f'{cells.plain(n0)} studies where the feature does not fire')}</rect>")
        parts.append(text(left0 + 20, top + 8, cells.plain(n0), "small", "middle"))
        parts.append(text(left0 + 20, bottom + 14, "0", "small", "middle"))
    for (lo, hi_, n), s in zip(pos[["lo", "hi", "n_studies"]].itertuples(index=False), shown, strict=True):
        if n == 0:
            continue
        x0, x1, y = sx(lo), sx(hi_), sy(s)
        cls = "sup" if cells.hidden(n) else "bar"
        tip = title(f"{num(lo)}–{num(hi_)}: {cells.plain(n)} studies")
        parts.append(f'<rect x="{f1(x0 + 0.5)}" y="{f1(y)}" width="{f1(max(x1 - x0 - 1, 0.8))}" '
                     f'height="{f1(bottom - y)}" class="{cls}">{tip}</rect>')
    if threshold is not None and not missing(threshold):
        x = sx(float(threshold))
        what = f"cohort ≥ {num(threshold)}" if float(threshold) > 0 else "cohort: every study where it fires"
        parts.append(line(x, top, x, bottom, "thr") + text(x + 4, top + 10, what, "small"))
    parts.append(text((left + width) / 2, height - 6, "activation (studies where it fires)", "small", "middle"))
    parts.append(text(12, (top + bottom) / 2, "studies", "small", "middle", -90))
    return svg(width, height, "".join(parts), "activation histogram", HATCH)


# ---------------------------------------------------------------- forest plot
def _or_scale(rows: pd.DataFrame, x0: float, x1: float) -> Scale:
    vals = pd.concat([rows["adj_or_ci_low"], rows["adj_or_ci_high"], rows["adj_odds_ratio"]]).astype(float)
    vals = vals[(vals > 0) & vals.map(math.isfinite)]
    lo = min([1.0, *vals.tolist()]) if len(vals) else 0.5
    hi = max([1.0, *vals.tolist()]) if len(vals) else 2.0
    lo, hi = max(lo, OR_RANGE[0]), min(hi, OR_RANGE[1])
    return Scale(math.log(lo) - 0.1, math.log(hi) + 0.1, x0, x1)


def _positive(v: object) -> float | None:
    return None if v is None or missing(v) or not float(v) > 0 else float(v)  # type: ignore[arg-type]


def _ci_mark(r: Mapping, sx: Scale, y: float) -> str:
    o, lo, hi = (_positive(r.get(c)) for c in ("adj_odds_ratio", "adj_or_ci_low", "adj_or_ci_high"))
    if o is None:
        return text((sx.r0 + sx.r1) / 2, y + 3.5, "–", "small", "middle")

    def lx(v: float) -> float:
        return sx(math.log(min(max(v, OR_RANGE[0]), OR_RANGE[1])))

    ci = "" if lo is None or hi is None else line(lx(lo), y, lx(hi), y, "ci")
    x = lx(o)
    return (f'<g>{ci}<rect x="{f1(x - 3)}" y="{f1(y - 3)}" width="6" height="6" class="pt"/>'
            f"{title(or_ci(o, lo, hi))}</g>")


def forest_svg(rows: pd.DataFrame, names: Mapping[str, str]) -> str:
    """One row per outcome; discovery (dark) and validation (orange) panels side by side on
    one log-OR axis; ranked outcomes in bold with their rank. On a family's page each
    outcome's row is followed by its member features' rows ("↳ #id", faint)."""
    if rows.empty:
        return ""
    order = rows.drop_duplicates("row").sort_values("row")
    n = len(order)
    width, name_w, panel, gap, top = 700, 220, 220, 20, 28
    bottom = top + 16 * n + 4
    scales = [_or_scale(rows, name_w + i * (panel + gap), name_w + i * (panel + gap) + panel) for i in (0, 1)]
    parts = []
    for i, (sx, head) in enumerate(zip(scales, ("Discovery", "Validation"), strict=True)):
        parts.append(text((sx.r0 + sx.r1) / 2, 14, head, "lbl", "middle"))
        parts.append(line(sx(0.0), top - 4, sx(0.0), bottom, "one"))
        ticks = [math.log(v) for v in (0.1, 0.25, 0.5, 1, 2, 4, 10, 25, 100) if sx.d0 <= math.log(v) <= sx.d1]
        axis = x_axis(sx, ticks, bottom, [f"{math.exp(t):g}" for t in ticks])
        parts.append(f'<g class="{"val" if i else "disc"}">{axis}</g>')
    by = {(r["row"], r["split"]): r for r in rows.to_dict("records")}
    for k, r in enumerate(order.to_dict("records")):
        y = top + 16 * k + 8
        member = r.get("member")
        if member is not None and not missing(member):
            label, cls = f"↳ feature #{int(member)}", "small"
        else:
            name = names.get(r["outcome_id"], r["outcome_id"])
            label = (name if len(name) <= 30 else name[:29] + "…") + (
                "" if missing(r["rank"]) else f" (#{int(r['rank'])})")
            cls = "lbl" if not missing(r["rank"]) else "small"
        parts.append(text(name_w - 8, y + 3.5, label, cls, "end"))
        for sx, split in zip(scales, ("discovery", "validation"), strict=True):
            mark = _ci_mark(by.get((r["row"], split), {}), sx, y)
            parts.append(f'<g class="val">{mark}</g>' if split == "validation" else mark)
    return svg(width, bottom + 22, "".join(parts), "forest plot of adjusted odds ratios")


# ---------------------------------------------------------------- thumbnails
def _img(r: Mapping, who: str) -> str:
    if missing(r.get("png")) or r.get("png") is None:
        reason = r.get("error") if not missing(r.get("error")) else "no image"
        return f'<span class="err">{esc(r["view"])}: image unavailable ({esc(reason)})</span>'
    data = base64.b64encode(bytes(r["png"])).decode("ascii")
    return (f'<img src="data:image/png;base64,{data}" width="{int(r["width"])}" height="{int(r["height"])}" '
            f'alt="{esc(r["view"])} slice, {esc(who)}">')


def thumbnails_html(thumbs: pd.DataFrame, show_ids: bool, window: tuple[float, float]) -> str:
    """Mid-axial over mid-coronal slice per study: top-activating studies, then controls."""
    if thumbs.empty:
        return ""
    groups = []
    for role, head in (("exposed", "Top-activating studies"), ("control", "Controls (feature does not fire)")):
        g = thumbs[thumbs["role"] == role].sort_values(["rank", "view"])
        items = []
        for rank, s in g.groupby("rank", sort=True):
            who = f"{'top' if role == 'exposed' else 'control'} #{int(str(rank))}"
            cap = who + (f" · study {esc(s['study_id'].iloc[0])}" if show_ids else "")
            imgs = "".join(_img(r, who) for r in s.sort_values("view").to_dict("records"))
            items.append(f'<div class="thumb">{imgs}{cap}</div>')
        if items:
            groups.append(f"<section><h4>{head}</h4>{''.join(items)}</section>")
    return (f'<div class="thumbs">{"".join(groups)}</div><p class="note">Mid-axial (top) and mid-coronal (bottom) '
            f"slices, radiological orientation (patient's right on the left), HU window {num(window[0])} to "
            f"{num(window[1])}, downsampled.</p>")
