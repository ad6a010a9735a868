from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import fisher_exact
from statsmodels.stats.contingency_tables import Table2x2
from statsmodels.stats.multitest import multipletests

from data_contracts.config import AssociationConfig
from models.association import bh_qvalues, odds_ratio_woolf, rank_pairs, screen_outcome


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


def test_bh_matches_statsmodels() -> None:
    p = np.random.default_rng(1).uniform(size=50) ** 3
    p[[3, 7]] = np.nan
    q = bh_qvalues(p)
    ok = ~np.isnan(p)
    ref = multipletests(p[ok], method="fdr_bh")[1]
    np.testing.assert_allclose(q[ok], ref, rtol=1e-12)
    assert np.isnan(q[[3, 7]]).all()


def _toy(seed: int = 0):
    rng = np.random.default_rng(seed)
    n, nf = 400, 4
    X = (rng.uniform(size=(n, nf)) < [0.1, 0.3, 0.0, 1.0]).astype(float)
    logit = -3 + 2.5 * X[:, 0]
    y = rng.uniform(size=n) < 1 / (1 + np.exp(-logit))
    elig = rng.uniform(size=n) > 0.05
    return sp.csc_matrix(X), elig, y


def test_screen_counts_and_fisher() -> None:
    X, elig, y = _toy()
    cfg = AssociationConfig(min_exposed_cases=1)
    res = screen_outcome(X, elig, y, np.array([True, True, True, True]), cfg)
    Xd = X.toarray()[elig]
    ye = y[elig]
    for j in (0, 1):
        a = int((Xd[:, j] * ye).sum())
        n1 = int(Xd[:, j].sum())
        c = int(ye.sum()) - a
        d = (len(ye) - n1) - c
        row = res.iloc[j]
        assert (row.n_exposed, row.n_exposed_cases, row.n_unexposed_cases) == (n1, a, c)
        assert row.p_value == pytest.approx(fisher_exact([[a, n1 - a], [c, d]]).pvalue, rel=1e-10)
        assert row.p_outcome_baseline == pytest.approx(ye.mean())
    # feature 2 never exposed, feature 3 exposes everyone: flagged, never a crash
    assert np.isnan(res.iloc[2].p_value) and np.isnan(res.iloc[3].p_value)
    assert "all studies exposed" in res.iloc[3].flag


def test_outcome_without_cases_is_flagged() -> None:
    X, elig, _ = _toy()
    res = screen_outcome(X, elig, np.zeros(len(elig), bool), np.ones(4, bool), AssociationConfig())
    assert res.p_value.isna().all() and res.flag.str.contains("no cases").all()


def test_rank_pairs() -> None:
    X, elig, y = _toy()
    res = screen_outcome(X, elig, y, np.ones(4, bool), AssociationConfig(min_exposed_cases=1))
    df = pd.concat([res.assign(modality="report", outcome_id="o1"), res.assign(modality="image", outcome_id="o1")])
    ranked = rank_pairs(df, AssociationConfig(min_exposed_cases=1))
    top = ranked[(ranked.modality == "report") & (ranked["rank"] == 1)]
    assert top.feature_id.tolist() == [0]
    assert (ranked.n_tested == 2).all()
