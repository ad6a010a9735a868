"""The index page: summary, Manhattan and volcano plots, outcomes, each outcome's top
features with time-to-event curves, every feature x outcome row (filterable, sortable), the
features not testable, and what the size caps left out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from data_contracts.config import ReportConfig
from reports.context import (
    OUTCOME_OPTIONAL,
    ReportData,
    Row,
    anchor,
    ba_cell,
    ba_sort,
    cases_cell,
    exposed_cell,
    feature_link,
    flag_html,
    heldout,
    outcome_names,
    p_baseline,
    p_cell,
    p_exposed,
    p_scale,
    page_name,
    rank_text,
    replicated_text,
    top_rows,
    unit_name,
)
from reports.feature_page import footer_html
from reports.index_plots import manhattan_svg, volcano_svg
from reports.survival import survival_section
from reports.templates import esc, integer, kv, missing, num, or_ci, page, pval, td

NOTE = (
    "Exposed cohort: the studies where a concept (sparse-autoencoder feature) fires most strongly. "
    "P(outcome | cohort) is the share of exposed studies with a first diagnosis within the window; baseline is "
    "over all eligible studies. q: Benjamini–Hochberg adjusted Fisher p; adjusted q: BH over the age+sex score "
    "tests. Shown: the discovery half of the patients; “–” means not ranked. Replicated: checked in the validation "
    "half (patients never in both). Label score: balanced accuracy of the label on held-out top-activating vs "
    "control reports. A feature family (a parent feature and the features that fire mostly with it or write mostly "
    "its direction) is one cohort and one row, ranked and counted in the multiple testing like a feature; its member "
    "features are listed under it (↳), tested and counted but not ranked."
)


def index_html(d: ReportData, run_info: Mapping[str, str], cfg: ReportConfig, n_candidates: int | None = None) -> str:
    parts = [_header(d, run_info, cfg), _pages_note(d, cfg, n_candidates), _plots(d), _outcomes_section(d)]
    by_outcome = dict(tuple(d.assoc.groupby("outcome_id", sort=False))) if len(d.assoc) else {}
    for o in d.outcomes.to_dict("records"):
        rows = by_outcome.get(str(o["outcome_id"]), d.assoc.iloc[:0])
        parts.append(_outcome_top(d, o, rows, cfg.top_per_outcome))
    parts += [_all_rows(d, cfg.max_table_rows), _untestable(d)]
    return page(cfg.title, "\n".join(parts), footer_html(run_info))


def _thead(cols: list[str], numeric: set[int]) -> str:
    cells = "".join(f'<th class="num">{esc(n)}</th>' if i in numeric else f"<th>{esc(n)}</th>"
                    for i, n in enumerate(cols))
    return f"<thead><tr>{cells}</tr></thead>"


def _analysed(o: Row) -> Any:
    """Studies in an outcome's binary analyses: eligible minus those left out for follow-up."""
    left = o.get("n_excluded_followup")
    if missing(o["n_eligible"]) or left is None or missing(left):
        return o["n_eligible"]
    return float(o["n_eligible"]) - float(left)


def _window(x: Any) -> str:
    return "–" if missing(x) else f"{num(x)} y"


# ---------------------------------------------------------------- summary and plots
def _header(d: ReportData, run_info: Mapping[str, str], cfg: ReportConfig) -> str:
    a = d.assoc
    cards = [("outcomes", integer(len(d.outcomes))),
             ("feature × outcome pairs tested", integer(a["p_value"].notna().sum())),
             ("pairs ranked", integer(a["rank"].notna().sum()))]
    groups = sorted(d.stats.groupby(["modality", "unit"], sort=False), key=lambda x: (x[0][0], x[0][1] == "family"))
    for (m, unit), g in groups:
        n_test = int(g["testable"].fillna(False).astype(bool).sum())
        kind = "families" if unit == "family" else "features"
        cards.append((f"{m} {kind} (testable)", f"{integer(len(g))} ({integer(n_test)})"))
    if "n_studies" in d.stats.columns and d.stats["n_studies"].notna().any():
        cards.insert(0, ("studies", d.cells.count(d.stats["n_studies"].max())))
    card_html = "".join(f'<div class="card"><b>{v}</b><span class="muted">{esc(k)}</span></div>' for k, v in cards)
    info = kv({k: esc(v) for k, v in run_info.items()}) if run_info else ""
    sup = (f" Counts of 1–{d.cells.threshold} patients or studies show as “&lt;{d.cells.limit}”, and shares that "
           "would reveal one as a bound; the artifacts hold the exact numbers." if d.cells.active else "")
    return (f"<header><h1>{esc(cfg.title)}</h1>{info}</header>"
            f'<div class="cards">{card_html}</div><p class="note">{esc(NOTE)}{sup}</p>{_methods(d)}')


