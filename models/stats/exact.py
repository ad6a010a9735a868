"""Exact adjusted logistic fits (outcome ~ cohort + age + sex) for selected pairs.

Pairs of one outcome share its outcome vector, covariates and eligible rows, so they are
fitted together in batches (models/stats/logistic.py), starting from the outcome's null model.
A binary exposure with a zero cell among the adjusted rows separates the outcome
(quasi-completely): the ML estimate does not exist, so the pair is flagged and left
unestimated unless Firth's penalised likelihood is on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from data_contracts.config import AssociationConfig
from models.stats.fast_logistic import Moments, Prepared, fit_exposed, moments, prepare
from models.stats.logistic import DEAD_OUTCOME, batches, dead_outcome, fit_batch, wald_last, wald_p
from models.stats.screen import Z95, zero_cell

COLUMNS = ["adj_log_or", "adj_se", "adj_p_value", "exact_flag"]


def select_pairs(df: pd.DataFrame, cfg: AssociationConfig) -> pd.DataFrame:
    """(modality, feature_id, outcome_id) to confirm: score q < alpha ("q"), or every
    tested pair ("top"); at most `exact_top_m` per (modality, outcome) by score p."""
    cand = df[df["score_p"].notna()]
    if cfg.exact_select == "q":
        cand = cand[cand["score_q"] < cfg.alpha]
    cand = cand.sort_values(["score_p", "feature_id"], kind="mergesort")
    top = cand.groupby(["modality", "outcome_id"], sort=False).head(cfg.exact_top_m)
    return top[["modality", "feature_id", "outcome_id"]].reset_index(drop=True)


def fit_pairs(
    E: sp.spmatrix, Z: np.ndarray, Y: np.ndarray, M: np.ndarray, pairs: np.ndarray, firth: bool,
    start: np.ndarray | None = None, moments_given: list[Moments | None] | None = None,
) -> pd.DataFrame:
    """Fit every (feature, outcome) index pair in `pairs` (k x 2) on the rows where M is
    true (M must exclude missing covariates). Pairs of different outcomes share a batch:
    a row outside an outcome's analysis gets prior weight 0. `start` (k x p), e.g. the
    null model plus the score test's one-step estimate, saves Newton iterations;
    `moments_given` (per outcome, from the screen's null fits on the same rows) saves the
    fast path its one pass over the rows per outcome.
    Returns COLUMNS in the order of `pairs`."""
    out = pd.DataFrame({"adj_log_or": np.nan, "adj_se": np.nan, "adj_p_value": np.nan,
                        "exact_flag": None}, index=range(len(pairs)))
    Ecsc = sp.csc_matrix(E)
    order = np.argsort(pairs[:, 1], kind="stable") if len(pairs) else np.arange(0)
    fast_ok = start is not None and not firth and len(pairs) > 0
    given = moments_given if moments_given is not None and all(
        moments_given[o] is not None for o in np.unique(pairs[:, 1])) else None
    prep = prepare(Z) if fast_ok and given is None else None
    if start is not None and fast_ok and (prep is not None or given is not None):
        fast, done = fast_pairs(Ecsc, Z, Y, M, pairs, start, prep, given)
        out.loc[done, COLUMNS] = fast.loc[done, COLUMNS].to_numpy()
        order = order[~done[order]]
    for chunk in batches(order):
        f, o = pairs[chunk, 0], pairs[chunk, 1]
        X = Ecsc[:, f].toarray()
        W = M[:, o].astype(np.float64)
        y = Y[:, o].astype(np.float64) * W
        st = None if start is None else start[chunk]
        out.loc[chunk, COLUMNS] = _fit_chunk(Z, y, W, X, firth, st).to_numpy()
    return out


def _fit_chunk(Z: np.ndarray, y: np.ndarray, W: np.ndarray, X: np.ndarray, firth: bool,
               start: np.ndarray | None) -> pd.DataFrame:
    a, n1 = (X * y).sum(axis=0), (X * W).sum(axis=0)
    cases, n = y.sum(axis=0), W.sum(axis=0)
    zero = zero_cell(a, n1, cases, n)
    res = pd.DataFrame({"adj_log_or": np.nan, "adj_se": np.nan, "adj_p_value": np.nan,
                        "exact_flag": pd.Series(zero).map({True: "separation (zero cell): no ML estimate",
                                                           False: None})})
    dead = dead_outcome(cases, n)
    res.loc[dead, "exact_flag"] = DEAD_OUTCOME
    fit_cols = np.flatnonzero((~zero | firth) & ~dead)
    if not len(fit_cols):
        return res
    st = None if start is None else np.nan_to_num(start[fit_cols])
    fit = fit_batch(Z, y[:, fit_cols], weights=W[:, fit_cols], X=X[:, fit_cols], firth=firth, start=st)
    beta, se, p = wald_last(fit)
    res.loc[fit_cols, "adj_log_or"] = np.where(fit.converged, beta, np.nan)
    res.loc[fit_cols, "adj_se"] = np.where(fit.converged, se, np.nan)
    res.loc[fit_cols, "adj_p_value"] = np.where(fit.converged, p, np.nan)
    res.loc[fit_cols[~fit.converged], "exact_flag"] = "did not converge (possible separation)"
    if firth:
        res.loc[fit_cols[zero[fit_cols]], "exact_flag"] = "zero cell: Firth estimate"
    return res


def fast_pairs(
    E: sp.csc_matrix, Z: np.ndarray, Y: np.ndarray, M: np.ndarray, pairs: np.ndarray, start: np.ndarray,
    prep: Prepared | None, given: list[Moments | None] | None = None, tol: float = 1e-9,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Fits through models/stats/fast_logistic.py; `done` marks the pairs whose truncation bound
    guarantees |error| < tol in every coefficient (the rest go to the direct fit)."""
    out = pd.DataFrame({"adj_log_or": np.nan, "adj_se": np.nan, "adj_p_value": np.nan,
                        "exact_flag": None}, index=range(len(pairs)))
    done = np.zeros(len(pairs), bool)
    for o in np.unique(pairs[:, 1]):
        idx = np.flatnonzero(pairs[:, 1] == o)
        w, y = M[:, o].astype(bool), Y[:, o].astype(bool)
        g0 = start[idx[0], : Z.shape[1]]
        rows = [E.indices[E.indptr[f]:E.indptr[f + 1]] for f in pairs[idx, 0]]
        rows = [r[w[r]] for r in rows]
        cases, n = float((y & w).sum()), float(w.sum())
        a = np.array([y[r].sum() for r in rows], dtype=np.float64)
        n1 = np.array([len(r) for r in rows], dtype=np.float64)
        ok = ~zero_cell(a, n1, cases, n)
        if not ok.any():
            continue
        idx, rows = idx[ok], [r for r, k in zip(rows, ok, strict=True) if k]
        mo = given[o] if given is not None else None
        if mo is None:
            if prep is None:
                continue
            ws = w[prep.order].astype(np.float64)
            mo = moments(prep, y[prep.order] * ws, ws, g0)
        theta, cov, conv, bound = fit_exposed(mo, [Z[r] for r in rows], [y[r].astype(np.float64) for r in rows],
                                              [Z[r] @ g0 for r in rows], start[idx, -1])
        err = np.sqrt(np.einsum("bij,bij->b", cov, cov)) * np.sqrt(Z.shape[1]) * bound
        good = conv & (err < tol)
        beta, se = theta[:, -1], np.sqrt(cov[:, -1, -1])
        out.loc[idx[good], "adj_log_or"] = beta[good]
        out.loc[idx[good], "adj_se"] = se[good]
        out.loc[idx[good], "adj_p_value"] = wald_p(beta[good], se[good])
        done[idx[good]] = True
    return out, done


def adjusted_columns(df: pd.DataFrame, method: str) -> pd.DataFrame:
    """adj_* columns: the exact fit where one was made, else the score test's one-step
    estimate (U/V, SE 1/sqrt(V), score p); `adj_method` says which."""
    exact = df["exact_flag"].notna() | df["adj_log_or"].notna()
    log_or = df["adj_log_or"].where(exact, df["score_log_or"])
    se = df["adj_se"].where(exact, df["score_se"])
    out = df.assign(
        adj_method=pd.Series(method, index=df.index).where(
            exact, pd.Series("score one-step", index=df.index).where(df["score_p"].notna())),
        adj_odds_ratio=np.exp(log_or),
        adj_or_ci_low=np.exp(log_or - Z95 * se),
        adj_or_ci_high=np.exp(log_or + Z95 * se),
        adj_p_value=df["adj_p_value"].where(exact, df["score_p"]),
        adj_log_or=log_or,
    )
    return out.drop(columns=["adj_se"])
