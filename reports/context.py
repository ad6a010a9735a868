"""Report inputs normalised once, and the table cells shared by the index and the
feature pages.

Why: the artifacts arrive from parquet with nullable integers, NaN, numpy arrays in list
columns and optional columns; normalising here means the page builders never meet a
dtype surprise and every page formats a value the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from data_contracts.config import ReportConfig
from data_contracts.report_tables import ReportTables
from reports.cells import SmallCells
from reports.templates import DASH, bar, esc, integer, missing, td

FeatureKey = tuple[str, int]
Row = Mapping[Any, Any]  # one record of a DataFrame (to_dict("records"))
_ASSOC_NEEDS = ("modality", "feature_id", "outcome_id", "n_exposed", "n_exposed_cases", "n_unexposed",
                "n_unexposed_cases")
_ASSOC_OPTIONAL = (
    "p_outcome_exposed",
    "p_outcome_baseline",
    "odds_ratio",
    "or_ci_low",
    "or_ci_high",
    "p_value",
    "q_value",
    "rank",
    "n_ranked",
    "n_tested",
    "flag",
    "adj_odds_ratio",
    "adj_or_ci_low",
    "adj_or_ci_high",
    "adj_p_value",
    "adj_method",
    "score_p",
    "score_q",
    "replicated",
    "sd_odds_ratio",  # option or_per_sd
    "sd_ci_low",
    "sd_ci_high",
)


_NUMERIC = ("rank", "n_ranked", "n_tested", "odds_ratio", "or_ci_low", "or_ci_high", "p_value", "q_value",
            "p_outcome_exposed", "p_outcome_baseline", "n_exposed", "n_exposed_cases", "n_unexposed",
            "n_unexposed_cases", "adj_odds_ratio", "adj_or_ci_low", "adj_or_ci_high", "adj_p_value", "score_p",
            "score_q", "sd_odds_ratio", "sd_ci_low", "sd_ci_high")


@dataclass(frozen=True)
class ReportData:
    """Inputs normalised once: associations joined with labels, lookups by feature."""

    assoc: pd.DataFrame
    interp: dict[FeatureKey, Row]
    stats: pd.DataFrame
    outcomes: pd.DataFrame  # outcome_id, name, window_years, n_eligible, n_cases
    pages: frozenset[FeatureKey]  # features with a page (written, within the caps)
    surv: pd.DataFrame | None = None  # SURVIVAL rows
    curves: pd.DataFrame | None = None  # KM_CURVES rows
    tables: ReportTables = field(default_factory=ReportTables)
    cells: SmallCells = field(default_factory=SmallCells)
    show_ids: bool = False
    by_feature: Mapping[FeatureKey, pd.DataFrame] | None = None  # association rows of each page feature
    methods: pd.DataFrame | None = None  # the associations' own statement of estimator and families

    def feature_rows(self, key: FeatureKey) -> pd.DataFrame:
        if self.by_feature is not None:
            return self.by_feature.get(key, self.assoc.iloc[:0])
        a = self.assoc
        return a[(a["modality"] == key[0]) & (a["feature_id"] == key[1])]


def page_name(modality: str, feature_id: int) -> str:
    """File name of a feature page; the modality is reduced to safe characters."""
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', str(modality))}_{int(feature_id)}.html"


# ---------------------------------------------------------------- inputs
def _require(df: pd.DataFrame, cols: Iterable[str], what: str) -> None:
    missing_cols = [c for c in cols if c not in df.columns]
    if missing_cols:
        raise ValueError(f"render_report: {what} lacks columns {missing_cols}")


def build_data(
    assoc: pd.DataFrame,
    interp: pd.DataFrame,
    stats: pd.DataFrame,
    outcomes: pd.DataFrame,
    cfg: ReportConfig,
    surv: pd.DataFrame | None = None,
    curves: pd.DataFrame | None = None,
    tables: ReportTables | None = None,
) -> ReportData:
    """Normalise dtypes (nullable ints, NaN) and join labels onto associations. With a
    `split` column only the discovery rows are shown (ranks live there); `replicated`
    carries the validation result. Pages: the selected rows of `tables.pages`."""
    _require(assoc, _ASSOC_NEEDS, "associations")
    if "split" in assoc.columns:
        assoc = assoc[assoc["split"] == "discovery"]
    _require(interp, ("modality", "feature_id", "label"), "interpretations")
    _require(stats, ("modality", "feature_id", "testable"), "feature_stats")
    a = assoc.copy()
    for c in _ASSOC_OPTIONAL:
        if c not in a.columns:
            a[c] = None
    for c in _NUMERIC:
        a[c] = pd.to_numeric(a[c], errors="coerce").astype("float64")
    a["feature_id"] = a["feature_id"].astype("int64")
    a["modality"] = a["modality"].astype(str)
    a["outcome_id"] = a["outcome_id"].astype(str)
    table = _interp_table(interp)
    labels = {k: v.get("label") for k, v in table.items()}
    a["label"] = [labels.get((m, f)) for m, f in zip(a["modality"], a["feature_id"], strict=True)]
    s = stats.assign(
        modality=stats["modality"].astype(str), feature_id=stats["feature_id"].astype("int64")
    )
    t = tables or ReportTables()
    pages = t.pages[t.pages["selected"]] if t.pages is not None else pd.DataFrame(columns=["modality", "feature_id"])
    keys = frozenset(zip(pages["modality"].astype(str), pages["feature_id"].astype(int), strict=True))
    mine = a[a["feature_id"].isin({f for _, f in keys})]
    groups = mine.groupby(["modality", "feature_id"], sort=False)
    by = {(str(m), int(str(f))): g for (m, f), g in groups if (str(m), int(str(f))) in keys}
    return ReportData(a, table, s, _outcome_table(outcomes, a), keys, surv, curves, t,
                      SmallCells(cfg.small_cell), cfg.show_ids, by)


def _interp_table(interp: pd.DataFrame) -> dict[FeatureKey, Row]:
    """(modality, feature_id) -> its interpretation record."""
    out: dict[FeatureKey, Row] = {}
    for row in interp.to_dict("records"):
        out[(str(row["modality"]), int(row["feature_id"]))] = row
    return out


# n_excluded_followup: eligible event-free studies the binary analyses leave out for
# follow-up shorter than the window (issue 16); the baseline is over the rest.
OUTCOME_OPTIONAL = ("n_excluded_followup",)


def _outcome_table(outcomes: pd.DataFrame, assoc: pd.DataFrame) -> pd.DataFrame:
    """Outcomes in their defined order, plus any that only appear in associations."""
    cols = ["outcome_id", "name", "window_years", "n_eligible", "n_cases"]
    o = outcomes.copy() if "outcome_id" in outcomes.columns else pd.DataFrame(columns=cols)
    for c in cols:
        if c not in o.columns:
            o[c] = None
    keep = cols + [c for c in OUTCOME_OPTIONAL if c in o.columns]
    o = o[keep].assign(outcome_id=o["outcome_id"].astype(str))
    extra = [x for x in pd.unique(assoc["outcome_id"]) if x not in set(o["outcome_id"])]
    if extra:
        o = pd.concat([o, pd.DataFrame({"outcome_id": extra, "name": extra})], ignore_index=True)
    return o.drop_duplicates("outcome_id").reset_index(drop=True)


def normalise_reports(top: pd.DataFrame) -> pd.DataFrame:
    cols = ["modality", "feature_id", "study_id", "rank", "value", "report_text"]
    t = top.copy()
    for c in cols:
        if c not in t.columns:
            t[c] = None
    t = t[cols].assign(modality=t["modality"].astype(str))
    t["feature_id"] = pd.to_numeric(t["feature_id"], errors="coerce")
    t["rank"] = pd.to_numeric(t["rank"], errors="coerce")
    return t.dropna(subset=["feature_id"]).sort_values(["rank", "study_id"], na_position="last")


def top_rows(rows: pd.DataFrame, n: int) -> pd.DataFrame:
    """An outcome's top rows (`rows`: its associations), up to n per modality (ranks are
    within modality): ranked rows by rank, then, when fewer than n are ranked, the best
    other tested rows by q- and p-value, which the pages show as not ranked."""
    g = rows[rows["rank"].notna() | rows["p_value"].notna()]
    g = g.sort_values(["modality", "rank", "q_value", "p_value", "feature_id"], na_position="last", kind="mergesort")
    top = g.groupby("modality", sort=True).head(n)
    return top.sort_values(["rank", "q_value", "p_value", "modality", "feature_id"], na_position="last",
                           kind="mergesort")


# ---------------------------------------------------------------- shared cells
def anchor(outcome_id: str) -> str:
    """Id of an outcome's section on the index."""
    return "o-" + re.sub(r"[^A-Za-z0-9_-]", "_", str(outcome_id))


