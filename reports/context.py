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
from typing import Any, cast

import numpy as np
import pandas as pd

from data_contracts.config import ReportConfig
from reports.templates import DASH, as_list, bar, esc, fixed2, integer, missing, pct, td

FeatureKey = tuple[str, str, int]  # (modality, unit, feature_id): a feature or a family
Row = Mapping[Any, Any]  # one record of a DataFrame (to_dict("records"))
_ASSOC_NEEDS = ("modality", "unit", "feature_id", "outcome_id", "n_exposed", "n_exposed_cases")
_ASSOC_OPTIONAL = (
    "n_unexposed",
    "n_unexposed_cases",
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
    "score_q",
    "replicated",
    "sd_odds_ratio",  # option or_per_sd
    "sd_ci_low",
    "sd_ci_high",
)


@dataclass(frozen=True)
class ReportData:
    """Inputs normalised once: associations joined with labels, lookups by unit."""

    assoc: pd.DataFrame
    interp: dict[FeatureKey, Row]
    stats: pd.DataFrame
    # outcome_id, name, window_years, n_eligible, n_cases, n_excluded_followup (eligible
    # event-free studies left out of the binary analyses for short follow-up)
    outcomes: pd.DataFrame
    pages: frozenset[FeatureKey]
    surv: pd.DataFrame | None = None  # SURVIVAL rows
    curves: pd.DataFrame | None = None  # KM_CURVES rows
    families: dict[tuple[str, int], Row] = field(default_factory=dict)  # (modality, family_id) -> FAMILIES row
    family_of: dict[tuple[str, int], int] = field(default_factory=dict)  # (modality, feature) -> its family
    methods: pd.DataFrame | None = None  # ASSOCIATION_METHODS rows (topic, statement)
    # Looked up once, not filtered per outcome or page: with hundreds of outcomes and
    # thousands of pages, a scan of every row per lookup made the report quadratic.
    top: Mapping[str, pd.DataFrame] = field(default_factory=dict)  # outcome -> top_rows
    by_feature: Mapping[FeatureKey, PageRows] = field(default_factory=dict)  # page -> its rows
    stats_of: Mapping[FeatureKey, Row] = field(default_factory=dict)
    # (modality, family_id, outcome_id) -> the family's member rows, in member order
    member_rows: Mapping[tuple[str, int, str], list[Row]] = field(default_factory=dict)

    def top_rows(self, outcome_id: str) -> pd.DataFrame:
        return self.top.get(outcome_id, self.assoc.iloc[0:0])


@dataclass(frozen=True)
class PageRows:
    """A feature page's association rows: at most `feature_page_rows` (the ranked ones,
    then the smallest p-values), in the outcomes' order; `n_all` counts every row."""

    rows: list[Row]
    n_all: int
    scale: float  # largest P(outcome | cohort) or baseline shown: the bars' full width


def page_name(modality: str, unit: str, feature_id: int) -> str:
    """File name of a feature or family page; the modality is reduced to safe characters."""
    kind = "family_" if unit == "family" else ""
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', str(modality))}_{kind}{int(feature_id)}.html"