def _methods(d: ReportData) -> str:
    """The associations artifact's own statement of its estimator, families and rules."""
    if d.methods is None or not len(d.methods):
        return ""
    items = "".join(f"<dt>{esc(r['topic'])}</dt><dd>{esc(r['statement'])}</dd>" for r in d.methods.to_dict("records"))
    return f'<details class="note" open><summary>Methods</summary><dl class="kv">{items}</dl></details>'


def _modalities(d: ReportData) -> list[str]:
    return sorted(set(d.assoc["modality"]) | set(d.stats["modality"]))


def _link(d: ReportData) -> Any:
    def link(m: str, u: str, f: int) -> str | None:
        return "features/" + page_name(m, u, f) if (m, u, int(f)) in d.pages else None
    return link


def _plots(d: ReportData) -> str:
    t = d.tables
    if t.manhattan is None:
        return ""
    if t.manhattan.empty:
        return ("<h2>Associations at a glance</h2><p>No feature × outcome pair has an age+sex adjusted test "
                "(see the flags in the table below): nothing to plot.</p>")
    cuts = t.fdr_cuts if t.fdr_cuts is not None else pd.DataFrame(columns=["modality", "outcome_id", "p_cut"])
    names, mods = outcome_names(d), _modalities(d)
    outcomes = [str(o) for o in d.outcomes["outcome_id"]]
    man = manhattan_svg(t.manhattan, cuts, outcomes, names, mods, _link(d), anchor, d.family_of)
    vol = volcano_svg(t.manhattan, names, mods, _link(d), d.family_of)
    legend = "".join(f'<i class="m{i}"></i>{esc(m)}' for i, m in enumerate(mods))
    fam = sorted({str(f) for f in cuts.get("family", pd.Series(dtype=object)).dropna()})
    family = f" BH family of the adjusted q-values: {', '.join(fam)}." if fam else ""
    bands = t.manhattan[t.manhattan["kind"] == "band"]
    thinned = (f" {integer(bands['n_pairs'].sum())} pairs are drawn as grey bars (their range of −log10 p) rather "
               "than one by one." if len(bands) else "")
    return (
        "<h2>Associations at a glance</h2>"
        f'<p class="legend">{legend} · large outlined points: ranked · dashed: FDR cut-off (largest p with adjusted '
        f"q &lt; alpha){_family_legend(d)} · click a point for its page, a column for its outcome."
        f"{esc(family + thinned)}</p>"
        f'<div class="charts"><figure>{man}<figcaption>Manhattan plot: outcomes on x (features by id within '
        "each), −log10 p of the age+sex adjusted score test on y.</figcaption></figure>"
        f"<figure>{vol}<figcaption>Volcano plot: adjusted odds ratio against −log10 p.</figcaption></figure></div>"
    )


def _family_legend(d: ReportData) -> str:
    if not d.families:
        return ""
    return " · diamonds: feature families, their member features faint and tied to them by a line"


