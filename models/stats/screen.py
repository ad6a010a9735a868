"""The crude screen, vectorised over every feature x outcome pair at once.

With E the (studies x features) binary cohort matrix, Y the (studies x outcomes) event
matrix and M the eligibility matrix, every 2x2 table comes from two sparse products:
exposed cases a = E^T (Y & M), exposed n1 = E^T M, plus the column sums of Y & M and M.

Fisher's exact test is vectorised the way scipy computes it for one table: the exposed
case count is hypergeometric; the two-sided p adds the tail on the observed side to the
far tail where the pmf is at most pmf(observed) * (1 + 1e-7). The pmf is unimodal, so both
tails are sums of terms walked outward (from the observation, and from the mode on the
other side) with the pmf ratio recurrence, every table at once; a table leaves the walk
once its remaining terms are negligible.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import gammaln

Z95 = 1.959963984540054
_REL = 1.0 + 1e-7  # scipy.stats.fisher_exact's tolerance for "as extreme"


def two_by_two(E: sp.spmatrix, Y: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, ...]:
    """(a, n1, cases, n) as (features x outcomes) arrays: exposed cases, exposed, all
    eligible cases and all eligible studies (the last two broadcast over features).

    Cases are sparse, and so is ineligibility once the rows no outcome uses (e.g. the
    other split) are dropped: a = E'(Y & M) and n1 = E'1 - E'(~M) are sparse products."""
    rows = M.any(axis=1)
    Et = sp.csr_matrix(E[rows].T if not rows.all() else E.T, dtype=np.float64)
    Mr, Yr = M[rows], Y[rows]
    a = (Et @ sp.csc_matrix((Yr & Mr).astype(np.float64))).toarray()
    n1 = np.asarray(Et.sum(axis=1)) - (Et @ sp.csc_matrix((~Mr).astype(np.float64))).toarray()
    cases = np.broadcast_to((Yr & Mr).sum(axis=0).astype(np.float64), a.shape)
    n = np.broadcast_to(Mr.sum(axis=0).astype(np.float64), a.shape)
    return a, n1, cases, n


def zero_cell(a: np.ndarray, n1: np.ndarray, cases: np.ndarray | float, n: np.ndarray | float) -> np.ndarray:
    """True where a 2x2 table (a exposed cases, n1 exposed, `cases` total cases, n total)
    has a zero cell: a, n1 - a, cases - a or n - n1 - cases + a."""
    return (a == 0) | (a == n1) | (a == cases) | (n1 - a == n - cases)


def odds_ratio_woolf(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, ...]:
    """Odds ratio ad/bc with Woolf CI; +0.5 to all four cells of tables with a zero cell.
    Returns (or, ci_low, ci_high, corrected_mask)."""
    a, b, c, d = (np.asarray(v, dtype=np.float64) for v in (a, b, c, d))
    zero = zero_cell(a, a + b, a + c, a + b + c + d)  # exact for counts (integers below 2**53)
    a, b, c, d = (np.where(zero, v + 0.5, v) for v in (a, b, c, d))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_or = np.log(a) + np.log(d) - np.log(b) - np.log(c)
        se = np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    return np.exp(log_or), np.exp(log_or - Z95 * se), np.exp(log_or + Z95 * se), zero


def _logpmf(k: np.ndarray, N: np.ndarray, K: np.ndarray, n: np.ndarray) -> np.ndarray:
    """log hypergeometric pmf: k successes in n draws from N with K successes."""
    const = gammaln(K + 1) + gammaln(N - K + 1) + gammaln(n + 1) + gammaln(N - n + 1) - gammaln(N + 1)
    return const - gammaln(k + 1) - gammaln(K - k + 1) - gammaln(n - k + 1) - gammaln(N - K - n + k + 1)


def _walk(k0: np.ndarray, up: np.ndarray, keep: np.ndarray, N: np.ndarray, K: np.ndarray,
          n: np.ndarray) -> np.ndarray:
    """Sum of pmf(k) / pmf(k0) over k = k0, k0 +- 1, ... (outward: pmf decreasing) for the
    terms <= `keep`, by the pmf ratio recurrence; a table stops once its terms are below
    1e-17 of max(sum, keep) or leave the support. Cheap: a few flops a step, no gammaln."""
    L = N - K - n
    s = np.where(up, -1.0, 1.0)  # pmf(k+-1)/pmf(k) = (A1 + s k)(A2 + s k) / ((B1 - s k)(B2 - s k))
    A1, A2 = np.where(up, K, 0.0), np.where(up, n, L)
    B1, B2 = np.where(up, 1.0, K + 1), np.where(up, L + 1, n + 1)
    total = np.where(keep >= 1.0, 1.0, 0.0)
    idx = np.arange(len(k0))
    k, term, tot, kp = k0.copy(), np.ones_like(k0), total.copy(), keep.copy()
    cols = [s, A1, A2, B1, B2]
    while len(idx):
        ss, a1, a2, b1, b2 = cols
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (a1 + ss * k) * (a2 + ss * k) / ((b1 - ss * k) * (b2 - ss * k))
        term = term * np.where(ratio > 0, ratio, 0.0)
        k = k - ss
        tot = tot + np.where(term <= kp, term, 0.0)
        live = term >= 1e-17 * np.maximum(tot, kp)
        if not live.any():
            total[idx] = tot
            break
        if live.mean() < 0.75:  # compact rarely: a finished table's later terms are ~0 anyway
            total[idx] = tot
            idx, k, term, tot, kp = idx[live], k[live], term[live], tot[live], kp[live]
            cols = [c[live] for c in cols]
    return total


def fisher_exact_2sided(a: np.ndarray, n1: np.ndarray, cases: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Two-sided Fisher exact p for 1-d arrays of tables (a exposed cases, n1 exposed,
    `cases` total cases, n total)."""
    a, n1, K, N = (np.asarray(v, dtype=np.float64).ravel() for v in (a, n1, cases, n))
    kmin, kmax = np.maximum(0.0, n1 + K - N), np.minimum(n1, K)
    mode = np.floor((K + 1) * (n1 + 1) / (N + 2))
    lp_obs, lp_mode = _logpmf(a, N, K, n1), _logpmf(mode, N, K, n1)
    below = a < mode
    # Observed tail: from a away from the mode. Far tail: from the mode away from a,
    # keeping the terms with pmf <= pmf(a) (1 + 1e-7), as scipy does.
    obs = _walk(a, ~below, np.ones_like(a), N, K, n1)
    far = _walk(mode, below, np.exp(lp_obs - lp_mode) * _REL, N, K, n1)
    p = np.exp(lp_obs) * obs + np.exp(lp_mode) * far
    at_mode = (a == mode) | (np.abs(lp_obs - lp_mode) <= 1e-9)
    return np.clip(np.where(at_mode | (kmin == kmax), 1.0, p), 0.0, 1.0)


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


def bonferroni(p: np.ndarray) -> np.ndarray:
    """Bonferroni-adjusted p over the non-NaN tests."""
    p = np.asarray(p, dtype=np.float64)
    return np.minimum(1.0, p * int(np.sum(~np.isnan(p))))


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN p stay NaN and are not counted as tests."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="mergesort")]
    m = len(order)
    if m:
        out[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    return out