def unit_name(modality: str, unit: str, fid: int) -> str:
    return f"{modality} family #{int(fid)}" if unit == "family" else f"{modality} #{int(fid)}"


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
    families: pd.DataFrame | None = None,
) -> ReportData:
    """Normalise dtypes (nullable ints, NaN) and join labels onto associations. With a
    `split` column only the discovery rows are shown (ranks live there); `replicated`
    carries the validation result. `families`: FAMILIES rows with a modality column."""
    _require(assoc, _ASSOC_NEEDS, "associations")
    if "split" in assoc.columns:
        assoc = assoc[assoc["split"] == "discovery"]
    _require(interp, ("modality", "unit", "feature_id", "label"), "interpretations")
    _require(stats, ("modality", "unit", "feature_id", "testable"), "feature_stats")
    a = assoc.copy()
    for c in _ASSOC_OPTIONAL:
        if c not in a.columns:
            a[c] = None
    for c in (
        "rank",
        "n_ranked",
        "n_tested",
        "odds_ratio",
        "or_ci_low",
        "or_ci_high",
        "p_value",
        "q_value",
        "p_outcome_exposed",
        "p_outcome_baseline",
        "n_exposed",
        "n_exposed_cases",
        "n_unexposed",
        "n_unexposed_cases",
        "adj_odds_ratio",
        "adj_or_ci_low",
        "adj_or_ci_high",
        "adj_p_value",
        "score_q",
        "sd_odds_ratio",
        "sd_ci_low",
        "sd_ci_high",
    ):
        a[c] = pd.to_numeric(a[c], errors="coerce").astype("float64")
    a["feature_id"] = a["feature_id"].astype("int64")
    a["modality"] = a["modality"].astype(str)
    a["unit"] = a["unit"].astype(str)
    a["outcome_id"] = a["outcome_id"].astype(str)
    table = _interp_table(interp)
    labels = {k: v.get("label") for k, v in table.items()}
    a["label"] = [labels.get(k) for k in zip(a["modality"], a["unit"], a["feature_id"], strict=True)]
    s = stats.assign(modality=stats["modality"].astype(str), unit=stats["unit"].astype(str),
                     feature_id=stats["feature_id"].astype("int64"))
    fams, family_of = _family_tables(families)
    top = top_rows_by_outcome(a, cfg.top_per_outcome)
    pages = _page_keys(a, top)
    # a family's members get pages too: the family page and the index link them
    pages |= {(m, "feature", int(f)) for (m, u, fid) in list(pages) if u == "family"
              for f in as_list((fams.get((m, fid)) or {}).get("members"))}
    by_feature = page_rows(a, pages, list(outcomes_order(outcomes, a)), cfg.feature_page_rows)
    stats_of = {(str(r["modality"]), str(r["unit"]), int(r["feature_id"])): r for r in s.to_dict("records")}
    return ReportData(a, table, s, _outcome_table(outcomes, a), frozenset(pages), surv, curves, fams, family_of,
                      None, top, by_feature, stats_of, _member_rows(a, fams))


def _interp_table(interp: pd.DataFrame) -> dict[FeatureKey, Row]:
    """(modality, unit, feature_id) -> its interpretation record."""
    out: dict[FeatureKey, Row] = {}
    for row in interp.to_dict("records"):
        out[(str(row["modality"]), str(row["unit"]), int(row["feature_id"]))] = row
    return out


def _family_tables(families: pd.DataFrame | None) -> tuple[dict[tuple[str, int], Row], dict[tuple[str, int], int]]:
    fams: dict[tuple[str, int], Row] = {}
    family_of: dict[tuple[str, int], int] = {}
    for row in ([] if families is None else families.to_dict("records")):
        m, fid = str(row["modality"]), int(row["family_id"])
        fams[(m, fid)] = row
        for member in as_list(row.get("members")):
            family_of[(m, int(member))] = fid
    return fams, family_of


def _member_rows(a: pd.DataFrame, fams: Mapping[tuple[str, int], Row]) -> dict[tuple[str, int, str], list[Row]]:
    """Every family's member rows per outcome, selected in one pass (not a scan of every
    row per family shown)."""
    pos = {(m, int(x)): (fid, i) for (m, fid), r in fams.items() for i, x in enumerate(as_list(r.get("members")))}
    if not pos:
        return {}
    feats = a[a["unit"] == "feature"]
    hit = [pos.get(k) for k in zip(feats["modality"], feats["feature_id"].astype(int), strict=True)]
    keep = np.array([h is not None for h in hit], dtype=bool)
    sub = feats[keep].assign(_fam=[h[0] for h in hit if h is not None], _pos=[h[1] for h in hit if h is not None])
    sub = sub.sort_values(["modality", "_fam", "outcome_id", "_pos"], kind="mergesort")
    out: dict[tuple[str, int, str], list[Row]] = {}
    for key, g in sub.groupby(["modality", "_fam", "outcome_id"], sort=False):
        m, fid, o = cast(tuple[str, int, str], key)
        out[(str(m), int(fid), str(o))] = cast(list[Row], g.drop(columns=["_fam", "_pos"]).to_dict("records"))
    return out


