"""Self-contained HTML report: an index of which concepts foretell which outcomes, and one
page per notable feature (label, held-out label score, activation statistics, all its
associations, top-activating reports).

Why static HTML with inline CSS/JS: the report is what a clinical researcher opens,
forwards and archives; it has to work from a file share without a server or network and
print cleanly. Inputs are the pipeline's artifacts (contracts ASSOCIATIONS,
INTERPRETATIONS, FEATURE_STATS) plus two small tables built by the report task.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pandas as pd

from data_contracts.config import ReportConfig
from reports.context import (
    ReportData,
    Row,
    build_data,
    exposed_pct,
    feature_link,
    flag_html,
    heldout,
    normalise_reports,
    p_cell,
    p_scale,
    page_name,
    rank_text,
    replicated_text,
    unit_name,
)
from reports.feature_page import feature_html, footer_html
from reports.survival import survival_section
from reports.templates import as_list, esc, fixed2, integer, kv, missing, num, or_ci, page, pct, pval, td

__all__ = ["page_name", "render_report"]


def render_report(
    out_dir: Path,
    associations: pd.DataFrame,
    interpretations: pd.DataFrame,
    feature_stats: pd.DataFrame,
    top_reports: pd.DataFrame,
    outcomes: pd.DataFrame,
    run_info: dict[str, str],
    cfg: ReportConfig,
    survival: pd.DataFrame | None = None,
    km_curves: pd.DataFrame | None = None,
    families: pd.DataFrame | None = None,
    methods: pd.DataFrame | None = None,
) -> list[Path]:
    """Write `index.html` and `features/<modality>_[family_]<id>.html` for every feature
    or family that is ranked for some outcome or among an outcome's top
    `cfg.top_per_outcome` rows. `families`: FAMILIES rows with a modality column.
    Returns the written paths, index first."""
    out_dir = Path(out_dir)
    data = build_data(associations, interpretations, feature_stats, outcomes, cfg, survival, km_curves, families)
    data = replace(data, methods=methods)
    (out_dir / "features").mkdir(parents=True, exist_ok=True)
    index = out_dir / "index.html"
    index.write_text(index_html(data, run_info, cfg), encoding="utf-8")
    written = [index]
    reports = normalise_reports(top_reports)
    per_page = {(str(m), str(u), int(f)): g for (m, u, f), g in cast(
        Iterable[tuple[tuple[str, str, float], pd.DataFrame]], reports.groupby(["modality", "unit", "feature_id"]))}
    for key in sorted(data.pages):
        path = out_dir / "features" / page_name(*key)
        page_reports = per_page.get(key, reports.iloc[0:0])
        path.write_text(feature_html(data, key, page_reports, run_info, cfg), encoding="utf-8")
        written.append(path)
    return written


def index_html(d: ReportData, run_info: Mapping[str, str], cfg: ReportConfig) -> str:
    """The index page: summary, per-outcome top features, all rows, untestable features."""
    parts = [_header(d, run_info, cfg), _outcomes_section(d)]
    parts += [_outcome_top(d, o, cfg.top_per_outcome) for o in d.outcomes.to_dict("records")]
    parts += [_all_rows(d, cfg.max_table_rows), _untestable(d)]
    return page(cfg.title, "\n".join(parts), footer_html(run_info))


def _anchor(outcome_id: str) -> str:
    return "o-" + re.sub(r"[^A-Za-z0-9_-]", "_", outcome_id)


def _names(d: ReportData) -> dict[str, str]:
    return {
        str(o): str(n) if not missing(n) else str(o)
        for o, n in zip(d.outcomes["outcome_id"], d.outcomes["name"], strict=True)
    }


# ---------------------------------------------------------------- summary
def _header(d: ReportData, run_info: Mapping[str, str], cfg: ReportConfig) -> str:
    a = d.assoc
    cards = [
        ("outcomes", integer(len(d.outcomes))),
        ("feature × outcome pairs tested", integer(a["p_value"].notna().sum())),
        ("pairs ranked", integer(a["rank"].notna().sum())),
    ]
    for (m, unit), g in d.stats.groupby(["modality", "unit"], sort=True):
        n_test = int(g["testable"].fillna(False).astype(bool).sum())
        kind = "families" if unit == "family" else "features"
        cards.append((f"{m} {kind} (testable)", f"{integer(len(g))} ({integer(n_test)})"))
    if "n_studies" in d.stats.columns and d.stats["n_studies"].notna().any():
        cards.insert(0, ("studies", integer(d.stats["n_studies"].max())))
    card_html = "".join(
        f'<div class="card"><b>{v}</b><span class="muted">{esc(k)}</span></div>' for k, v in cards
    )
    info = kv({k: esc(v) for k, v in run_info.items()}) if run_info else ""
    return (
        f"<header><h1>{esc(cfg.title)}</h1>{info}</header>"
        f'<div class="cards">{card_html}</div>'
        '<p class="note">Exposed cohort: the studies where a concept (sparse-autoencoder '
        "feature) fires most strongly. P(outcome | cohort) is the share of exposed studies "
        "with a first diagnosis within the window; baseline is over all eligible studies. "
        "q: Benjamini–Hochberg adjusted Fisher p; adjusted q: BH over the age+sex score tests. "
        "Shown: the discovery half of the patients; “–” means not ranked. Replicated: checked "
        "in the validation half (patients never in both). Label score: balanced accuracy of "
        "the label on held-out top-activating vs control reports. A feature family (a parent "
        "feature and the features that fire mostly with it or write mostly its direction) is "
        "one cohort and one row, ranked and counted in the multiple testing like a feature; "
        "its member features are listed under it, tested and counted but not ranked.</p>" + _methods(d)
    )


def _methods(d: ReportData) -> str:
    """The association artifact's own statement of its estimator and families."""
    if d.methods is None or not len(d.methods):
        return ""
    items = "".join(f"<dt>{esc(r['topic'])}</dt><dd>{esc(r['statement'])}</dd>" for r in d.methods.to_dict("records"))
    return f'<details class="note" open><summary>Methods</summary><dl>{items}</dl></details>'