def outcome_names(d: ReportData) -> dict[str, str]:
    return {str(o): str(o) if missing(n) else str(n) for o, n in zip(d.outcomes["outcome_id"], d.outcomes["name"],
                                                                        strict=True)}


def feature_link(ctx: ReportData, modality: str, fid: int, prefix: str = "features/") -> str:
    text = f"{esc(modality)} #{int(fid)}"
    if (modality, int(fid)) in ctx.pages:
        return f'<a href="{esc(prefix + page_name(modality, fid))}">{text}</a>'
    return text


def rank_text(r: Row) -> str:
    """'r of n tested' (n: the pairs of this modality and outcome with a test)."""
    if missing(r["rank"]):
        return DASH
    n = r.get("n_tested")
    return f"{int(r['rank'])} of {integer(r['n_ranked'] if missing(n) else n)}"


def replicated_text(r: Row) -> str:
    v = r.get("replicated")
    return DASH if missing(v) else ("yes" if bool(v) else "no")


HELDOUT = ("n_heldout_top_hits", "n_heldout_top", "n_heldout_control_hits", "n_heldout_control")


def heldout(row: Row | None, cells: SmallCells) -> str:
    """'0.91 [0.84–0.95] (43/50 vs 7/150)': balanced accuracy, its 95% CI when the
    interpretation has one, then held-out hits (small counts suppressed)."""
    if row is None or missing(row.get("heldout_balanced_accuracy")):
        return DASH
    counts = tuple(row.get(c) for c in HELDOUT)
    ci = ba_ci(row, cells)
    return (
        f"{cells.score(row['heldout_balanced_accuracy'], counts)}{f' [{ci}]' if ci else ''} "
        f'<span class="muted">({cells.fraction(counts[0], counts[1])} vs '
        f"{cells.fraction(counts[2], counts[3])})</span>"
    )