def _outcome_table(outcomes: pd.DataFrame, assoc: pd.DataFrame) -> pd.DataFrame:
    """Outcomes in their defined order, plus any that only appear in associations."""
    cols = ["outcome_id", "name", "window_years", "n_eligible", "n_cases", "n_excluded_followup"]
    o = outcomes.copy() if "outcome_id" in outcomes.columns else pd.DataFrame(columns=cols)
    for c in cols:
        if c not in o.columns:
            o[c] = None
    o = o[cols].assign(outcome_id=o["outcome_id"].astype(str))
    extra = [x for x in pd.unique(assoc["outcome_id"]) if x not in set(o["outcome_id"])]
    if extra:
        o = pd.concat([o, pd.DataFrame({"outcome_id": extra, "name": extra})], ignore_index=True)
    return o.drop_duplicates("outcome_id").reset_index(drop=True)


def normalise_reports(top: pd.DataFrame) -> pd.DataFrame:
    cols = ["modality", "unit", "feature_id", "study_id", "rank", "value", "report_text"]
    t = top.copy()
    for c in cols:
        if c not in t.columns:
            t[c] = None
    t = t[cols].assign(modality=t["modality"].astype(str), unit=t["unit"].fillna("feature").astype(str))
    t["feature_id"] = pd.to_numeric(t["feature_id"], errors="coerce")
    t["rank"] = pd.to_numeric(t["rank"], errors="coerce")
    return t.dropna(subset=["feature_id"]).sort_values(["rank", "study_id"], na_position="last")


def top_rows(assoc: pd.DataFrame, outcome_id: str, n: int) -> pd.DataFrame:
    """An outcome's top rows, up to n per modality (ranks are within modality): ranked
    rows by rank, then, when fewer than n are ranked, the best other tested rows by q- and
    p-value, which the pages show as not ranked."""
    g = assoc[
        (assoc["outcome_id"] == outcome_id) & (assoc["rank"].notna() | assoc["p_value"].notna())
    ]
    g = g.sort_values(
        ["modality", "rank", "q_value", "p_value", "unit", "feature_id"],
        na_position="last",
        kind="mergesort",
    )
    top = g.groupby("modality", sort=True).head(n)
    return top.sort_values(
        ["rank", "q_value", "p_value", "modality", "unit", "feature_id"],
        na_position="last",
        kind="mergesort",
    )


def _keys(rows: pd.DataFrame) -> set[FeatureKey]:
    return set(zip(rows["modality"], rows["unit"], rows["feature_id"].astype(int), strict=True))


_UNIT = ["modality", "unit", "feature_id"]


def top_rows_by_outcome(assoc: pd.DataFrame, n: int) -> dict[str, pd.DataFrame]:
    """`top_rows` of every outcome from one sort (the outcome leads the stable sort, so
    each outcome's rows come out exactly as `top_rows` orders them)."""
    g = assoc[assoc["rank"].notna() | assoc["p_value"].notna()]
    g = g.sort_values(
        ["outcome_id", "modality", "rank", "q_value", "p_value", "unit", "feature_id"],
        na_position="last",
        kind="mergesort",
    )
    top = g.groupby(["outcome_id", "modality"], sort=False).head(n)
    return {
        str(o): t.sort_values(["rank", "q_value", "p_value", "modality", "unit", "feature_id"],
                              na_position="last", kind="mergesort")
        for o, t in top.groupby("outcome_id", sort=False)
    }


def outcomes_order(outcomes: pd.DataFrame, assoc: pd.DataFrame) -> pd.Series:
    return _outcome_table(outcomes, assoc)["outcome_id"]