def _outcomes_section(d: ReportData) -> str:
    ranked = d.assoc[d.assoc["rank"].notna()].groupby("outcome_id").size()
    rows = []
    for o in d.outcomes.to_dict("records"):
        oid = str(o["outcome_id"])
        n_ranked = int(ranked.get(oid, 0))
        n_an = _analysed(o)
        base = o["n_cases"] / n_an if n_an else None
        rows.append(
            "<tr>"
            + td(f'<a href="#{_anchor(oid)}">{esc(o["name"])}</a>')
            + td(esc(oid))
            + td(_window(o["window_years"]), o["window_years"], "num")
            + td(integer(o["n_eligible"]), o["n_eligible"], "num")
            + td(integer(o["n_excluded_followup"]), o["n_excluded_followup"], "num")
            + td(integer(o["n_cases"]), o["n_cases"], "num")
            + td(pct(base), base, "num")
            + td(integer(n_ranked), n_ranked, "num")
            + "</tr>"
        )
    head = _thead(
        ["Outcome", "id", "Window", "Eligible", "Short follow-up, left out", "Cases", "Baseline",
         "Ranked features"],
        numeric={2, 3, 4, 5, 6, 7},
    )
    note = ('<p class="muted">Short follow-up, left out: eligible studies without the outcome whose '
            "follow-up ended before the window did (not through death), left out of the binary "
            "analyses; baseline = cases / (eligible &minus; left out).</p>")
    return f'<h2>Outcomes</h2><table class="sortable">{head}<tbody>{"".join(rows)}</tbody></table>{note}'


def _analysed(o: Row) -> float | None:
    """Studies in an outcome's binary analyses: eligible minus those left out."""
    if missing(o["n_eligible"]):
        return None
    left_out = 0 if missing(o.get("n_excluded_followup")) else o["n_excluded_followup"]
    return float(o["n_eligible"] - left_out)


def _window(x: Any) -> str:
    return "–" if missing(x) else f"{num(x)} y"


def _thead(names: list[str], numeric: set[int]) -> str:
    cells = "".join(
        f'<th class="num">{esc(n)}</th>' if i in numeric else f"<th>{esc(n)}</th>"
        for i, n in enumerate(names)
    )
    return f"<thead><tr>{cells}</tr></thead>"


