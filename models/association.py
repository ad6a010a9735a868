"""Feature x outcome association (first form): 2x2 tables over all pairs at once.

For each outcome, the eligible studies are split into a feature's exposed cohort and the
rest. Counts come from one sparse product (cohort matrix x outcome vector), so all pairs
are tabulated together. Per pair: P(outcome | cohort) vs the baseline over all eligible
studies, odds ratio (Haldane +0.5 only when a cell is zero) with a Woolf 95% CI, two-sided
Fisher exact p, Benjamini-Hochberg q over every test in the run, and a rank per
(modality, outcome).

Ranking key (documented, configurable): by default the lower 95% CI bound of the odds
ratio, among pairs with q < alpha and at least `min_exposed_cases` exposed cases. The lower
bound prefers effects that are both large and well supported over tiny noisy cohorts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import fisher_exact

from data_contracts.config import AssociationConfig

Z95 = 1.959963984540054


def exposure_matrix(exposed: pd.DataFrame, study_ids: np.ndarray, n_features: int) -> sp.csc_matrix:
    """Boolean (studies x features) matrix from exposed cohort rows (feature_id, study_id)."""
    pos = pd.Index(study_ids).get_indexer(exposed["study_id"])
    keep = pos >= 0
    data = np.ones(int(keep.sum()), dtype=np.float64)
    return sp.csc_matrix(
        (data, (pos[keep], exposed["feature_id"].to_numpy()[keep])), shape=(len(study_ids), n_features)
    )


def odds_ratio_woolf(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, ...]:
    """Odds ratio ad/bc with Woolf CI; +0.5 to all four cells of tables with a zero cell.
    Returns (or, ci_low, ci_high, corrected_mask)."""
    a, b, c, d = (np.asarray(v, dtype=np.float64) for v in (a, b, c, d))
    zero = (a == 0) | (b == 0) | (c == 0) | (d == 0)
    a, b, c, d = (np.where(zero, v + 0.5, v) for v in (a, b, c, d))
    log_or = np.log(a) + np.log(d) - np.log(b) - np.log(c)
    se = np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    return np.exp(log_or), np.exp(log_or - Z95 * se), np.exp(log_or + Z95 * se), zero


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values; NaN p stay NaN and are not counted as tests."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if len(ok) == 0:
        return q
    order = ok[np.argsort(p[ok], kind="mergesort")]
    m = len(order)
    ranked = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    return q


def screen_outcome(
    X: sp.spmatrix, eligible: np.ndarray, event: np.ndarray, testable: np.ndarray, cfg: AssociationConfig
) -> pd.DataFrame:
    """2x2 statistics of every feature against one outcome (rows ordered by feature id)."""
    Xe = X[eligible]
    y = event[eligible].astype(np.float64)
    n_elig, n_cases = int(eligible.sum()), float(y.sum())
    n1 = np.asarray(Xe.sum(axis=0)).ravel()
    a = Xe.T @ y
    b, c = n1 - a, n_cases - a
    d = (n_elig - n1) - c
    or_, lo, hi, corrected = odds_ratio_woolf(a, b, c, d)
    tested = testable & (n1 > 0) & (n1 < n_elig) & (n_cases > 0) & (n_cases < n_elig)
    p = np.full(len(a), np.nan)
    for j in np.flatnonzero(tested):
        p[j] = fisher_exact([[a[j], b[j]], [c[j], d[j]]], alternative="two-sided").pvalue
    with np.errstate(invalid="ignore", divide="ignore"):
        p_exp = np.where(n1 > 0, a / np.maximum(n1, 1), np.nan)
    flags = _flags(testable, n1, a, n_cases, n_elig, corrected, cfg)
    return pd.DataFrame(
        {
            "feature_id": np.arange(len(a), dtype=np.int32),
            "n_exposed": n1.astype(np.int64),
            "n_exposed_cases": a.astype(np.int64),
            "n_unexposed": (n_elig - n1).astype(np.int64),
            "n_unexposed_cases": c.astype(np.int64),
            "p_outcome_exposed": p_exp,
            "p_outcome_baseline": n_cases / n_elig if n_elig else np.nan,
            "odds_ratio": np.where(tested, or_, np.nan),
            "or_ci_low": np.where(tested, lo, np.nan),
            "or_ci_high": np.where(tested, hi, np.nan),
            "p_value": p,
            "flag": flags,
        }
    )


def _flags(
    testable: np.ndarray, n1: np.ndarray, a: np.ndarray, n_cases: float, n_elig: int,
    corrected: np.ndarray, cfg: AssociationConfig,
) -> list[str | None]:
    out: list[str | None] = []
    for j in range(len(n1)):
        f = []
        if not testable[j]:
            f.append("feature not testable")
        if n_cases == 0:
            f.append("outcome has no cases")
        elif n_cases >= n_elig:
            f.append("every eligible study is a case")
        if n1[j] >= n_elig and n_elig:
            f.append("all studies exposed")
        if a[j] < cfg.min_exposed_cases:
            f.append(f"exposed cases < {cfg.min_exposed_cases}")
        if corrected[j] and testable[j]:
            f.append("zero cell: Haldane correction")
        out.append("; ".join(f) or None)
    return out


def rank_pairs(assoc: pd.DataFrame, cfg: AssociationConfig) -> pd.DataFrame:
    """Add q_value (BH over all tested pairs) and rank / n_ranked / n_tested per
    (modality, outcome). Ranked: q < alpha and enough exposed cases; key per config."""
    out = assoc.reset_index(drop=True)
    out["q_value"] = bh_qvalues(out["p_value"].to_numpy())
    ok = (out["q_value"] < cfg.alpha) & (out["n_exposed_cases"] >= cfg.min_exposed_cases)
    key = {"or_ci_low": "or_ci_low", "odds_ratio": "odds_ratio", "p_value": "p_value"}[cfg.rank_key]
    ascending = cfg.rank_key == "p_value"
    out["rank"] = pd.array([pd.NA] * len(out), dtype="Int32")
    out["n_tested"] = out.groupby(["modality", "outcome_id"])["p_value"].transform("count").astype("int32")
    out["n_ranked"] = 0
    for _, g in out[ok].groupby(["modality", "outcome_id"]):
        order = g.sort_values([key, "p_value", "feature_id"], ascending=[ascending, True, True]).index
        out.loc[order, "rank"] = np.arange(1, len(order) + 1)
        out.loc[g.index, "n_ranked"] = len(order)
    out["n_ranked"] = out.groupby(["modality", "outcome_id"])["n_ranked"].transform("max").astype("int32")
    return out
