"""Time-to-event blocks: on the index per outcome (its top hits), on a feature page per
outcome the feature is a top hit for. Cox HR, Kaplan-Meier cumulative incidence at the
window with its CI, log-rank p, and an inline-SVG cumulative-incidence curve with its
yearly at-risk table (discovery split; the validation split's HR alongside).

Small cells: a group with 1..threshold events gets no curve and no cumulative incidence
(each step of a curve is an event), curves stop where fewer than the limit remain at risk,
and at-risk counts are suppressed like every other count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from reports.cells import SmallCells
from reports.context import with_unit
from reports.svg import Scale, f1, nice_ticks, svg, text, title, x_axis, y_axis
from reports.templates import esc, missing, or_ci, pct, pval, td

W, H, LEFT, TOP, BOTTOM = 340, 170, 40, 8, 140
GROUPS = ("exposed", "unexposed")
Link = Callable[[str, str, int], str]  # (modality, unit, feature_id) -> the unit's cell


def _hr(r: Mapping) -> str:
    return or_ci(r.get("hazard_ratio"), r.get("hr_ci_low"), r.get("hr_ci_high"))


def group_events(r: Mapping) -> dict[str, object]:
    """Events per group of a SURVIVAL row."""
    n, e = r.get("n_events"), r.get("n_exposed_events")
    return {"exposed": e, "unexposed": None if n is None or e is None or missing(n) or missing(e)
            else float(n) - float(e)}


def _aj(r: Mapping, cells: SmallCells) -> str:
    """Aalen-Johansen cumulative incidence (death competing) of both groups, when computed."""
    vals = []
    for g in GROUPS:
        v = r.get(f"aj_cuminc_{g}")
        vals.append("–" if v is None or missing(v) else
                    f"&lt;{cells.limit} events" if cells.hidden(group_events(r)[g]) else pct(v))
    return " / ".join(vals)


def _cuminc(r: Mapping, g: str, cells: SmallCells) -> str:
    v = r.get(f"cuminc_{g}")
    if missing(v):
        return "–"
    if cells.hidden(group_events(r)[g]):
        return f'<span class="muted">suppressed (&lt;{cells.limit} events)</span>'
    return f"{pct(v)} ({pct(r[f'cuminc_{g}_low'])}–{pct(r[f'cuminc_{g}_high'])})"


def km_svg(curve: pd.DataFrame, hidden: set[str], cells: SmallCells) -> str:
    """Step curves of cumulative incidence per group; groups in `hidden` are not drawn and
    a curve stops where fewer than the suppression limit remain at risk."""
    if curve.empty:
        return ""
    t_max = float(curve["time_days"].max()) or 1.0
    shown = curve[~curve["group"].isin(hidden)]
    if cells.active:
        shown = shown[shown["n_at_risk"] >= cells.limit]
    y_max = max(float(shown["cum_incidence"].max()) if len(shown) else 0.0, 1e-3) * 1.1  # AJ <= 1 - KM
    sx, sy = Scale(0.0, t_max / 365.25, LEFT, W - 6), Scale(0.0, y_max, BOTTOM, TOP)
    yt = nice_ticks(0.0, y_max, 4)
    parts = [y_axis(sy, yt, LEFT, W - 6 - LEFT, [pct(v) for v in yt]),
             x_axis(sx, nice_ticks(0.0, t_max / 365.25, 4), BOTTOM),
             text((LEFT + W) / 2, H - 2, "years since the study", "small", "middle")]
    for group, g in shown.sort_values("time_days").groupby("group", sort=True):
        for col, cls, what in (("cum_incidence", "", "1 − KM"), ("aj_cum_incidence", " aj", "Aalen–Johansen")):
            if col not in g.columns or g[col].isna().all():
                continue
            pts = _steps(g["time_days"].to_numpy() / 365.25, g[col].to_numpy(), sx, sy)
            parts.append(f'<polyline fill="none" stroke-width="1.6" class="km-{esc(group)}{cls}" '
                         f'points="{" ".join(pts)}">{title(f"{group}, {what}")}</polyline>')
    return svg(W, H, "".join(parts), "cumulative incidence")


def _steps(t: Any, y: Any, sx: Scale, sy: Scale) -> list[str]:
    """Step-curve vertices at display resolution: a KM table has a row at every follow-up
    time (tens of thousands on a real cohort); only the jumps and the last time matter, and
    points that land on the same pixel coordinates are drawn once."""
    out: list[str] = []
    last_y = 0.0
    for i, (ti, yi) in enumerate(zip(t, y, strict=True)):
        if yi == last_y and i < len(t) - 1:
            continue  # a censoring time: the curve stays flat
        x = f1(sx(float(ti)))
        for v in (f"{x},{f1(sy(last_y))}", f"{x},{f1(sy(float(yi)))}"):
            if not out or out[-1] != v:
                out.append(v)
        last_y = float(yi)
    return out


def at_risk_table(curve: pd.DataFrame, cells: SmallCells) -> str:
    years = curve[curve["year"].notna()]
    if years.empty:
        return ""
    cols = sorted(int(y) for y in years["year"].unique())
    head = "<tr><th>At risk</th>" + "".join(f'<th class="num">year {y}</th>' for y in cols) + "</tr>"
    body = ""
    for group, g in years.groupby("group"):
        by = dict(zip(g["year"].astype(int), g["n_at_risk"], strict=True))
        body += f"<tr><td>{esc(group)}</td>" + "".join(
            td(cells.count(by.get(y)), cells.count_v(by.get(y)), "num") for y in cols) + "</tr>"
    return f'<table class="compact auto">{head}{body}</table>'


def _hidden(r: Mapping, cells: SmallCells) -> set[str]:
    return {g for g, e in group_events(r).items() if cells.hidden(e)}


def _rows(disc: pd.DataFrame, val: pd.DataFrame, curves: pd.DataFrame, first: Callable[[dict], str],
          cells: SmallCells, aj: bool) -> str:
    key_cols = ["modality", "unit", "feature_id", "outcome_id"]
    by_hit = dict(tuple(curves.groupby(key_cols, sort=False))) if len(curves) else {}
    vi = val.set_index(key_cols) if len(val) else None
    rows = []
    for r in disc.to_dict("records"):
        key = (r["modality"], r["unit"], r["feature_id"], r["outcome_id"])
        v = vi.loc[[key]].iloc[0].to_dict() if vi is not None and key in vi.index else {}
        c = by_hit.get(key, curves.iloc[:0])
        rows.append(
            "<tr>" + first(r) + td(_hr(r), r.get("hazard_ratio"), "num") + td(_hr(v), v.get("hazard_ratio"), "num")
            + td(_cuminc(r, "exposed", cells)) + td(_cuminc(r, "unexposed", cells))
            + (td(_aj(r, cells), None, "num") if aj else "")
            + td(pval(r.get("logrank_p")), r.get("logrank_p"), "num")
            + td(km_svg(c, _hidden(r, cells), cells) + at_risk_table(c, cells)) + td(esc(r.get("flag") or ""))
            + "</tr>")
    return "".join(rows)


def _head(first: str, aj: bool) -> str:
    return (f"<thead><tr><th>{first}</th><th>Cause-specific HR discovery (95% CI)</th><th>HR validation</th>"
            "<th>Cum. incidence exposed (1 − KM)</th><th>Unexposed</th>"
            + ("<th>Aalen–Johansen exposed / unexposed</th>" if aj else "")
            + "<th>Log-rank p</th><th>Cumulative incidence (red: exposed"
            + ("; dashed: Aalen–Johansen" if aj else "") + ")</th><th>Flag</th></tr></thead>")


NOTE = ('<p class="note">Cox hazard ratio adjusted for age and sex, cause-specific (deaths are censored: it compares '
        "outcome hazards among the living). Cumulative incidence at the window: 1 − Kaplan–Meier with 95% CI, "
        "censored at the end of follow-up and at death{aj}.{sup}</p>")


def _note(cells: SmallCells, aj: bool) -> str:
    sup = (f" Curves stop where fewer than {cells.limit} studies remain at risk; a group with fewer than "
           f"{cells.limit} events has no curve.") if cells.active else ""
    ajt = ", and Aalen–Johansen with death a competing event (the risk in this population)" if aj else ""
    return NOTE.format(sup=sup, aj=ajt)


def _has_aj(surv: pd.DataFrame) -> bool:
    return "aj_cuminc_exposed" in surv.columns and bool(surv["aj_cuminc_exposed"].notna().any())


def _split(surv: pd.DataFrame | None, mask: Callable[[pd.DataFrame], pd.Series]) -> tuple[pd.DataFrame, pd.DataFrame]:
    if surv is None or surv.empty:
        return pd.DataFrame(), pd.DataFrame()
    surv = with_unit(surv)
    s = surv[mask(surv)]
    return s[s["split"] == "discovery"], s[s["split"] == "validation"]


def survival_section(surv: pd.DataFrame | None, curves: pd.DataFrame | None, outcome_id: str, link: Link,
                     cells: SmallCells) -> str:
    """The outcome's time-to-event block on the index; `link(modality, unit, feature_id)`."""
    disc, val = _split(surv, lambda s: s["outcome_id"] == outcome_id)
    if disc.empty or curves is None:
        return ""
    disc = disc.sort_values(["modality", "rank", "unit", "feature_id"])
    curves = with_unit(curves)
    mine = curves[(curves["outcome_id"] == outcome_id) & (curves["split"] == "discovery")]
    aj = _has_aj(disc)
    body = _rows(disc, val, mine, lambda r: td(link(r["modality"], r["unit"], r["feature_id"]), r["feature_id"],
                                                  "nowrap"), cells, aj)
    return (f"<h3>Time to event, top hits</h3>{_note(cells, aj)}<table>{_head('Feature / family', aj)}<tbody>{body}"
            "</tbody></table>")


