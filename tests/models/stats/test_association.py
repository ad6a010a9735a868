from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import statsmodels.api as smapi
from scipy.stats import fisher_exact

from data_contracts.config import AssociationConfig
from models.stats.association import OutcomeMatrices, associate_splits


def _cohort(seed: int = 0, n: int = 3000, n_f: int = 6, n_o: int = 4) -> tuple[OutcomeMatrices, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    subj = np.arange(n) // 2
    age = rng.normal(60, 10, n)
    male = (rng.uniform(size=n) < 0.5).astype(float)
    age[:6], male[6:12] = np.nan, np.nan  # missing birth / sex
    E = rng.uniform(size=(n, n_f)) < 0.1
    E[:, 1] = True  # all studies exposed
    E[:, 2] = False  # cohort without studies
    eta = -3 + 0.06 * (np.nan_to_num(age, nan=60) - 60) + 1.2 * E[:, 0]
    Y = rng.uniform(size=(n, n_o)) < (1 / (1 + np.exp(-eta)))[:, None]
    Y[:, 3] = False  # outcome without cases
    E[:, 4] = False
    E[:40, 4] = True
    Y[:40, 1] = True  # feature 4 perfectly predicts outcome 1: separation
    M = rng.uniform(size=(n, n_o)) < 0.9
    om = OutcomeMatrices(np.array([f"s{i:05d}" for i in range(n)]), subj, [f"o{i}" for i in range(n_o)],
                         Y, M, np.full((n, n_o), 900.0), age, male)
    split = np.where(subj % 2 == 0, "discovery", "validation")
    return om, sp.csc_matrix(E.astype(float)), split


def _run(cfg: AssociationConfig) -> tuple[pd.DataFrame, OutcomeMatrices, sp.csc_matrix, np.ndarray]:
    om, E, split = _cohort()
    n_f = E.shape[1]
    res = associate_splits({"report": (E, np.ones(n_f, bool), np.ones(len(split), bool))}, om, split, cfg)
    return res, om, E, split


def _row(res: pd.DataFrame, f: int, o: str, split: str = "discovery") -> pd.Series:
    return res[(res.feature_id == f) & (res.outcome_id == o) & (res.split == split)].iloc[0]


def test_counts_fisher_and_exact_fit_match_references() -> None:
    res, om, E, split = _run(AssociationConfig(min_exposed_cases=1))
    r = _row(res, 0, "o0")
    m = om.M[:, 0] & (split == "discovery")
    x, y = E[:, 0].toarray()[:, 0] > 0, om.Y[:, 0]
    a, n1, c = (x & y & m).sum(), (x & m).sum(), (~x & y & m).sum()
    assert (r.n_exposed, r.n_exposed_cases, r.n_unexposed_cases) == (n1, a, c)
    d = (m.sum() - n1) - c
    assert r.p_value == pytest.approx(fisher_exact([[a, n1 - a], [c, d]]).pvalue, rel=1e-8)
    ok = m & np.isfinite(om.age) & np.isfinite(om.male)
    D = np.column_stack([np.ones(ok.sum()), om.age[ok], om.male[ok], x[ok].astype(float)])
    ref = smapi.Logit(y[ok].astype(float), D).fit(method="newton", tol=1e-14, disp=0)
    assert r.adj_method == "logistic"
    assert r.adj_log_or == pytest.approx(ref.params[-1], rel=1e-8)
    assert r.adj_p_value == pytest.approx(ref.pvalues[-1], rel=1e-6)
    assert r.n_adjusted == ok.sum()
    assert r["rank"] == 1 and bool(r.replicated)


def test_edge_cases_are_flagged_rows() -> None:
    res, *_ = _run(AssociationConfig())
    assert len(res) == 6 * 4 * 2  # nothing dropped
    assert "all studies exposed" in _row(res, 1, "o0").flag
    assert "cohort has no eligible studies" in _row(res, 2, "o0").flag
    assert "outcome has no cases" in _row(res, 0, "o3").flag and np.isnan(_row(res, 0, "o3").p_value)
    assert "studies without age/sex" in _row(res, 0, "o0").flag


def test_separation_flagged_and_firth_estimates_it() -> None:
    cfg = AssociationConfig(exact_select="top", exact_top_m=6)
    res, *_ = _run(cfg)
    r = _row(res, 4, "o1")
    assert "separation" in r.flag and np.isnan(r.adj_log_or)
    firth, *_ = _run(cfg.model_copy(update={"firth": True}))
    rf = _row(firth, 4, "o1")
    assert rf.adj_method == "firth logistic" and np.isfinite(rf.adj_log_or) and rf.adj_log_or > 2


def test_ranks_only_in_discovery_and_count_tested() -> None:
    res, *_ = _run(AssociationConfig())
    assert res.loc[res.split == "validation", "rank"].isna().all()
    ranked = res[res["rank"].notna()]
    assert (ranked.score_q < 0.05).all()
    for _, g in ranked.groupby("outcome_id"):
        assert sorted(g["rank"]) == list(range(1, len(g) + 1))
        assert (g.adj_or_ci_low.diff().dropna() <= 0).all()


def test_no_pair_selected_for_exact_fits_still_gives_adjusted_columns() -> None:
    om, E, split = _cohort()
    E = sp.csc_matrix((E.shape[0], E.shape[1]))  # every cohort empty: nothing passes the screen
    res = associate_splits({"image": (E, np.ones(E.shape[1], bool), np.ones(len(split), bool))}, om, split,
                           AssociationConfig())
    assert len(res) == E.shape[1] * len(om.outcome_ids) * 2
    assert res["rank"].isna().all() and res["adj_log_or"].isna().all()
    assert res["flag"].str.contains("cohort has no eligible studies").all()
