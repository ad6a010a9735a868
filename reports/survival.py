"""Time-to-event block of an outcome: Cox HR, Kaplan-Meier cumulative incidence at the
window with its CI, log-rank p, and per hit an inline-SVG cumulative-incidence curve with
its yearly at-risk table (discovery split; the validation split's HR alongside).

Why inline SVG: the report must stay one self-contained file set with no script library.
"""

from __future__ import annotations

import pandas as pd

from reports.templates import esc, integer, missing, or_ci, pct, pval, td

W, H, PAD = 320, 150, 28
COLOURS = {"exposed": "#c0392b", "unexposed": "#2c3e50"}


def _hr(r: dict) -> str:
    return or_ci(r.get("hazard_ratio"), r.get("hr_ci_low"), r.get("hr_ci_high"))


def _cuminc(r: dict, g: str) -> str:
    v = r.get(f"cuminc_{g}")
    if missing(v):
        return "–"
    return f"{pct(v)} ({pct(r[f'cuminc_{g}_low'])}–{pct(r[f'cuminc_{g}_high'])})"


def km_svg(curve: pd.DataFrame) -> str:
    """Step curves of cumulative incidence per group, scaled to the plotted maximum."""
    if curve.empty:
        return ""
    t_max = float(curve["time_days"].max()) or 1.0
    y_max = max(float(curve["ci_high"].fillna(curve["cum_incidence"]).max()), 1e-3)
    paths = []
    for group, g in curve.sort_values("time_days").groupby("group"):
        pts, last = [], 0.0
        for t, y in zip(g["time_days"], g["cum_incidence"], strict=True):
            x = PAD + (W - PAD - 4) * t / t_max
            pts.append(f"{x:.1f},{H - PAD - (H - PAD - 4) * last / y_max:.1f}")
            pts.append(f"{x:.1f},{H - PAD - (H - PAD - 4) * y / y_max:.1f}")
            last = y
        paths.append(f'<polyline fill="none" stroke="{COLOURS.get(str(group), "#888")}" stroke-width="1.6" '
                     f'points="{" ".join(pts)}"><title>{esc(group)}</title></polyline>')
    axes = (f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 4}" y2="{H - PAD}" stroke="#999"/>'
            f'<line x1="{PAD}" y1="4" x2="{PAD}" y2="{H - PAD}" stroke="#999"/>'
            f'<text x="2" y="12" font-size="9">{pct(y_max)}</text>'
            f'<text x="{W - 60}" y="{H - 8}" font-size="9">{t_max / 365.25:.1f} years</text>')
    return (f'<svg width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" '
            f'aria-label="cumulative incidence">{axes}{"".join(paths)}</svg>')


def at_risk_table(curve: pd.DataFrame) -> str:
    years = curve[curve["year"].notna()]
    if years.empty:
        return ""
    cols = sorted(int(y) for y in years["year"].unique())
    head = "<tr><th>At risk</th>" + "".join(f'<th class="num">year {y}</th>' for y in cols) + "</tr>"
    body = ""
    for group, g in years.groupby("group"):
        by = dict(zip(g["year"].astype(int), g["n_at_risk"], strict=True))
        body += f"<tr><td>{esc(group)}</td>" + "".join(td(integer(by.get(y)), by.get(y), "num") for y in cols)
        body += "</tr>"
    return f'<table class="compact">{head}{body}</table>'


def survival_section(surv: pd.DataFrame, curves: pd.DataFrame, outcome_id: str, link: object) -> str:
    """The outcome's time-to-event block; `link(modality, unit, feature_id)` renders a
    feature or family."""
    if surv is None or surv.empty:
        return ""
    s = surv[surv["outcome_id"] == outcome_id]
    disc = s[s["split"] == "discovery"].sort_values(["modality", "rank", "unit", "feature_id"])
    if disc.empty:
        return ""
    val = s[s["split"] == "validation"].set_index(["modality", "unit", "feature_id"])
    mine = curves[(curves["outcome_id"] == outcome_id) & (curves["split"] == "discovery")]
    by_hit = dict(tuple(mine.groupby(["modality", "unit", "feature_id"], sort=False)))
    rows = []
    for r in disc.to_dict("records"):
        key = (r["modality"], r["unit"], r["feature_id"])
        v = val.loc[[key]].iloc[0].to_dict() if key in val.index else {}
        c = by_hit.get(key, mine.iloc[:0])
        rows.append(
            "<tr>" + td(link(r["modality"], r["unit"], r["feature_id"]), r["feature_id"], "nowrap")  # type: ignore[operator]
            + td(_hr(r), r.get("hazard_ratio"), "num") + td(_hr(v), v.get("hazard_ratio"), "num")
            + td(_cuminc(r, "exposed"), r.get("cuminc_exposed"), "num")
            + td(_cuminc(r, "unexposed"), r.get("cuminc_unexposed"), "num")
            + td(_aj(r), r.get("aj_cuminc_exposed"), "num")
            + td(pval(r.get("logrank_p")), r.get("logrank_p"), "num")
            + td(km_svg(c) + at_risk_table(c)) + td(esc(r.get("flag") or "")) + "</tr>")
    head = ("<thead><tr><th>Feature / family</th><th>Cause-specific HR discovery (95% CI)</th><th>HR validation</th>"
            "<th>Cum. incidence exposed (1 − KM)</th><th>Unexposed</th>"
            "<th>Aalen–Johansen exposed / unexposed</th><th>Log-rank p</th>"
            "<th>Cumulative incidence, 1 − KM (red: exposed)</th><th>Flag</th></tr></thead>")
    return ('<h3>Time to event, top hits</h3><p class="note">Cox hazard ratio adjusted for age and '
            "sex, cause-specific: deaths are censored, so it compares outcome hazards among the living. "
            "Cumulative incidence at the window: 1 − Kaplan–Meier with 95% CI, censored at the end of "
            "follow-up and at death (the risk were no one to die), and beside it Aalen–Johansen, with "
            "death a competing event (the risk in this population).</p>"
            f'<table>{head}<tbody>{"".join(rows)}</tbody></table>')


def _aj(r: dict) -> str:
    e, u = r.get("aj_cuminc_exposed"), r.get("aj_cuminc_unexposed")
    return "–" if missing(e) and missing(u) else f"{pct(e)} / {pct(u)}"
