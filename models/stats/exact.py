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
from models.stats.firth import firth_pairs
from models.stats.logistic import DEAD_OUTCOME, batches, dead_outcome, fit_batch, wald_last, wald_p
from models.stats.ranking import KEY
from models.stats.screen import Z95, zero_cell

COLUMNS = ["adj_log_or", "adj_se", "adj_p_value", "adj_ci_low", "adj_ci_high", "exact_flag"]
_NUM = COLUMNS[:-1]
SEPARATION = "separation (zero cell): no ML estimate"
NOT_CONVERGED = "did not converge (possible separation)"
BEYOND_CAP = "not ranked: beyond exact_top_m exact fits"


def rankable(df: pd.DataFrame, cfg: AssociationConfig) -> pd.Series:
    """Pairs that may rank: score q < alpha and at least `min_exposed_cases` exposed cases."""
    return (df["score_q"] < cfg.alpha) & (df["n_exposed_cases"] >= cfg.min_exposed_cases)


def select_pairs(df: pd.DataFrame, cfg: AssociationConfig) -> pd.DataFrame:
    """(modality, feature_id, outcome_id) to fit exactly, from the discovery split: every pair
    that may rank (at most `exact_top_m` per (modality, outcome) by score p, when set; with a
    `rankable` column findings first), and
    with exact_select "top" also the `exact_top_m` best by score p that may not."""
    cand = df[df["score_p"].notna()].sort_values(["score_p", "feature_id"], kind="mergesort")
    groups = ["modality", "outcome_id"]
    picked = cand[rankable(cand, cfg)]
    if cfg.exact_top_m is not None:
        if "rankable" in picked.columns:  # findings (models/stats/units.py) before family members
            picked = picked.sort_values("rankable", ascending=False, kind="mergesort")
        picked = picked.groupby(groups, sort=False).head(cfg.exact_top_m)
    if cfg.exact_select == "top" and cfg.exact_top_m is not None:  # (the config requires it)
        best = cand.groupby(groups, sort=False).head(cfg.exact_top_m)
        picked = pd.concat([picked, best]).drop_duplicates(KEY)
    return picked[KEY].reset_index(drop=True)


def fit_pairs(
    E: sp.spmatrix, Z: np.ndarray, Y: np.ndarray, M: np.ndarray, pairs: np.ndarray, firth: bool,
    null: np.ndarray | None = None, moments_given: list[Moments | None] | None = None,
) -> pd.DataFrame:
    """Fit every (feature, outcome) index pair in `pairs` (k x 2) on the rows where M is
    true (M must exclude missing covariates). Pairs of different outcomes share a batch:
    a row outside an outcome's analysis gets prior weight 0. `null` (k x Z columns): each
    pair's outcome null model, the start (exposure at 0); `moments_given` (per outcome,
    from the screen's null fits on the same rows) saves the fast path its pass over the rows.

    ML: estimate, SE from the inverse information, Wald p and CI. Firth: estimate and SE
    from the penalised fit, penalised likelihood-ratio p, profile-likelihood CI
    (models/stats/firth.py). Returns COLUMNS (CI on the log-OR scale) in the order of `pairs`."""
    out = pd.DataFrame({**dict.fromkeys(_NUM, np.nan), "exact_flag": None}, index=range(len(pairs)))
    Ecsc = sp.csc_matrix(E)
    order = np.argsort(pairs[:, 1], kind="stable") if len(pairs) else np.arange(0)
    fast_ok = null is not None and not firth and len(pairs) > 0
    given = moments_given if moments_given is not None and all(
        moments_given[o] is not None for o in np.unique(pairs[:, 1])) else None
    prep = prepare(Z) if fast_ok and given is None else None
    if null is not None and fast_ok and (prep is not None or given is not None):
        fast, done = fast_pairs(Ecsc, Z, Y, M, pairs, null, prep, given)
        out.loc[done, COLUMNS] = fast.loc[done, COLUMNS].to_numpy()
        order = order[~done[order]]
    for chunk in batches(order):
        f, o = pairs[chunk, 0], pairs[chunk, 1]
        rows = M[:, o].any(axis=1)  # rows no fit of the chunk uses (the other split) cost nothing
        X = Ecsc[rows][:, f].toarray()
        W = M[rows][:, o].astype(np.float64)
        y = Y[rows][:, o].astype(np.float64) * W
        nl = None if null is None else null[chunk]
        out.loc[chunk, COLUMNS] = _fit_chunk(Z[rows], y, W, X, firth, nl).to_numpy()
    out[_NUM] = out[_NUM].astype(np.float64)
    return out


