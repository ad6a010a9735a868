"""The crude screen, vectorised over every feature x outcome pair at once.

With E the (studies x features) binary cohort matrix, Y the (studies x outcomes) event
matrix and M the eligibility matrix, every 2x2 table comes from two sparse products:
exposed cases a = E^T (Y & M), exposed n1 = E^T M, plus the column sums of Y & M and M.

Fisher's exact test is vectorised the way scipy computes it for one table: the exposed
case count is hypergeometric; the two-sided p adds the tail on the observed side to the
far tail where the pmf is at most pmf(observed) * (1 + 1e-7). The pmf is unimodal, so the
far-tail boundary is found by a vectorised bisection on the log-pmf (gammaln).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import gammaln
from scipy.stats import hypergeom

Z95 = 1.959963984540054
_REL = 1.0 + 1e-7  # scipy.stats.fisher_exact's tolerance for "as extreme"


def two_by_two(E: sp.spmatrix, Y: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, ...]:
    """(a, n1, cases, n) as (features x outcomes) arrays: exposed cases, exposed, all
    eligible cases and all eligible studies (the last two broadcast over features)."""
    Et = sp.csr_matrix(E.T, dtype=np.float64)
    ym = (Y & M).astype(np.float64)
    m = M.astype(np.float64)
    a = np.asarray(Et @ ym)
    n1 = np.asarray(Et @ m)
    cases = np.broadcast_to(ym.sum(axis=0), a.shape)
    n = np.broadcast_to(m.sum(axis=0), a.shape)
    return a, n1, cases, n


def odds_ratio_woolf(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, ...]:
    """Odds ratio ad/bc with Woolf CI; +0.5 to all four cells of tables with a zero cell.
    Returns (or, ci_low, ci_high, corrected_mask)."""
    a, b, c, d = (np.asarray(v, dtype=np.float64) for v in (a, b, c, d))
    zero = (a == 0) | (b == 0) | (c == 0) | (d == 0)
    a, b, c, d = (np.where(zero, v + 0.5, v) for v in (a, b, c, d))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_or = np.log(a) + np.log(d) - np.log(b) - np.log(c)
        se = np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    return np.exp(log_or), np.exp(log_or - Z95 * se), np.exp(log_or + Z95 * se), zero


def _logpmf(k: np.ndarray, N: np.ndarray, K: np.ndarray, n: np.ndarray) -> np.ndarray:
    """log hypergeometric pmf: k successes in n draws from N with K successes."""
    def lchoose(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return gammaln(x + 1) - gammaln(y + 1) - gammaln(x - y + 1)
    return lchoose(K, k) + lchoose(N - K, n - k) - lchoose(N, n)


def _bisect(lo: np.ndarray, hi: np.ndarray, inside: object) -> np.ndarray:
    """Largest integer x in [lo, hi] with inside(x) true, for a predicate that is true on
    a prefix of the interval (lo must satisfy it)."""
    lo, hi = lo.copy(), hi.copy()
    while np.any(lo < hi):
        mid = (lo + hi + 1) // 2
        ok = inside(mid)  # type: ignore[operator]
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid - 1)
    return lo


def fisher_exact_2sided(a: np.ndarray, n1: np.ndarray, cases: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Two-sided Fisher exact p for 1-d arrays of tables (a exposed cases, n1 exposed,
    `cases` total cases, n total)."""
    a, n1, K, N = (np.asarray(v, dtype=np.float64).ravel() for v in (a, n1, cases, n))
    kmin, kmax = np.maximum(0.0, n1 + K - N), np.minimum(n1, K)
    mode = np.floor((K + 1) * (n1 + 1) / (N + 2))
    lp_obs = _logpmf(a, N, K, n1) + np.log(_REL)
    below = a < mode
    p = np.ones_like(a)
    # Far tail above the mode (observed below it): first k >= mode with pmf <= pmf_obs.
    up = below & (_logpmf(kmax, N, K, n1) <= lp_obs)
    first_up = kmax - _bisect(np.zeros_like(a), kmax - mode, lambda j: _logpmf(kmax - j, N, K, n1) <= lp_obs)
    p_up = hypergeom.cdf(a, N, n1, K) + np.where(up, hypergeom.sf(first_up - 1, N, n1, K), 0.0)
    # Far tail below the mode (observed above it): last k <= mode with pmf <= pmf_obs.
    down = ~below & (_logpmf(kmin, N, K, n1) <= lp_obs)
    last_down = _bisect(kmin, np.maximum(mode, kmin), lambda k: _logpmf(k, N, K, n1) <= lp_obs)
    p_down = hypergeom.sf(a - 1, N, n1, K) + np.where(down, hypergeom.cdf(last_down, N, n1, K), 0.0)
    p = np.where(below, p_up, p_down)
    at_mode = (a == mode) | (np.abs(_logpmf(a, N, K, n1) - _logpmf(mode, N, K, n1)) <= 1e-9)
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