def _outcomes_section(d: ReportData) -> str:
    rows = []
    counts = d.assoc.groupby("outcome_id")["rank"].count().to_dict()
    extra = [c for c in OUTCOME_OPTIONAL if c in d.outcomes.columns]
    for o in d.outcomes.to_dict("records"):
        oid = str(o["outcome_id"])
        base, base_v = d.cells.share(o["n_cases"], _analysed(o))
        rows.append(
            "<tr>" + td(f'<a href="#{anchor(oid)}">{esc(o["name"])}</a>') + td(esc(oid))
            + td(_window(o["window_years"]), o["window_years"], "num")
            + td(d.cells.count(o["n_eligible"]), d.cells.count_v(o["n_eligible"]), "num")
            + "".join(td(d.cells.count(o.get(c)), d.cells.count_v(o.get(c)), "num") for c in extra)
            + td(d.cells.part(o["n_cases"], o["n_eligible"]), d.cells.count_v(o["n_cases"]), "num")
            + td(base, base_v, "num")
            + td(integer(counts.get(oid, 0)), counts.get(oid, 0), "num") + "</tr>")
    cols = ["Outcome", "id", "Window", "Eligible", *(["Short follow-up, left out"] if extra else []), "Cases",
            "Baseline", "Ranked findings"]
    head = _thead(cols, numeric=set(range(2, len(cols))))
    note = ('<p class="muted">Short follow-up, left out: eligible studies without the outcome whose follow-up ended '
            "before the window did (not through death), left out of the binary analyses; baseline = cases / "
            "(eligible − left out).</p>") if extra else ""
    return f'<h2>Outcomes</h2><table class="sortable">{head}<tbody>{"".join(rows)}</tbody></table>{note}'


# ---------------------------------------------------------------- per outcome
TOP_COLS = ["Rank", "Feature / family", "Modality", "Label", "Exposed n (%)", "Exposed cases",
            "P(outcome | cohort) vs baseline", "OR (95% CI)", "q", "Adjusted OR (95% CI)"]


def _outcome_top(d: ReportData, o: Row, rows: pd.DataFrame, n: int) -> str:
    oid = str(o["outcome_id"])
    top = top_rows(rows, n)
    title = (f'<h2 id="{anchor(oid)}">{esc(o["name"])} <span class="muted">within '
             f"{_window(o['window_years'])}</span></h2>")
    left = o.get("n_excluded_followup")
    short = "" if left is None or missing(left) or not left else (
        f" ({d.cells.count(left)} without the outcome left out for follow-up shorter than the window)")
    base = (f'<p class="muted">{d.cells.part(o["n_cases"], _analysed(o))} cases among '
            f"{d.cells.count(o['n_eligible'])} eligible studies{short}.</p>")
    if top.empty:
        return title + base + "<p>No feature could be tested for this outcome.</p>"
    note = "" if top["rank"].notna().any() else (
        '<p class="note">No feature met the ranking criteria for this outcome; the best tested features are shown '
        "for reference, not as findings.</p>")
    scale = p_scale(top)
    per_sd = bool(top["sd_odds_ratio"].notna().any())  # the column only when the option ran
    body = "".join(_top_row(d, r, scale, per_sd, member) for r, member in grouped_rows(d, top, rows))
    cols = [*TOP_COLS, *(["OR per SD (95% CI)"] if per_sd else []), "Adjusted q", "Replicated", "Label score"]
    head = _thead(cols, numeric={0, 4, 5, 6, 7, 8, 9, 10} | ({11} if per_sd else set()) | {len(cols) - 1})
    surv = survival_section(d.part("surv", oid), d.part("curves", oid), oid,
                            lambda m, u, f: feature_link(d, m, u, f), d.cells)
    return f'{title}{base}{note}<table class="sortable">{head}<tbody>{body}</tbody></table>{surv}'


def grouped_rows(d: ReportData, top: pd.DataFrame, rows: pd.DataFrame) -> list[tuple[Row, bool]]:
    """`top` in order, each family followed by its members' rows for the same outcome
    (from `rows`, the outcome's associations; flagged True: shown under the family, not as
    findings of their own). A member already under its family is not repeated."""
    recs = top.to_dict("records")
    fams = {(r["modality"], int(r["feature_id"])) for r in recs if r["unit"] == "family"}
    out: list[tuple[Row, bool]] = []
    for r in recs:
        fam = d.family_of.get((r["modality"], int(r["feature_id"]))) if r["unit"] == "feature" else None
        if fam is not None and (r["modality"], fam) in fams:
            continue  # shown under its family
        out.append((r, False))
        if r["unit"] == "family":
            out += [(m, True) for m in _member_rows(d, rows, r)]
    return out


