from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import fisher_exact
from statsmodels.stats.contingency_tables import Table2x2
from statsmodels.stats.multitest import multipletests

from models.stats.screen import bh_qvalues, bonferroni, fisher_exact_2sided, odds_ratio_woolf, two_by_two


def _random_tables(rng: np.random.Generator, n: int) -> np.ndarray:
    N = rng.integers(2, 400, n)
    n1 = rng.integers(0, N + 1)
    K = rng.integers(0, N + 1)
    lo, hi = np.maximum(0, n1 + K - N), np.minimum(n1, K)
    a = lo + (rng.uniform(size=n) * (hi - lo + 1)).astype(int)
    return np.column_stack([a, n1, K, N])


def test_fisher_matches_scipy_on_random_tables() -> None:
    rng = np.random.default_rng(0)
    big = _random_tables(rng, 300) * np.array([1, 150, 150, 150])  # large N, cohorts and case counts
    big[:, 0] = rng.hypergeometric(big[:, 2], big[:, 3] - big[:, 2], big[:, 1])
    t = np.vstack([_random_tables(rng, 1500), big,
                   [[0, 5, 0, 10], [5, 5, 5, 10], [2, 4, 4, 8], [3, 10, 3, 1000], [50, 500, 60, 100000]]])
    ours = fisher_exact_2sided(t[:, 0], t[:, 1], t[:, 2], t[:, 3])
    for (a, n1, K, N), p in zip(t, ours, strict=True):
        ref = fisher_exact([[a, n1 - a], [K - a, N - n1 - K + a]]).pvalue
        assert p == pytest.approx(ref, rel=1e-8, abs=1e-300), (a, n1, K, N)


def test_fisher_returns_on_extreme_tables_at_hospital_scale() -> None:
    """pmf(a) / pmf(mode) underflows to 0 for a strong link in a large cohort: the far-tail
    walk used to run forever (found at 200,000 studies). Mixed with ordinary tables, every
    p equals scipy's."""
    tables = [(300, 1000, 400, 50_000), (900, 3000, 1200, 200_000), (2500, 3000, 2600, 200_000),
              (5, 10, 20, 1000), (0, 100, 50, 10_000), (40, 2000, 900, 200_000)]
    a, n1, k, n = (np.array([t[j] for t in tables], float) for j in range(4))
    got = fisher_exact_2sided(a, n1, k, n)
    want = [fisher_exact([[x, m - x], [c - x, t - m - c + x]])[1] for x, m, c, t in tables]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-300)
    assert got[0] == 0.0 and 0 < got[3] < 1e-5


def test_two_by_two_counts_match_dense() -> None:
    rng = np.random.default_rng(1)
    E = rng.uniform(size=(300, 7)) < 0.2
    Y = rng.uniform(size=(300, 4)) < 0.1
    M = rng.uniform(size=(300, 4)) < 0.9
    a, n1, cases, n = two_by_two(sp.csc_matrix(E.astype(float)), Y, M)
    for j in range(7):
        for o in range(4):
            m = M[:, o]
            assert a[j, o] == (E[m, j] & Y[m, o]).sum()
            assert n1[j, o] == E[m, j].sum()
            assert cases[j, o] == Y[m, o].sum() and n[j, o] == m.sum()


def test_odds_ratio_matches_statsmodels() -> None:
    for a, b, c, d in [(12, 30, 8, 150), (3, 40, 20, 500), (50, 5, 7, 9)]:
        t = Table2x2(np.array([[a, b], [c, d]]))
        or_, lo, hi, corr = odds_ratio_woolf(np.array([a]), np.array([b]), np.array([c]), np.array([d]))
        assert or_[0] == pytest.approx(t.oddsratio, rel=1e-10)
        lo_ref, hi_ref = t.oddsratio_confint()
        assert lo[0] == pytest.approx(lo_ref, rel=1e-8) and hi[0] == pytest.approx(hi_ref, rel=1e-8)
        assert not corr[0]


def test_haldane_only_for_zero_cells() -> None:
    or_, _, _, corr = odds_ratio_woolf(np.array([0, 2]), np.array([10, 10]), np.array([5, 5]), np.array([50, 50]))
    assert corr.tolist() == [True, False]
    assert or_[0] == pytest.approx((0.5 * 50.5) / (10.5 * 5.5))
    assert or_[1] == pytest.approx(2 * 50 / (10 * 5))


def test_bh_and_bonferroni_match_statsmodels() -> None:
    p = np.random.default_rng(1).uniform(size=50) ** 3
    p[[3, 7]] = np.nan
    ok = ~np.isnan(p)
    np.testing.assert_allclose(bh_qvalues(p)[ok], multipletests(p[ok], method="fdr_bh")[1], rtol=1e-12)
    np.testing.assert_allclose(bonferroni(p)[ok], multipletests(p[ok], method="bonferroni")[1], rtol=1e-12)
    assert np.isnan(bh_qvalues(p)[[3, 7]]).all() and np.isnan(bonferroni(p)[[3, 7]]).all()
