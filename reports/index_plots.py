"""The index's Manhattan and volcano plots, drawn from the MANHATTAN and FDR_CUTS tables.

Manhattan: outcomes side by side on x (each a slot linking to its section), features within
an outcome by feature id, -log10 of the age+sex-adjusted score-test p on y; dashed: the FDR
cut-off of each modality and outcome; outlined and labelled: ranked pairs; diamonds:
feature families, their member features faint and tied to the family by a thin line (one
finding, its parts under it). Volcano: the
adjusted OR (log axis) against the same -log10 p. Pairs the table summarises as bands (too
many to draw one by one) show as a grey bar over their range of -log10 p.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from reports.context import unit_name
from reports.svg import Scale, f1, line, nice_ticks, svg, text, title, x_axis, y_axis
from reports.templates import esc, integer, missing, num, pval, ratio_from_log

Link = Callable[[str, str, int], str | None]  # (modality, unit, feature_id) -> href of its page, or None
FamilyOf = Mapping[tuple[str, int], int]  # (modality, member feature) -> its family
MAX_LABELS = 30
OR_CAP = math.log(100.0)  # volcano x range: beyond ORs 1/100..100 points sit at the edge


def _y_scale(points: pd.DataFrame, cuts: pd.DataFrame | None, top: float, bottom: float) -> tuple[Scale, list[float]]:
    """-log10 p from 0 to above the highest point, band and cut-off (at least 2)."""
    vals = [points["neglog10_p"].max(), points["neglog10_p_max"].max()]
    if cuts is not None and cuts["p_cut"].notna().any():
        vals.append(float(-np.log10(cuts["p_cut"].dropna().clip(lower=1e-300)).max()))
    y_max = max([2.0, *(float(v) for v in vals if not missing(v))]) * 1.08
    return Scale(0.0, y_max, bottom, top), nice_ticks(0.0, y_max)


def _point(x: float, y: float, r: dict, cls: str, tip: str, href: str | None, member: bool = False) -> str:
    """A point (a diamond for a family, faint for a family's member); ranked ones and ones
    with a page get a tooltip (the others stay bare: at thousands of points the tooltips
    would be most of the page)."""
    hit = not missing(r["rank"])
    size = 3.4 if hit else 2.4
    cls += (" hit" if hit else "") + (" mem" if member else "")
    if r.get("unit") == "family":
        d = size * 1.5
        shape = "path"
        attrs = (f'd="M{f1(x)} {f1(y - d)}L{f1(x + d)} {f1(y)}L{f1(x)} {f1(y + d)}L{f1(x - d)} {f1(y)}Z" '
                 f'class="{cls} fam"')
    else:
        shape, attrs = "circle", f'cx="{f1(x)}" cy="{f1(y)}" r="{size}" class="{cls}"'
    if not hit and not href:
        return f"<{shape} {attrs}/>"
    mark = f"<{shape} {attrs}>{title(tip)}</{shape}>"
    return f'<a href="{esc(href)}">{mark}</a>' if href else mark


def _tip(r: dict, names: Mapping[str, str], family_of: FamilyOf | None = None) -> str:
    rank = "" if missing(r["rank"]) else f" · rank {int(r['rank'])}"
    orr = "" if missing(r["log_or"]) else f" · adj. OR {num(ratio_from_log(r['log_or']))}"
    fam = _family(r, family_of or {})
    part = "" if fam is None else f" (in family #{fam})"
    return (f"{_name(r)}{part} · {names.get(r['outcome_id'], r['outcome_id'])} · "
            f"p {pval(10 ** -r['neglog10_p'])}{orr}{rank}")


def _unit(r: dict) -> str:
    return "feature" if missing(r.get("unit")) else str(r["unit"])


def _name(r: dict) -> str:
    return unit_name(str(r["modality"]), _unit(r), int(r["feature_id"]))


def _family(r: dict, family_of: FamilyOf) -> int | None:
    """The family a member feature's point belongs to (None: a family, or in none)."""
    return None if _unit(r) != "feature" else family_of.get((str(r["modality"]), int(r["feature_id"])))


def manhattan_svg(points: pd.DataFrame, cuts: pd.DataFrame, outcomes: Sequence[str], names: Mapping[str, str],
                  modalities: Sequence[str], link: Link, anchor: Callable[[str], str],
                  family_of: FamilyOf | None = None) -> str:
    """The Manhattan plot; `outcomes` in display order, `modalities` in colour order."""
    family_of = family_of or {}
    if points.empty or not outcomes:
        return ""
    width, left, right, top = 960, 52, 12, 12
    show_names = len(outcomes) <= 40
    bottom = 340 - (92 if show_names else 26)
    sy, ticks = _y_scale(points, cuts, top, bottom)
    slot = (width - left - right) / len(outcomes)
    pos = {o: i for i, o in enumerate(outcomes)}
    colour = {m: i for i, m in enumerate(modalities)}
    fmax = points[points["kind"] == "point"].groupby("modality")["feature_id"].max().to_dict()
    parts = [_slots(outcomes, names, slot, left, top, bottom, anchor, show_names),
             y_axis(sy, ticks, left, width - left - right),
             text(14, (top + bottom) / 2, "−log10 p (age+sex adjusted)", "small", "middle", -90)]
    for r in cuts[cuts["p_cut"].notna()].to_dict("records"):
        if r["outcome_id"] in pos:
            y, x0 = sy(-math.log10(max(r["p_cut"], 1e-300))), left + pos[r["outcome_id"]] * slot
            tip = (f"FDR cut-off, {r['modality']}: p ≤ {pval(r['p_cut'])} (BH family: {r.get('family') or '–'}; "
                   f"{integer(r['n_pass'])} of {integer(r['n_tests'])} pairs of this outcome pass)")
            parts.append(f'<g class="cut s{colour.get(r["modality"], 0)}">{line(x0 + 1, y, x0 + slot - 1, y, "cut")}'
                         f"{title(tip)}</g>")
    labels = _label_keys(points)
    drawn: dict[tuple[str, str, int, str], tuple[float, float]] = {}  # point -> (x, y), for the family ties
    for r in points.to_dict("records"):
        if r["outcome_id"] not in pos:
            continue
        x0 = left + pos[r["outcome_id"]] * slot
        if r["kind"] == "band":
            tip = (f"{integer(r['n_pairs'])} {r['modality']} pairs not drawn one by one: −log10 p "
                   f"{r['neglog10_p']:.2f}–{r['neglog10_p_max']:.2f}")
            xc = x0 + slot / 2
            parts.append(f'<g>{line(xc, sy(r["neglog10_p"]), xc, sy(r["neglog10_p_max"]), "band")}{title(tip)}</g>')
            continue
        n = float(fmax.get(r["modality"], 0)) + 1.0
        x = x0 + slot * (0.1 + 0.8 * (int(r["feature_id"]) + 0.5) / n)
        y = sy(r["neglog10_p"])
        drawn[(r["modality"], _unit(r), int(r["feature_id"]), r["outcome_id"])] = (x, y)
        parts.append(_point(x, y, r, f"m{colour.get(r['modality'], 0)}", _tip(r, names, family_of),
                            link(r["modality"], _unit(r), int(r["feature_id"])), _family(r, family_of) is not None))
        if (r["modality"], _unit(r), r["feature_id"], r["outcome_id"]) in labels:
            parts.append(text(x + 5, y - 4, _name(r), "lbl"))
    parts.insert(3, _ties(drawn, family_of))
    return svg(width, 340, "".join(parts), "Manhattan plot of feature × outcome associations")


def _ties(drawn: Mapping[tuple[str, str, int, str], tuple[float, float]], family_of: FamilyOf) -> str:
    """A thin line from each drawn member point to its family's point of the same outcome
    (drawn under the points)."""
    out = []
    for (m, unit, f, o), (x, y) in drawn.items():
        fam = family_of.get((m, f)) if unit == "feature" else None
        at = None if fam is None else drawn.get((m, "family", fam, o))
        if at is not None:
            out.append(line(x, y, at[0], at[1], "tie"))
    return "".join(out)


def _slots(outcomes: Sequence[str], names: Mapping[str, str], slot: float, left: float, top: float, bottom: float,
           anchor: Callable[[str], str], show_names: bool) -> str:
    parts = []
    for i, o in enumerate(outcomes):
        x0 = left + i * slot
        fill = 'class="slot"' if i % 2 == 0 else 'fill="none"'
        shade = f'<rect x="{f1(x0)}" y="{top}" width="{f1(slot)}" height="{f1(bottom - top)}" {fill}/>'
        parts.append(f'<a href="#{esc(anchor(o))}">{shade}{title(names.get(o, o))}</a>')
        if show_names:
            name = names.get(o, o)
            parts.append(text(x0 + slot / 2, bottom + 12, name if len(name) <= 26 else name[:25] + "…", "small",
                              "end", -35))
    parts.append(line(left, bottom, left + slot * len(outcomes), bottom, "ax"))
    return "".join(parts)


def _label_keys(points: pd.DataFrame) -> set[tuple[str, str, int, str]]:
    """The best-ranked pair of each (modality, outcome), at most MAX_LABELS by p."""
    hits = points[(points["kind"] == "point") & (points["rank"] == 1)]
    hits = hits.sort_values(["neglog10_p", "modality", "outcome_id"], ascending=[False, True, True]).head(MAX_LABELS)
    units = hits["unit"].fillna("feature") if "unit" in hits.columns else pd.Series("feature", index=hits.index)
    return set(zip(hits["modality"], units, hits["feature_id"], hits["outcome_id"], strict=True))


def volcano_svg(points: pd.DataFrame, names: Mapping[str, str], modalities: Sequence[str], link: Link,
                family_of: FamilyOf | None = None) -> str:
    """Adjusted OR (log axis, clipped at 1/100..100) against -log10 p of the drawn points."""
    family_of = family_of or {}
    pts = points[(points["kind"] == "point") & points["log_or"].notna()]
    if pts.empty:
        return ""
    width, height, left, top, bottom = 480, 340, 52, 12, 300
    lim = min(max(float(pts["log_or"].abs().max()), math.log(4.0)), OR_CAP)
    sx = Scale(-lim, lim, left, width - 12)
    sy, ticks = _y_scale(pts, None, top, bottom)
    step = 1 if lim <= math.log(20.0) else 2  # powers of 2, or of 4 on a wide axis
    x_ticks = [math.log(2.0**k) for k in range(-8, 9, step) if abs(k * math.log(2.0)) <= lim + 1e-9]
    colour = {m: i for i, m in enumerate(modalities)}
    parts = [y_axis(sy, ticks, left, width - 12 - left),
             x_axis(sx, x_ticks, bottom, [f"{math.exp(t):.3g}" for t in x_ticks]),
             line(sx(0.0), top, sx(0.0), bottom, "one"),
             text((left + width) / 2, height - 8, "adjusted odds ratio (log scale)", "small", "middle"),
             text(14, (top + bottom) / 2, "−log10 p", "small", "middle", -90)]
    for r in pts.sort_values(["rank"], na_position="first", kind="mergesort").to_dict("records"):
        clipped = abs(r["log_or"]) > lim
        tip = _tip(r, names, family_of) + (" (beyond the axis)" if clipped else "")
        parts.append(_point(sx(r["log_or"]), sy(r["neglog10_p"]), r, f"m{colour.get(r['modality'], 0)}", tip,
                            link(r["modality"], _unit(r), int(r["feature_id"])), _family(r, family_of) is not None))
    return svg(width, height, "".join(parts), "Volcano plot: adjusted odds ratio against p")