BA_CI = (("ba_ci_low", "ba_ci_high"), ("heldout_ba_ci_low", "heldout_ba_ci_high"))  # Wilson 95% (issue 13)


def ba_ci(row: Row, cells: SmallCells) -> str:
    """The balanced accuracy's 95% CI from the interpretations artifact ('' when absent)."""
    counts = tuple(row.get(c) for c in HELDOUT)
    for lo, hi in BA_CI:
        if not missing(row.get(lo)) and not missing(row.get(hi)):
            return f"{cells.score(row[lo], counts)}–{cells.score(row[hi], counts)}"
    return ""


def ba_sort(row: Row | None, cells: SmallCells) -> Any:
    """Sort key of a label score: the balanced accuracy as shown (rounded when suppressed)."""
    if row is None or missing(row.get("heldout_balanced_accuracy")):
        return None
    return float(cells.score(row["heldout_balanced_accuracy"], tuple(row.get(c) for c in HELDOUT)).lstrip("≈"))


def ba_cell(row: Row | None, cells: SmallCells) -> str:
    """Table cell of the balanced accuracy alone (the all-rows table)."""
    if row is None:
        return td(DASH, None, "num")
    text = cells.score(row.get("heldout_balanced_accuracy"), tuple(row.get(c) for c in HELDOUT))
    return td(text, ba_sort(row, cells), "num")


def exposed_cell(r: Row, cells: SmallCells) -> str:
    """'1,234 (12.3%)': exposed studies and their share of the eligible ones."""
    n1, n0 = r["n_exposed"], r["n_unexposed"]
    share, _ = cells.share(n1, n1 + n0 if not (missing(n1) or missing(n0)) else None)
    return td(f"{cells.count(n1)} ({share})", cells.count_v(n1), "num")


def cases_cell(r: Row, cells: SmallCells) -> str:
    return td(cells.part(r["n_exposed_cases"], r["n_exposed"]), cells.count_v(r["n_exposed_cases"]), "num")


def p_exposed(r: Row, cells: SmallCells) -> tuple[str, str]:
    return cells.share(r["n_exposed_cases"], r["n_exposed"], r["p_outcome_exposed"])


def p_baseline(r: Row, cells: SmallCells) -> tuple[str, str]:
    k = r["n_exposed_cases"] + r["n_unexposed_cases"]
    return cells.share(k, r["n_exposed"] + r["n_unexposed"], r["p_outcome_baseline"])


def p_cell(r: Row, scale: float, cells: SmallCells) -> str:
    """P(outcome | cohort) vs baseline with a bar pair; a suppressed share draws no bar."""
    (t1, v1), (t0, _) = p_exposed(r, cells), p_baseline(r, cells)
    k0, n0 = r["n_exposed_cases"] + r["n_unexposed_cases"], r["n_exposed"] + r["n_unexposed"]
    b1 = None if cells.reveals(r["n_exposed_cases"], r["n_exposed"]) else r["p_outcome_exposed"]
    b0 = None if cells.reveals(k0, n0) else r["p_outcome_baseline"]
    return td(f'<span class="pbar">{t1} vs {t0}{bar(b1, b0, scale)}</span>', v1, "num")


def p_scale(rows: pd.DataFrame) -> float:
    vals = pd.concat([rows["p_outcome_exposed"], rows["p_outcome_baseline"]]).dropna()
    return float(vals.max()) if len(vals) else 1.0


def flag_html(x: Any) -> str:
    return "" if missing(x) or x == "" else f'<span class="flag">{esc(x)}</span>'