def _fit_chunk(Z: np.ndarray, y: np.ndarray, W: np.ndarray, X: np.ndarray, firth: bool,
               null: np.ndarray | None) -> pd.DataFrame:
    a, n1 = (X * y).sum(axis=0), (X * W).sum(axis=0)
    cases, n = y.sum(axis=0), W.sum(axis=0)
    zero = zero_cell(a, n1, cases, n)
    res = pd.DataFrame({**dict.fromkeys(_NUM, np.nan),
                        "exact_flag": pd.Series(zero).map({True: SEPARATION, False: None})})
    dead = dead_outcome(cases, n)
    res.loc[dead, "exact_flag"] = DEAD_OUTCOME
    cols = np.flatnonzero((~zero | firth) & ~dead)
    if not len(cols):
        return res
    nl = None if null is None else null[cols]
    vals, conv, flags = (_firth(Z, y[:, cols], W[:, cols], X[:, cols], nl) if firth
                         else _ml(Z, y[:, cols], W[:, cols], X[:, cols], nl))
    res.loc[cols, _NUM] = np.where(conv[:, None], vals, np.nan)
    res.loc[cols[~conv], "exact_flag"] = NOT_CONVERGED
    for i, j in enumerate(cols):
        parts = [t for t in ("zero cell: Firth estimate" if zero[j] else None, flags[i]) if t]
        if conv[i] and parts:
            res.loc[j, "exact_flag"] = "; ".join(parts)
    return res


def _ml(Z: np.ndarray, y: np.ndarray, W: np.ndarray, X: np.ndarray, null: np.ndarray | None
        ) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    start = None if null is None else np.column_stack([np.nan_to_num(null), np.zeros(X.shape[1])])
    fit = fit_batch(Z, y, weights=W, X=X, start=start)
    beta, se, p = wald_last(fit)
    vals = np.column_stack([beta, se, p, beta - Z95 * se, beta + Z95 * se])
    return vals, fit.converged, [None] * len(beta)


def _firth(Z: np.ndarray, y: np.ndarray, W: np.ndarray, X: np.ndarray, null: np.ndarray | None
           ) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    r = firth_pairs(Z, y, W, X, null)
    return np.column_stack([r.beta, r.se, r.p, r.ci_low, r.ci_high]), r.converged, r.flags


def fast_pairs(
    E: sp.csc_matrix, Z: np.ndarray, Y: np.ndarray, M: np.ndarray, pairs: np.ndarray, null: np.ndarray,
    prep: Prepared | None, given: list[Moments | None] | None = None, tol: float = 1e-9,
) -> tuple[pd.DataFrame, np.ndarray]:
    """ML fits through models/stats/fast_logistic.py, from each outcome's null model with the
    exposure at 0; `done` marks the pairs whose truncation bound guarantees |error| < tol in
    every coefficient (the rest go to the direct fit)."""
    out = pd.DataFrame({**dict.fromkeys(_NUM, np.nan), "exact_flag": None}, index=range(len(pairs)))
    done = np.zeros(len(pairs), bool)
    for o in np.unique(pairs[:, 1]):
        idx = np.flatnonzero(pairs[:, 1] == o)
        w, y = M[:, o].astype(bool), Y[:, o].astype(bool)
        g0 = null[idx[0], : Z.shape[1]]
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
                                              [Z[r] @ g0 for r in rows], np.zeros(len(rows)))
        err = np.sqrt(np.einsum("bij,bij->b", cov, cov)) * np.sqrt(Z.shape[1]) * bound
        good = conv & (err < tol)
        beta, se = theta[:, -1], np.sqrt(cov[:, -1, -1])
        out.loc[idx[good], "adj_log_or"] = beta[good]
        out.loc[idx[good], "adj_se"] = se[good]
        out.loc[idx[good], "adj_p_value"] = wald_p(beta[good], se[good])
        out.loc[idx[good], "adj_ci_low"] = beta[good] - Z95 * se[good]
        out.loc[idx[good], "adj_ci_high"] = beta[good] + Z95 * se[good]
        done[idx[good]] = True
    return out, done


def adjusted_columns(df: pd.DataFrame, cfg: AssociationConfig) -> pd.DataFrame:
    """adj_* columns from the one estimator of cfg.rank_estimator: "exact", the exact fit
    where one converged (else NaN: the score test's one-step estimate stays in score_*
    only); "score", the score test's one-step estimate U/V with SE 1/sqrt(V) and the score p
    for every tested pair. `adj_method` names it on every row that has one."""
    if cfg.rank_estimator == "score":
        has = df["score_p"].notna()
        log_or, se, p = df["score_log_or"], df["score_se"], df["score_p"]
        lo, hi = log_or - Z95 * se, log_or + Z95 * se
    else:
        has = df["adj_log_or"].notna()
        log_or, se, p, lo, hi = (df[c] for c in ("adj_log_or", "adj_se", "adj_p_value", "adj_ci_low", "adj_ci_high"))
    out = df.assign(
        adj_method=pd.Series(method_name(cfg), index=df.index, dtype=object).where(has, None),
        adj_log_or=log_or.where(has), adj_odds_ratio=np.exp(log_or.where(has)),
        adj_or_ci_low=np.exp(lo.where(has)), adj_or_ci_high=np.exp(hi.where(has)), adj_p_value=p.where(has),
    )
    return out.drop(columns=["adj_se", "adj_ci_low", "adj_ci_high"])


def method_name(cfg: AssociationConfig) -> str:
    """The adj_method label of cfg's estimator."""
    if cfg.rank_estimator == "score":
        return "score one-step"
    return "firth logistic" if cfg.firth else "logistic"