def page_rows(assoc: pd.DataFrame, pages: set[FeatureKey], order: list[str], max_rows: int
              ) -> dict[FeatureKey, PageRows]:
    """Every page's rows, selected and ordered in one pass over the rows (with hundreds
    of outcomes a page shows the ranked rows, then the smallest p-values)."""
    keys = pd.MultiIndex.from_arrays([assoc["modality"], assoc["unit"], assoc["feature_id"].astype("int64")])
    a = assoc[keys.isin(list(pages))]
    a = a.assign(_unranked=a["rank"].isna(), _row=np.arange(len(a))).sort_values(
        [*_UNIT, "_unranked", "p_value"], na_position="last", kind="mergesort")
    a = a.assign(_pos=a.groupby(_UNIT, sort=False).cumcount())
    n_all = a.groupby(_UNIT).size()
    rank_of = {o: i for i, o in enumerate(order)}
    shown = a[a["_pos"] < max_rows].assign(_o=lambda x: x["outcome_id"].map(rank_of))
    shown = shown.sort_values([*_UNIT, "_o", "_row"], kind="mergesort")
    p = shown[[*_UNIT, "p_outcome_exposed", "p_outcome_baseline"]]
    scale = p.groupby(_UNIT)[["p_outcome_exposed", "p_outcome_baseline"]].max().max(axis=1)
    records = cast(list[Row], shown.drop(columns=["_unranked", "_row", "_pos", "_o"]).to_dict("records"))
    out: dict[FeatureKey, PageRows] = {}
    start = 0
    sizes = shown.groupby(_UNIT, sort=False).size()
    for key, n in zip(sizes.index.tolist(), sizes.to_numpy(), strict=True):
        sc = scale.get(key)
        out[(str(key[0]), str(key[1]), int(key[2]))] = PageRows(records[start:start + n], int(n_all[key]),
                                                                1.0 if sc is None or pd.isna(sc) else float(sc))
        start += n
    return out


def _page_keys(assoc: pd.DataFrame, top: Mapping[str, pd.DataFrame]) -> set[FeatureKey]:
    keys = _keys(assoc[assoc["rank"].notna()])
    for t in top.values():
        keys |= _keys(t)
    return keys


# ---------------------------------------------------------------- shared cells
def feature_link(ctx: ReportData, modality: str, unit: str, fid: int, prefix: str = "features/") -> str:
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


def heldout(row: Row | None) -> str:
    """'0.91 (45/50 vs 3/150)': balanced accuracy, then held-out hits."""
    if row is None or missing(row.get("heldout_balanced_accuracy")):
        return DASH
    return (
        f"{fixed2(row['heldout_balanced_accuracy'])} "
        f'<span class="muted">({integer(row["n_heldout_top_hits"])}/'
        f"{integer(row['n_heldout_top'])} vs {integer(row['n_heldout_control_hits'])}/"
        f"{integer(row['n_heldout_control'])})</span>"
    )


def exposed_pct(r: Row) -> float | None:
    n1, n0 = r["n_exposed"], r["n_unexposed"]
    if missing(n1) or missing(n0) or (n1 + n0) == 0:
        return None
    return float(n1) / float(n1 + n0)


def p_cell(r: Row, scale: float) -> str:
    text = (
        f'<span class="pbar">{pct(r["p_outcome_exposed"])} vs '
        f"{pct(r['p_outcome_baseline'])}"
        f"{bar(r['p_outcome_exposed'], r['p_outcome_baseline'], scale)}</span>"
    )
    return td(text, r["p_outcome_exposed"], "num")


def p_scale(rows: pd.DataFrame) -> float:
    vals = pd.concat([rows["p_outcome_exposed"], rows["p_outcome_baseline"]]).dropna()
    return float(vals.max()) if len(vals) else 1.0


def flag_html(x: Any) -> str:
    return "" if missing(x) or x == "" else f'<span class="flag">{esc(x)}</span>'
