"""Which features and families get a report page, and the run's top hits.

Why a rule and a cap: at N 8192 and hundreds of outcomes a page per tested feature would be
gigabytes; a reader needs the units that rank (a finding: a family, or a feature in no
family) plus the ones the run config names. Best rank first, so a cap drops the weakest
pages, never the headline ones; a family's member features follow it (its page links them)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

KEY = ["modality", "unit", "feature_id"]  # one unit: a feature, or a family (its parent's id)
PAGE_COLUMNS = [*KEY, "priority", "best_rank", "n_ranked", "best_p", "listed", "selected"]
HIT_COLUMNS = [*KEY, "outcome_id", "rank", "n_tested", "n_exposed", "n_exposed_cases",
               "adj_odds_ratio", "adj_or_ci_low", "adj_or_ci_high", "score_q", "replicated"]
Members = Mapping[tuple[str, int], Sequence[int]]  # (modality, family_id) -> member feature ids


def with_unit(df: pd.DataFrame) -> pd.DataFrame:
    """Tables written before families have no `unit` column: their rows are features."""
    return df if "unit" in df.columns else df.assign(unit="feature")


def _discovery(assoc: pd.DataFrame) -> pd.DataFrame:
    a = with_unit(assoc)
    return a[a["split"] == "discovery"] if "split" in a.columns else a


def page_features(assoc: pd.DataFrame, listed: Iterable[tuple[str, str, int]], max_pages: int,
                  members: Members | None = None) -> pd.DataFrame:
    """PAGE rows: every unit ranked for some outcome (discovery) plus `listed` (modality,
    unit, id), in priority order (listed, then best rank, more ranked outcomes, smaller
    adjusted p), each family followed by its member features; `selected` marks the first
    `max_pages`."""
    a = _discovery(assoc)
    ranked = a[a["rank"].notna()]
    g = ranked.groupby(KEY, sort=False).agg(
        best_rank=("rank", "min"), n_ranked=("rank", "size"), best_p=("score_p", "min")).reset_index()
    want = pd.DataFrame(list(dict.fromkeys((str(m), str(u), int(f)) for m, u, f in listed)), columns=KEY)
    if len(want):
        g = g.merge(want.assign(listed=True), on=KEY, how="outer")
    g["listed"] = g["listed"].astype("boolean").fillna(False).astype(bool) if "listed" in g else False
    g["n_ranked"] = g["n_ranked"].fillna(0).astype("int64")
    g = g.sort_values(["listed", "best_rank", "n_ranked", "best_p", "modality", "unit", "feature_id"],
                      ascending=[False, True, False, True, True, True, True], na_position="last", kind="mergesort")
    g = _with_members(g.reset_index(drop=True), members or {})
    g["priority"] = np.arange(len(g), dtype=np.int64)
    g["selected"] = g["priority"] < max_pages
    return g.astype({"feature_id": "int32", "best_rank": "float64", "best_p": "float64"})[PAGE_COLUMNS]


def _with_members(g: pd.DataFrame, members: Members) -> pd.DataFrame:
    """Each family's member features right after it (those without a page of their own)."""
    if not members or not (g["unit"] == "family").any():
        return g
    have = set(zip(g["modality"], g["unit"], g["feature_id"].astype(int), strict=True))
    out: list[dict] = []
    for r in g.to_dict("records"):
        out.append(r)
        if r["unit"] != "family":
            continue
        for f in members.get((str(r["modality"]), int(r["feature_id"])), ()):
            key = (str(r["modality"]), "feature", int(f))
            if key not in have:
                have.add(key)
                out.append({"modality": key[0], "unit": "feature", "feature_id": key[2], "best_rank": np.nan,
                            "n_ranked": 0, "best_p": np.nan, "listed": False})
    return pd.DataFrame(out, columns=g.columns)


def top_hits(assoc: pd.DataFrame, per_outcome: int) -> pd.DataFrame:
    """The discovery pairs ranked 1..per_outcome in each (modality, outcome), by outcome,
    modality and rank."""
    a = _discovery(assoc)
    hits = a[a["rank"].notna() & (a["rank"] <= per_outcome)].copy()
    for c in HIT_COLUMNS:
        if c not in hits.columns:
            hits[c] = None
    return hits.sort_values(["outcome_id", "modality", "rank"], kind="mergesort")[HIT_COLUMNS].reset_index(drop=True)
