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
from reports.templates import DASH, as_list, bar, esc, integer, missing, td

FeatureKey = tuple[str, str, int]  # (modality, unit, feature_id): a feature, or a family (its parent's id)
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
    stats_of: Mapping[FeatureKey, Row] = field(default_factory=dict)  # FEATURE_STATS row of each unit
    families: Mapping[tuple[str, int], Row] = field(default_factory=dict)  # (modality, family_id) -> FAMILIES row
    family_of: Mapping[tuple[str, int], int] = field(default_factory=dict)  # (modality, feature) -> its family
    # Rows of the big tables split once by outcome and by unit: with hundreds of outcomes
    # and pages, scanning every row (string compares) per outcome and page dominated.
    parts: Mapping[tuple[str, Any], pd.DataFrame] = field(default_factory=dict)

    def part(self, table: str, key: Any) -> pd.DataFrame | None:
        """Rows of `table` (surv, curves, forest, histograms, thumbnails) for an outcome id
        (surv, curves) or a unit key; None when the table is absent."""
        src = self._source(table)
        if src is None:
            return None
        return self.parts.get((table, key), src.iloc[:0])

    def _source(self, table: str) -> pd.DataFrame | None:
        return {"surv": self.surv, "curves": self.curves}.get(table, getattr(self.tables, table, None))

    def feature_rows(self, key: FeatureKey) -> pd.DataFrame:
        if self.by_feature is not None:
            return self.by_feature.get(key, self.assoc.iloc[:0])
        a = self.assoc
        return a[(a["modality"] == key[0]) & (a["unit"] == key[1]) & (a["feature_id"] == key[2])]

    def stats_row(self, key: FeatureKey) -> Row | None:
        return self.stats_of.get(key)

    def members(self, modality: str, family_id: int) -> list[int]:
        """A family's member features, parent first ([] for an unknown family)."""
        return [int(m) for m in as_list((self.families.get((modality, int(family_id))) or {}).get("members"))]


def page_name(modality: str, unit: str, feature_id: int) -> str:
    """File name of a feature or family page; the modality is reduced to safe characters."""
    kind = "family_" if unit == "family" else ""
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', str(modality))}_{kind}{int(feature_id)}.html"


def unit_name(modality: str, unit: str, fid: int) -> str:
    """'report #3' or 'report family #3' (a family is named by its parent feature)."""
    return f"{modality} family #{int(fid)}" if unit == "family" else f"{modality} #{int(fid)}"


def with_unit(df: pd.DataFrame) -> pd.DataFrame:
    """Tables from before feature families have no `unit` column: their rows are features."""
    if "unit" not in df.columns:
        return df.assign(unit="feature")
    return df.assign(unit=df["unit"].fillna("feature").astype(str)) if df["unit"].isna().any() else df


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
    families: pd.DataFrame | None = None,
) -> ReportData:
    """Normalise dtypes (nullable ints, NaN) and join labels onto associations. With a
    `split` column only the discovery rows are shown (ranks live there); `replicated`
    carries the validation result. Pages: the selected rows of `tables.pages`.
    `families`: FAMILIES rows with a modality column (None: no families)."""
    _require(assoc, _ASSOC_NEEDS, "associations")
    if "split" in assoc.columns:
        assoc = assoc[assoc["split"] == "discovery"]
    _require(interp, ("modality", "feature_id", "label"), "interpretations")
    _require(stats, ("modality", "feature_id", "testable"), "feature_stats")
    a = with_unit(assoc).copy()
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
    a["label"] = [labels.get(k) for k in zip(a["modality"], a["unit"], a["feature_id"], strict=True)]
    s = with_unit(stats)
    s = s.assign(modality=s["modality"].astype(str), feature_id=s["feature_id"].astype("int64"))
    t = tables or ReportTables()
    fams, family_of = _family_tables(families)
    if t.pages is not None:
        pages = with_unit(t.pages[t.pages["selected"]])
        keys = frozenset(zip(pages["modality"].astype(str), pages["unit"].astype(str),
                             pages["feature_id"].astype(int), strict=True))
    else:
        keys = frozenset(_default_pages(a, cfg.top_per_outcome, fams))
    mine = a[a["feature_id"].isin({f for _, _, f in keys})]
    groups = mine.groupby(UNIT_KEY, sort=False)
    by = {(str(m), str(u), int(str(f))): g for (m, u, f), g in groups if (str(m), str(u), int(str(f))) in keys}
    return ReportData(a, table, s, _outcome_table(outcomes, a), keys, with_unit(surv) if surv is not None else None,
                      with_unit(curves) if curves is not None else None, t, SmallCells(cfg.small_cell), cfg.show_ids,
                      by, stats_of=_stats_of(s), families=fams, family_of=family_of,
                      parts=_parts(with_unit(surv) if surv is not None else None,
                                   with_unit(curves) if curves is not None else None, t, keys))