def feature_survival(surv: pd.DataFrame | None, curves: pd.DataFrame | None, key: tuple[str, str, int],
                     names: Mapping[str, str], cells: SmallCells, max_outcomes: int) -> str:
    """A feature page's time-to-event block: the outcomes it is a top hit for, best rank
    first, at most `max_outcomes`."""
    disc, val = _split(surv, lambda s: (s["modality"] == key[0]) & (s["unit"] == key[1]) & (s["feature_id"] == key[2]))
    if disc.empty or curves is None:
        return ""
    n_all = len(disc)
    disc = disc.sort_values(["rank", "outcome_id"]).head(max_outcomes)
    more = "" if n_all == len(disc) else (f'<p class="note">Shown: {len(disc)} of {n_all} outcomes (best rank '
                                          "first); all are in the survival artifact.</p>")
    curves = with_unit(curves)
    mine = curves[(curves["modality"] == key[0]) & (curves["unit"] == key[1]) & (curves["feature_id"] == key[2])
                  & (curves["split"] == "discovery")]
    aj = _has_aj(disc)
    body = _rows(disc, val, mine, lambda r: td(esc(names.get(r["outcome_id"], r["outcome_id"]))), cells, aj)
    return (f"<h2>Cumulative incidence</h2>{_note(cells, aj)}<table>{_head('Outcome', aj)}<tbody>{body}</tbody>"
            f"</table>{more}")