# ---------------------------------------------------------------- per outcome
def _outcome_top(d: ReportData, o: Row, n: int) -> str:
    oid = str(o["outcome_id"])
    rows = d.top_rows(oid)
    title = (
        f'<h2 id="{_anchor(oid)}">{esc(o["name"])} <span class="muted">'
        f"within {_window(o['window_years'])}</span></h2>"
    )
    left_out = o.get("n_excluded_followup")
    short = "" if missing(left_out) or not left_out else (
        f" ({integer(left_out)} without the outcome left out for follow-up shorter than the window)")
    base = (
        f'<p class="muted">{integer(o["n_cases"])} cases among {integer(o["n_eligible"])} '
        f"eligible studies{short}.</p>"
    )
    if rows.empty:
        return title + base + "<p>No feature could be tested for this outcome.</p>"
    note = (
        ""
        if rows["rank"].notna().any()
        else (
            '<p class="note">No feature met the ranking criteria for this outcome; the best '
            "tested features are shown for reference, not as findings.</p>"
        )
    )
    scale = p_scale(rows)
    per_sd = bool(rows["sd_odds_ratio"].notna().any())  # the column only when the option ran
    body = "".join(_top_row(d, r, scale, per_sd, member) for r, member in grouped_rows(d, rows))
    head = _thead(
        [
            "Rank",
            "Feature",
            "Modality",
            "Label",
            "Exposed n (%)",
            "P(outcome | cohort) vs baseline",
            "OR (95% CI)",
            "q",
            "Adjusted OR (95% CI)",
            *(["OR per SD (95% CI)"] if per_sd else []),
            "Adjusted q",
            "Replicated",
            "Label score",
        ],
        numeric={0, 4, 5, 6, 7, 8, 9, 10, 12} if per_sd else {0, 4, 5, 6, 7, 8, 9, 11},
    )
    surv = survival_section(d.surv, d.curves, oid, lambda m, u, f: feature_link(d, m, u, f))  # type: ignore[arg-type]
    return f'{title}{base}{note}<table class="sortable">{head}<tbody>{body}</tbody></table>{surv}'


def grouped_rows(d: ReportData, rows: pd.DataFrame) -> list[tuple[Row, bool]]:
    """Rows in order, each family followed by its members' rows for the same outcome
    (flagged True: shown under the family, not as findings of their own)."""
    recs = rows.to_dict("records")
    fams = {(r["modality"], int(r["feature_id"]), r["outcome_id"]) for r in recs if r["unit"] == "family"}
    out: list[tuple[Row, bool]] = []
    for r in recs:
        fam = d.family_of.get((r["modality"], int(r["feature_id"]))) if r["unit"] == "feature" else None
        if fam is not None and (r["modality"], fam, r["outcome_id"]) in fams:
            continue  # shown under its family
        out.append((r, False))
        if r["unit"] == "family":
            key = (str(r["modality"]), int(r["feature_id"]), str(r["outcome_id"]))
            out += [(m, True) for m in d.member_rows.get(key, [])]
    return out


def unit_cell(d: ReportData, r: Row, member: bool = False) -> str:
    """Link to the unit; a family lists its members, a member says it is one."""
    link = feature_link(d, r["modality"], r["unit"], r["feature_id"])
    if r["unit"] == "family":
        fam = d.families.get((r["modality"], int(r["feature_id"])))
        ids = as_list(None if fam is None else fam.get("members"))
        return f'{link}<br><span class="muted">{integer(len(ids))} features: ' + ", ".join(
            feature_link(d, r["modality"], "feature", int(f)) for f in ids) + "</span>"
    return f"↳ {link}" if member else link


def _top_row(d: ReportData, r: Row, scale: float, per_sd: bool = False, member: bool = False) -> str:
    share = exposed_pct(r)
    classes = (["unranked"] if missing(r["rank"]) else []) + (["member"] if member else [])
    cls = f' class="{" ".join(classes)}"' if classes else ""
    return (
        f"<tr{cls}>"
        + td(rank_text(r), r["rank"], "num")
        + td(unit_cell(d, r, member), r["feature_id"], "nowrap")
        + td(esc(r["modality"]))
        + td(esc(r["label"]), cls="label")
        + td(f"{integer(r['n_exposed'])} ({pct(share)})", r["n_exposed"], "num")
        + p_cell(r, scale)
        + td(or_ci(r["odds_ratio"], r["or_ci_low"], r["or_ci_high"]), r["odds_ratio"], "num")
        + td(pval(r["q_value"]), r["q_value"], "num")
        + td(or_ci(r["adj_odds_ratio"], r["adj_or_ci_low"], r["adj_or_ci_high"]), r["adj_odds_ratio"], "num")
        + (td(or_ci(r["sd_odds_ratio"], r["sd_ci_low"], r["sd_ci_high"]), r["sd_odds_ratio"], "num") if per_sd else "")
        + td(pval(r["score_q"]), r["score_q"], "num")
        + td(replicated_text(r))
        + td(heldout(d.interp.get(_key(r))), _ba(d, r), "num")
        + "</tr>"
    )