def _parts(surv: pd.DataFrame | None, curves: pd.DataFrame | None, t: ReportTables, keys: frozenset[FeatureKey]
           ) -> dict[tuple[str, Any], pd.DataFrame]:
    """Survival rows and discovery curves by outcome and by unit; figure tables by unit."""
    out: dict[tuple[str, Any], pd.DataFrame] = {}
    frames = {"surv": surv, "curves": None if curves is None else curves[curves["split"] == "discovery"]}
    for name, df in frames.items():
        if df is None or df.empty:
            continue
        out |= {(name, str(o)): g for o, g in df.groupby("outcome_id", sort=False)}
        out |= {(name, _unit_key(k)): g for k, g in df.groupby(UNIT_KEY, sort=False)}
    for name in ("forest", "histograms", "thumbnails"):
        df = getattr(t, name)
        if df is not None and not df.empty:
            out |= {(name, _unit_key(k)): g for k, g in with_unit(df).groupby(UNIT_KEY, sort=False)
                    if _unit_key(k) in keys}
    return out


def _unit_key(k: Any) -> FeatureKey:
    return (str(k[0]), str(k[1]), int(k[2]))


def _stats_of(s: pd.DataFrame) -> dict[FeatureKey, Row]:
    """Each unit's FEATURE_STATS row, looked up once (pages read it by key)."""
    return {(str(r["modality"]), str(r["unit"]), int(r["feature_id"])): r for r in s.to_dict("records")}


UNIT_KEY = ["modality", "unit", "feature_id"]


def _default_pages(a: pd.DataFrame, n: int, families: Mapping[tuple[str, int], Row]) -> set[FeatureKey]:
    """Pages without a pages table (models/figures.page_features makes one): every ranked
    unit, each outcome's top rows, and the members of those families."""
    def keys(rows: pd.DataFrame) -> set[FeatureKey]:
        return set(zip(rows["modality"], rows["unit"], rows["feature_id"].astype(int), strict=True))

    out = keys(a[a["rank"].notna()])
    for _, rows in a.groupby("outcome_id", sort=False):
        out |= keys(top_rows(rows, n))
    out |= {(m, "feature", int(f)) for (m, u, fid) in list(out) if u == "family"
            for f in as_list((families.get((m, fid)) or {}).get("members"))}
    return out


def _family_tables(families: pd.DataFrame | None) -> tuple[dict[tuple[str, int], Row], dict[tuple[str, int], int]]:
    """(modality, family_id) -> FAMILIES row, and (modality, member feature) -> its family."""
    fams: dict[tuple[str, int], Row] = {}
    family_of: dict[tuple[str, int], int] = {}
    for row in ([] if families is None else families.to_dict("records")):
        m, fid = str(row["modality"]), int(row["family_id"])
        fams[(m, fid)] = row
        for member in as_list(row.get("members")):
            family_of[(m, int(member))] = fid
    return fams, family_of


def _interp_table(interp: pd.DataFrame) -> dict[FeatureKey, Row]:
    """(modality, unit, feature_id) -> its interpretation record."""
    out: dict[FeatureKey, Row] = {}
    for row in with_unit(interp).to_dict("records"):
        out[(str(row["modality"]), str(row["unit"]), int(row["feature_id"]))] = row
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
    cols = ["modality", "unit", "feature_id", "study_id", "rank", "value", "report_text"]
    t = with_unit(top)
    for c in cols:
        if c not in t.columns:
            t[c] = None
    t = t[cols].assign(modality=t["modality"].astype(str))
    t["feature_id"] = pd.to_numeric(t["feature_id"], errors="coerce")
    t["rank"] = pd.to_numeric(t["rank"], errors="coerce")
    t = t.dropna(subset=["feature_id"])
    return t.astype({"feature_id": "int64"}).sort_values(["rank", "study_id"], na_position="last")


def top_rows(rows: pd.DataFrame, n: int) -> pd.DataFrame:
    """An outcome's top rows (`rows`: its associations), up to n per modality (ranks are
    within modality): ranked rows by rank, then, when fewer than n are ranked, the best
    other tested rows by q- and p-value, which the pages show as not ranked."""
    g = rows[rows["rank"].notna() | rows["p_value"].notna()]
    g = g.sort_values(["modality", "rank", "q_value", "p_value", "unit", "feature_id"], na_position="last",
                      kind="mergesort")
    top = g.groupby("modality", sort=True).head(n)
    return top.sort_values(["rank", "q_value", "p_value", "modality", "unit", "feature_id"], na_position="last",
                           kind="mergesort")


# ---------------------------------------------------------------- shared cells
def anchor(outcome_id: str) -> str:
    """Id of an outcome's section on the index."""
    return "o-" + re.sub(r"[^A-Za-z0-9_-]", "_", str(outcome_id))


def outcome_names(d: ReportData) -> dict[str, str]:
    return {str(o): str(o) if missing(n) else str(n) for o, n in zip(d.outcomes["outcome_id"], d.outcomes["name"],
                                                                        strict=True)}


def feature_link(ctx: ReportData, modality: str, unit: str, fid: int, prefix: str = "features/") -> str:
    """The unit's name, linking its page when it has one."""
    text = esc(unit_name(modality, unit, fid))
    if (modality, unit, int(fid)) in ctx.pages:
        return f'<a href="{esc(prefix + page_name(modality, unit, fid))}">{text}</a>'
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