def _member_rows(d: ReportData, rows: pd.DataFrame, fam: Row) -> list[Row]:
    ids = d.members(fam["modality"], fam["feature_id"])
    sub = rows[(rows["modality"] == fam["modality"]) & (rows["unit"] == "feature") & rows["feature_id"].isin(ids)]
    order = {m: i for i, m in enumerate(ids)}
    return sorted(sub.to_dict("records"), key=lambda m: order[int(m["feature_id"])])


def unit_cell(d: ReportData, r: Row, member: bool = False) -> str:
    """Link to the unit; a family lists its members, a member says it is one."""
    link = feature_link(d, r["modality"], r["unit"], r["feature_id"])
    if r["unit"] == "family":
        ids = d.members(r["modality"], r["feature_id"])
        return f'{link}<br><span class="muted">{integer(len(ids))} features: ' + ", ".join(
            feature_link(d, r["modality"], "feature", f) for f in ids) + "</span>"
    return f"↳ {link}" if member else link


def _key(r: Row) -> tuple[str, str, int]:
    return (str(r["modality"]), str(r["unit"]), int(r["feature_id"]))


def _top_row(d: ReportData, r: Row, scale: float, per_sd: bool, member: bool = False) -> str:
    classes = (["unranked"] if missing(r["rank"]) else []) + (["member"] if member else [])
    cls = f' class="{" ".join(classes)}"' if classes else ""
    interp = d.interp.get(_key(r))
    return (
        f"<tr{cls}>" + td(rank_text(r), r["rank"], "num")
        + td(unit_cell(d, r, member), r["feature_id"], "nowrap")
        + td(esc(r["modality"])) + td(esc(r["label"]), cls="label")
        + exposed_cell(r, d.cells) + cases_cell(r, d.cells) + p_cell(r, scale, d.cells)
        + td(or_ci(r["odds_ratio"], r["or_ci_low"], r["or_ci_high"]), r["odds_ratio"], "num")
        + td(pval(r["q_value"]), r["q_value"], "num")
        + td(or_ci(r["adj_odds_ratio"], r["adj_or_ci_low"], r["adj_or_ci_high"]), r["adj_odds_ratio"], "num")
        + (td(or_ci(r["sd_odds_ratio"], r["sd_ci_low"], r["sd_ci_high"]), r["sd_odds_ratio"], "num") if per_sd else "")
        + td(pval(r["score_q"]), r["score_q"], "num") + td(replicated_text(r))
        + td(heldout(interp, d.cells), ba_sort(interp, d.cells), "num") + "</tr>"
    )


# ---------------------------------------------------------------- all rows
ALL_COLS = ["Modality", "Feature / family", "Label", "Outcome", "Rank", "Exposed n (%)", "Cases", "P(outcome | cohort)",
            "Baseline", "OR (95% CI)", "p", "q", "Adjusted OR (95% CI)", "Adjusted q", "Replicated", "Label score",
            "Flag"]


def _all_rows(d: ReportData, max_rows: int) -> str:
    names = outcome_names(d)
    order = {o: i for i, o in enumerate(d.outcomes["outcome_id"])}
    a = d.assoc.assign(_o=d.assoc["outcome_id"].map(order), _unranked=d.assoc["rank"].isna())
    n_all = len(a)
    if n_all > max_rows:
        # A browser table of millions of rows is unusable: keep ranked pairs, then the
        # smallest p-values; the associations artifact holds every row.
        a = a.sort_values(["_unranked", "p_value"], na_position="last", kind="mergesort").head(max_rows)
    a = a.sort_values(["_o", "modality", "rank", "p_value", "unit", "feature_id"], na_position="last",
                      kind="mergesort")
    body = "".join(_all_row(d, r, names) for r in a.to_dict("records"))
    head = _thead(ALL_COLS, numeric=set(range(4, 14)) | {15})
    shown = "" if len(a) == n_all else f" of {integer(n_all)}; all rows are in the associations artifact"
    return (
        f'<h2>All feature × outcome rows <span class="muted">({integer(len(a))}{shown})</span></h2>'
        '<p class="noprint"><input class="filter" data-table="all-rows" type="search" '
        'placeholder="Filter rows (label, outcome, flag, replicated …)" aria-label="filter rows"> '
        '<span class="muted">Click a column header to sort.</span></p>'
        f'<div class="scroll"><table id="all-rows" class="sortable compact">{head}<tbody>{body}</tbody></table></div>'
    )


