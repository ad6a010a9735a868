"""Which features get a report page, and the run's top hits.

Why a rule and a cap: at N 8192 and hundreds of outcomes a page per tested feature would be
gigabytes; a reader needs the features that rank (a finding) plus the ones the run config
names. Best rank first, so a cap drops the weakest pages, never the headline ones."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

PAGE_COLUMNS = ["modality", "feature_id", "priority", "best_rank", "n_ranked", "best_p", "listed", "selected"]
HIT_COLUMNS = ["modality", "feature_id", "outcome_id", "rank", "n_tested", "n_exposed", "n_exposed_cases",
               "adj_odds_ratio", "adj_or_ci_low", "adj_or_ci_high", "score_q", "replicated"]


def _discovery(assoc: pd.DataFrame) -> pd.DataFrame:
    return assoc[assoc["split"] == "discovery"] if "split" in assoc.columns else assoc


def page_features(assoc: pd.DataFrame, listed: Iterable[tuple[str, int]], max_pages: int) -> pd.DataFrame:
    """PAGE rows: every feature ranked for some outcome (discovery) plus `listed`, in
    priority order (listed, then best rank, more ranked outcomes, smaller adjusted p);
    `selected` marks the first `max_pages`."""
    a = _discovery(assoc)
    ranked = a[a["rank"].notna()]
    g = ranked.groupby(["modality", "feature_id"], sort=False).agg(
        best_rank=("rank", "min"), n_ranked=("rank", "size"), best_p=("score_p", "min")).reset_index()
    want = pd.DataFrame(list(dict.fromkeys((str(m), int(f)) for m, f in listed)), columns=["modality", "feature_id"])
    if len(want):
        g = g.merge(want.assign(listed=True), on=["modality", "feature_id"], how="outer")
    g["listed"] = g["listed"].astype("boolean").fillna(False).astype(bool) if "listed" in g else False
    g["n_ranked"] = g["n_ranked"].fillna(0).astype("int64")
    g = g.sort_values(["listed", "best_rank", "n_ranked", "best_p", "modality", "feature_id"],
                      ascending=[False, True, False, True, True, True], na_position="last", kind="mergesort")
    g = g.reset_index(drop=True)
    g["priority"] = np.arange(len(g), dtype=np.int64)
    g["selected"] = g["priority"] < max_pages
    return g.astype({"feature_id": "int32", "best_rank": "float64", "best_p": "float64"})[PAGE_COLUMNS]


def top_hits(assoc: pd.DataFrame, per_outcome: int) -> pd.DataFrame:
    """The discovery pairs ranked 1..per_outcome in each (modality, outcome), by outcome,
    modality and rank."""
    a = _discovery(assoc)
    hits = a[a["rank"].notna() & (a["rank"] <= per_outcome)].copy()
    for c in HIT_COLUMNS:
        if c not in hits.columns:
            hits[c] = None
    return hits.sort_values(["outcome_id", "modality", "rank"], kind="mergesort")[HIT_COLUMNS].reset_index(drop=True)
