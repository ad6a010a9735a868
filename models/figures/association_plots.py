"""Points of the index's Manhattan and volcano plots, their FDR cut-offs, and the forest-plot
rows of each feature page.

The p-value plotted is the age+sex-adjusted score test's (`score_p`): the test whose BH
q-value (`score_q`) decides ranking, so the plotted cut-off is the ranking threshold. The
x of the volcano is the adjusted log-OR (`adj_log_or`, else the score test's one-step
estimate). At 8192 features x 300 outcomes (2.5 M pairs) not every point can be drawn: the
ranked ones and the smallest p-values are, up to a cap; the rest of each (modality, outcome)
becomes one band row (range of -log10 p and the count) so the plot still shows where they lie.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

POINT_COLUMNS = ["modality", "unit", "feature_id", "outcome_id", "kind", "neglog10_p", "neglog10_p_max", "log_or",
                 "rank", "n_pairs"]
CUT_COLUMNS = ["modality", "outcome_id", "p_cut", "family", "n_pass", "n_tests"]
FOREST_COLUMNS = ["modality", "unit", "feature_id", "outcome_id", "split", "row", "adj_odds_ratio", "adj_or_ci_low",
                  "adj_or_ci_high", "rank", "n_outcomes", "member"]
KEY = ["modality", "unit", "feature_id"]
P_FLOOR = 1e-300  # p = 0 (underflow) is drawn at -log10 = 300


def neglog10(p: pd.Series) -> np.ndarray:
    return -np.log10(np.clip(p.to_numpy(np.float64), P_FLOOR, 1.0))


def _discovery(assoc: pd.DataFrame) -> pd.DataFrame:
    a = assoc if "unit" in assoc.columns else assoc.assign(unit="feature")
    return a[a["split"] == "discovery"] if "split" in a.columns else a


def _log_or(a: pd.DataFrame) -> np.ndarray:
    adj = a["adj_log_or"] if "adj_log_or" in a.columns else pd.Series(np.nan, index=a.index)
    one_step = a["score_log_or"] if "score_log_or" in a.columns else pd.Series(np.nan, index=a.index)
    return adj.astype("float64").fillna(one_step.astype("float64")).to_numpy()


def manhattan_points(assoc: pd.DataFrame, max_points: int) -> pd.DataFrame:
    """MANHATTAN rows: kind 'point' for every ranked pair and then the smallest p-values up
    to `max_points`; kind 'band' per (modality, outcome) for the pairs not drawn."""
    a = _discovery(assoc)
    a = a[a["score_p"].notna()]
    order = a.assign(_unranked=a["rank"].isna()).sort_values(
        ["_unranked", "score_p", "modality", "outcome_id", "unit", "feature_id"], kind="mergesort")
    keep = order.head(max(max_points, int(a["rank"].notna().sum())))
    pts = pd.DataFrame({
        "modality": keep["modality"].astype(str), "unit": keep["unit"].astype(str),
        "feature_id": keep["feature_id"].astype("int64"),
        "outcome_id": keep["outcome_id"].astype(str), "kind": "point", "neglog10_p": neglog10(keep["score_p"]),
        "neglog10_p_max": np.nan, "log_or": _log_or(keep), "rank": keep["rank"].astype("float64"), "n_pairs": 1,
    })
    rest = a.drop(index=keep.index)
    if len(rest):
        y = rest.assign(_y=neglog10(rest["score_p"])).groupby(["modality", "outcome_id"], sort=True)["_y"]
        bands = y.agg(["min", "max", "size"]).reset_index()
        pts = pd.concat([pts, pd.DataFrame({
            "modality": bands["modality"].astype(str), "unit": None, "feature_id": pd.NA,
            "outcome_id": bands["outcome_id"].astype(str),
            "kind": "band", "neglog10_p": bands["min"], "neglog10_p_max": bands["max"], "log_or": np.nan,
            "rank": np.nan, "n_pairs": bands["size"]})], ignore_index=True)
    pts["feature_id"] = pts["feature_id"].astype("Int64")
    return pts.astype({"n_pairs": "int64"})[POINT_COLUMNS].reset_index(drop=True)


FAMILIES = {(): "all pairs", ("modality",): "per modality", ("modality", "outcome_id"): "per modality and outcome"}


def _separates(g: pd.DataFrame, alpha: float) -> bool:
    """Whether q < alpha picks exactly the pairs below some p: true of a BH family."""
    passing = (g["score_q"] < alpha).to_numpy()
    if passing.all() or not passing.any():
        return True
    p = g["score_p"].to_numpy()
    return bool(p[passing].max() < p[~passing].min())


def bh_family(assoc: pd.DataFrame, alpha: float) -> tuple[str, ...]:
    """The coarsest grouping within which the stored q-values cut p cleanly: the family the
    association stage corrected over (pooled, per modality, or per modality and outcome)."""
    for keys in FAMILIES:
        groups = [assoc] if not keys else [g for _, g in assoc.groupby(list(keys), sort=False)]
        if all(_separates(g, alpha) for g in groups):
            return keys
    return ("modality", "outcome_id")


def fdr_cuts(assoc: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """FDR_CUTS rows per (modality, outcome): the largest score-test p whose BH q is below
    `alpha` within its BH family (the plotted cut-off; NaN when none passes), the family,
    and how many pairs of the (modality, outcome) pass."""
    a = _discovery(assoc)
    a = a[a["score_p"].notna()]
    keys = bh_family(a, alpha)
    passing = a[a["score_q"] < alpha]
    groups = passing.groupby(list(keys), sort=False) if keys else [((), passing)]
    cut = {(k if isinstance(k, tuple) else (k,)): float(g["score_p"].max()) for k, g in groups}
    rows = []
    for (m, o), g in a.groupby(["modality", "outcome_id"], sort=True):
        p_cut = cut.get((m, o)[: len(keys)], np.nan)
        rows.append({"modality": str(m), "outcome_id": str(o), "p_cut": p_cut, "family": FAMILIES[keys],
                     "n_pass": int((g["score_q"] < alpha).sum()), "n_tests": len(g)})
    return pd.DataFrame(rows, columns=CUT_COLUMNS).astype({"n_pass": "int64", "n_tests": "int64"})


def forest_rows(assoc: pd.DataFrame, units: Iterable[tuple[str, str, int]], max_rows: int,
                members: Mapping[tuple[str, int], Sequence[int]] | None = None) -> pd.DataFrame:
    """FOREST rows: for each (modality, unit, id) its adjusted OR per outcome in discovery
    and validation. Outcomes: ranked ones by rank, then by discovery score-test p; a
    family's rows are each followed by its members' rows for the same outcome (`member`),
    and it shows fewer outcomes so a page has at most `max_rows` rows; `n_outcomes` is how
    many the unit was tested for (the page says so)."""
    want = pd.DataFrame(list(dict.fromkeys((str(m), str(u), int(f)) for m, u, f in units)), columns=KEY)
    if want.empty:
        return pd.DataFrame(columns=FOREST_COLUMNS)
    a = assoc if "unit" in assoc.columns else assoc.assign(unit="feature")
    a = a if "split" in a.columns else a.assign(split="discovery")
    mine = a.merge(want, on=KEY, how="inner")
    disc = mine[mine["split"] == "discovery"].assign(_unranked=lambda d: d["rank"].isna())
    disc = disc.sort_values([*KEY, "_unranked", "rank", "score_p", "outcome_id"], na_position="last", kind="mergesort")
    size = _members_of(want, members or {})
    per = np.array([max(1, max_rows // (1 + len(size.get((m, u, int(f)), ()))))
                    for m, u, f in zip(disc["modality"], disc["unit"], disc["feature_id"], strict=True)], np.int64)
    disc = disc.assign(_i=disc.groupby(KEY, sort=False).cumcount(),
                       n_outcomes=disc.groupby(KEY, sort=False)["outcome_id"].transform("size"))
    shown = disc[disc["_i"].to_numpy() < per][[*KEY, "outcome_id", "_i", "n_outcomes", "rank"]]
    both = mine.drop(columns=["rank", "n_outcomes"], errors="ignore").merge(shown, on=[*KEY, "outcome_id"])
    both = both.assign(member=None, _j=0)
    parts = [both, *_member_rows(a, shown, size)]
    out = pd.concat(parts, ignore_index=True)
    out = out.sort_values([*KEY, "_i", "_j", "split"], kind="mergesort")
    pair = pd.Series(list(zip(out["_i"], out["_j"], strict=True)), index=out.index)
    out["row"] = pair.groupby([out[k] for k in KEY], sort=False).transform(lambda p: pd.factorize(p)[0])
    cols = ["adj_odds_ratio", "adj_or_ci_low", "adj_or_ci_high", "rank"]
    out[cols] = out[cols].astype("float64")
    out = out[FOREST_COLUMNS].reset_index(drop=True)
    return out.astype({"feature_id": "int32", "row": "int32", "n_outcomes": "int64", "member": "Int32"})


def _members_of(want: pd.DataFrame, members: Mapping[tuple[str, int], Sequence[int]]
                ) -> dict[tuple[str, str, int], list[int]]:
    """Family page key -> its member features (parent first), for the families in `want`."""
    return {(m, "family", f): [int(x) for x in members[(m, f)]]
            for m, u, f in want.itertuples(index=False) if u == "family" and (m, f) in members}


def _member_rows(a: pd.DataFrame, shown: pd.DataFrame, size: Mapping[tuple[str, str, int], list[int]]
                 ) -> list[pd.DataFrame]:
    """Each member's rows (both splits) for the outcomes its family shows, keyed by the family."""
    out = []
    for (m, u, f), ids in size.items():
        fam = shown[(shown["modality"] == m) & (shown["unit"] == u) & (shown["feature_id"] == f)]
        rows = a[(a["modality"] == m) & (a["unit"] == "feature") & a["feature_id"].isin(ids)
                 & a["outcome_id"].isin(fam["outcome_id"])]
        order = {x: j + 1 for j, x in enumerate(ids)}
        rows = rows.drop(columns=["rank", "n_outcomes"], errors="ignore").merge(
            fam[["outcome_id", "_i", "n_outcomes"]], on="outcome_id")
        out.append(rows.assign(member=rows["feature_id"], _j=rows["feature_id"].map(order), unit=u, feature_id=f,
                               rank=np.nan))
    return out
