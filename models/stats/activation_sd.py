"""Odds ratio per SD of a feature's activation: outcome ~ z(activation) + age + sex.

The cohort analysis dichotomises a feature at its top percentile; this option keeps the
dose. For a (feature, outcome) pair the exposure is the feature's activation in each
study (0 where the feature does not fire), standardised over exactly the rows of that
outcome's adjusted analysis (eligible, in the split, encoded, age and sex known): mean 0
and sample SD 1 (ddof=1), so exp(beta) is the odds ratio per SD. A feature whose
activation is constant over those rows has no SD: the pair is flagged, not fitted.
Separation: when every case sits at one end of the activation range (e.g. the feature
fires in no case: all cases at 0, the minimum), the ML estimate does not exist
(quasi-complete separation); the pair is flagged, not fitted. Separation that needs the
covariates is not tested up front; a fit with fitted probabilities numerically 0 or 1
keeps its estimate and is flagged (as R's glm warns).
Continuous exposures have no zero-cell shortcut, so every pair takes the direct batched
Newton fit (models/stats/logistic.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.stats.logistic import DEAD_OUTCOME, batches, dead_outcome, fit_batch, wald_last

COLUMNS = ["sd_log_or", "sd_se", "sd_p_value", "sd_flag"]
ZERO_VARIANCE = "activation has zero variance in the analysis rows: no OR per SD"
SEPARATED = "separation (cases at one end of the activation): no ML estimate"
EPS_MU = 10 * np.finfo(np.float64).eps


def study_feature_matrix(rows: pd.DataFrame, values: np.ndarray, study_ids: np.ndarray,
                         n_features: int) -> sp.csc_matrix:
    """(studies x features) matrix of `values` at the (study_id, feature_id) of each row;
    rows of studies not in `study_ids` are dropped, missing entries are 0, duplicates add."""
    pos = pd.Index(study_ids).get_indexer(rows["study_id"])
    keep = pos >= 0
    A = sp.coo_matrix((values[keep], (pos[keep], rows["feature_id"].to_numpy(np.int64)[keep])),
                      shape=(len(study_ids), n_features))
    return A.tocsc()


def activation_matrix(acts: pd.DataFrame, study_ids: np.ndarray, n_features: int) -> sp.csc_matrix:
    """(studies x features) activation values from ACTIVATIONS rows (study_id, feature_id,
    value); studies not in `study_ids` are dropped, missing entries are 0."""
    return study_feature_matrix(acts, acts["value"].to_numpy(np.float64), study_ids, n_features)


def standardize(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, bool]:
    """(x - mean) / sd over the rows where w is true (ddof=1); rows outside are 0.
    Returns (z, ok); ok is False when the SD is zero (or fewer than 2 rows)."""
    v = x[w]
    if len(v) < 2:
        return np.zeros_like(x), False
    mean, sd = v.mean(), v.std(ddof=1)
    if not np.isfinite(sd) or sd <= 1e-12 * max(float(np.abs(v).max()), 1.0):
        return np.zeros_like(x), False
    return np.where(w, (x - mean) / sd, 0.0), True


def fit_per_sd(A: sp.spmatrix, Z: np.ndarray, Y: np.ndarray, M: np.ndarray, pairs: np.ndarray,
               start: np.ndarray | None = None) -> pd.DataFrame:
    """Fit outcome ~ Z + z(activation) for every (feature, outcome) index pair (k x 2) on
    the rows where M is true (M must exclude missing covariates). `start` (k x Z columns),
    each pair's outcome null model, is the second start for fits that do not converge
    from zero. Returns COLUMNS in pair order."""
    out = pd.DataFrame({"sd_log_or": np.nan, "sd_se": np.nan, "sd_p_value": np.nan, "sd_flag": None},
                       index=range(len(pairs)))
    Acsc = sp.csc_matrix(A)
    for chunk in batches(np.arange(len(pairs))):
        f, o = pairs[chunk, 0], pairs[chunk, 1]
        W = M[:, o].astype(bool)
        raw = Acsc[:, f].toarray()
        std = [standardize(raw[:, j], W[:, j]) for j in range(len(chunk))]
        X = np.column_stack([z for z, _ in std]) if len(chunk) else raw
        y = (Y[:, o] & W).astype(np.float64)
        cases, n = y.sum(axis=0), W.sum(axis=0)
        varies = np.array([ok for _, ok in std], dtype=bool)
        dead = dead_outcome(cases, n)
        sep = np.array([separated(X[:, j], y[:, j] > 0, W[:, j]) for j in range(len(chunk))], dtype=bool)
        out.loc[chunk[sep], "sd_flag"] = SEPARATED
        out.loc[chunk[~varies], "sd_flag"] = ZERO_VARIANCE
        out.loc[chunk[dead], "sd_flag"] = DEAD_OUTCOME
        fit_idx = np.flatnonzero(varies & ~dead & ~sep)
        if len(fit_idx):
            null = None if start is None else start[chunk[fit_idx]]
            res = _fit_with_retry(Z, y[:, fit_idx], W[:, fit_idx], X[:, fit_idx], null)
            out.loc[chunk[fit_idx], COLUMNS] = res.to_numpy()
    return out


def _fit_with_retry(Z: np.ndarray, y: np.ndarray, W: np.ndarray, X: np.ndarray,
                    null: np.ndarray | None) -> pd.DataFrame:
    """Newton from zero (as statsmodels' Logit starts); fits left unconverged are retried
    from the outcome's null model. The log-likelihood is concave, so a converged point is
    the ML estimate whichever start reached it."""
    res = _fit(Z, y, W, X, None)
    bad = np.flatnonzero(res["sd_log_or"].isna().to_numpy())
    if null is not None and len(bad):
        st = np.column_stack([np.nan_to_num(null[bad]), np.zeros(len(bad))])
        res.iloc[bad] = _fit(Z, y[:, bad], W[:, bad], X[:, bad], st).to_numpy()
    return res


def separated(x: np.ndarray, case: np.ndarray, w: np.ndarray) -> bool:
    """Quasi-complete separation by x alone among the rows where w is true: all cases at
    or above every non-case, or all at or below."""
    xc, xn = x[w & case], x[w & ~case]
    if not len(xc) or not len(xn):
        return False
    return bool(xc.min() >= xn.max() or xc.max() <= xn.min())


def _fit(Z: np.ndarray, y: np.ndarray, W: np.ndarray, X: np.ndarray, start: np.ndarray | None) -> pd.DataFrame:
    fit = fit_batch(Z, y, weights=W.astype(np.float64), X=X, start=start)
    beta, se, p = wald_last(fit)
    ok = fit.converged
    extreme = np.asarray(((W > 0) & ((fit.mu < EPS_MU) | (fit.mu > 1 - EPS_MU))).any(axis=0), bool)
    flag = [None if not c else "fitted probabilities numerically 0 or 1 (possible separation)" for c in extreme]
    flag = [f if c else "OR per SD did not converge (possible separation)" for c, f in zip(ok, flag, strict=True)]
    return pd.DataFrame({
        "sd_log_or": np.where(ok, beta, np.nan),
        "sd_se": np.where(ok, se, np.nan),
        "sd_p_value": np.where(ok, p, np.nan),
        "sd_flag": flag,
    })