def _key(r: Row) -> tuple[str, str, int]:
    return (str(r["modality"]), str(r["unit"]), int(r["feature_id"]))


def _ba(d: ReportData, r: Row) -> Any:
    row = d.interp.get(_key(r))
    return None if row is None else row.get("heldout_balanced_accuracy")


# ---------------------------------------------------------------- all rows
def _all_rows(d: ReportData, max_rows: int) -> str:
    names = _names(d)
    order = {o: i for i, o in enumerate(d.outcomes["outcome_id"])}
    a = d.assoc.assign(_o=d.assoc["outcome_id"].map(order), _unranked=d.assoc["rank"].isna())
    n_all = len(a)
    if n_all > max_rows:
        # A browser table of millions of rows is unusable: keep ranked pairs, then the
        # smallest p-values; the associations artifact holds every row.
        a = a.sort_values(["_unranked", "p_value"], na_position="last", kind="mergesort").head(max_rows)
    a = a.sort_values(
        ["_o", "modality", "rank", "p_value", "unit", "feature_id"], na_position="last", kind="mergesort"
    )
    body = "".join(_all_row(d, r, names) for r in a.to_dict("records"))
    head = _thead(
        [
            "Modality",
            "Feature",
            "Label",
            "Outcome",
            "Rank",
            "Exposed n (%)",
            "Cases",
            "P(outcome | cohort)",
            "Baseline",
            "OR (95% CI)",
            "p",
            "q",
            "Label score",
            "Flag",
        ],
        numeric=set(range(4, 13)),
    )
    return (
        f'<h2>All feature × outcome rows <span class="muted">({integer(len(a))}'
        f'{"" if len(a) == n_all else f" of {integer(n_all)}; all rows are in the associations artifact"})'
        "</span>"
        '</h2><p class="noprint"><input class="filter" data-table="all-rows" type="search" '
        'placeholder="Filter rows (label, outcome, flag …)" aria-label="filter rows"> '
        '<span class="muted">Click a column header to sort.</span></p>'
        f'<div class="scroll"><table id="all-rows" class="sortable compact">{head}<tbody>'
        f"{body}</tbody></table></div>"
    )


def _all_row(d: ReportData, r: Row, names: Mapping[str, str]) -> str:
    ba = _ba(d, r)
    return (
        "<tr>"
        + td(esc(r["modality"]))
        + td(feature_link(d, r["modality"], r["unit"], r["feature_id"]), r["feature_id"], "nowrap")
        + td(esc(r["label"]), cls="label")
        + td(esc(names.get(r["outcome_id"], r["outcome_id"])))
        + td(rank_text(r), r["rank"], "num")
        + td(f"{integer(r['n_exposed'])} ({pct(exposed_pct(r))})", r["n_exposed"], "num")
        + td(integer(r["n_exposed_cases"]), r["n_exposed_cases"], "num")
        + td(pct(r["p_outcome_exposed"]), r["p_outcome_exposed"], "num")
        + td(pct(r["p_outcome_baseline"]), r["p_outcome_baseline"], "num")
        + td(or_ci(r["odds_ratio"], r["or_ci_low"], r["or_ci_high"]), r["odds_ratio"], "num")
        + td(pval(r["p_value"]), r["p_value"], "num")
        + td(pval(r["q_value"]), r["q_value"], "num")
        + td(fixed2(ba), ba, "num")
        + td(flag_html(r["flag"]))
        + "</tr>"
    )


# ---------------------------------------------------------------- untestable
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
            "<tr>"
            + td(esc(unit_name(str(m), str(unit), r["feature_id"])), r["feature_id"])
            + td(flag_html(r.get("flag")) or "–")
            + td(integer(r.get("n_active")), r.get("n_active"), "num")
            + td(integer(r.get("cohort_size")), r.get("cohort_size"), "num")
            + "</tr>"
            for r in bad.to_dict("records")
        )
        head = _thead(["Unit", "Flag", "Active studies", "Cohort size"], numeric={2, 3})
        parts.append(
            f'<details><summary>{summary}</summary><table class="sortable">{head}'
            f"<tbody>{rows}</tbody></table></details>"
        )
    return "".join(parts)