def _all_row(d: ReportData, r: Row, names: Mapping[str, str]) -> str:
    interp = d.interp.get(_key(r))
    (t1, v1), (t0, v0) = p_exposed(r, d.cells), p_baseline(r, d.cells)
    return (
        "<tr>" + td(esc(r["modality"]))
        + td(feature_link(d, r["modality"], r["unit"], r["feature_id"]), r["feature_id"], "nowrap")
        + td(esc(r["label"]), cls="label") + td(esc(names.get(r["outcome_id"], r["outcome_id"])))
        + td(rank_text(r), r["rank"], "num") + exposed_cell(r, d.cells) + cases_cell(r, d.cells)
        + td(t1, v1, "num") + td(t0, v0, "num")
        + td(or_ci(r["odds_ratio"], r["or_ci_low"], r["or_ci_high"]), r["odds_ratio"], "num")
        + td(pval(r["p_value"]), r["p_value"], "num") + td(pval(r["q_value"]), r["q_value"], "num")
        + td(or_ci(r["adj_odds_ratio"], r["adj_or_ci_low"], r["adj_or_ci_high"]), r["adj_odds_ratio"], "num")
        + td(pval(r["score_q"]), r["score_q"], "num") + td(replicated_text(r))
        + ba_cell(interp, d.cells)
        + td(flag_html(r["flag"])) + "</tr>"
    )


# ---------------------------------------------------------------- untestable, caps
def _untestable(d: ReportData) -> str:
    s = d.stats
    parts = ["<h2>Features and families not testable</h2>"]
    for (m, unit), g in s.groupby(["modality", "unit"], sort=True):
        bad = g[~g["testable"].fillna(False).astype(bool)].sort_values("feature_id")
        kind = "families" if unit == "family" else "features"
        summary = f"{esc(m)}: {integer(len(bad))} of {integer(len(g))} {kind} not testable"
        if bad.empty:
            parts.append(f"<p>{summary}.</p>")
            continue
        rows = "".join(
            "<tr>" + td(esc(unit_name(str(m), str(unit), r["feature_id"])), r["feature_id"])
            + td(flag_html(r.get("flag")) or "–")
            + td(d.cells.count(r.get("n_active")), d.cells.count_v(r.get("n_active")), "num")
            + td(d.cells.count(r.get("cohort_size")), d.cells.count_v(r.get("cohort_size")), "num") + "</tr>"
            for r in bad.to_dict("records"))
        head = _thead(["Unit", "Flag", "Active studies", "Cohort size"], numeric={2, 3})
        parts.append(f'<details><summary>{summary}</summary><table class="sortable">{head}'
                     f"<tbody>{rows}</tbody></table></details>")
    return "".join(parts)


def _pages_note(d: ReportData, cfg: ReportConfig, n_candidates: int | None) -> str:
    """Which features have a page, and what the caps left out (said on the page)."""
    p = d.tables.pages
    if p is None:
        return ""
    n_all, n_sel = len(p), int(p["selected"].sum())
    n_written = len(d.pages)
    msg = (f"Feature pages: {integer(n_written)} of {integer(n_all)} features and families that rank for an outcome "
           "or are listed in report.pages (and the members of those families).")
    if n_sel < n_all:
        msg += f" Capped by report.max_feature_pages ({integer(cfg.max_feature_pages)})."
    if n_candidates is not None and n_written < min(n_candidates, n_sel):
        msg += f" Capped by the report size limit (report.max_total_mb {num(cfg.max_total_mb)} MB)."
    if n_written < n_all:
        msg += " Units without a page are in the tables below and in every artifact."
        return f'<p class="capnote">{esc(msg)}</p>'
    return f'<p class="note">{esc(msg)}</p>'
