from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import statsmodels.api as smapi

from data_contracts.config import AssociationConfig
from models.stats.activation_sd import SEPARATED, ZERO_VARIANCE, activation_matrix, fit_per_sd, separated, standardize
from models.stats.association import associate_splits
from models.stats.logistic import fit_batch
from models.stats.score_test import covariate_design
from tests.models.stats.test_association import _cohort

SD_COLS = ["sd_odds_ratio", "sd_ci_low", "sd_ci_high", "sd_p_value"]


def _statsmodels_per_sd(x: np.ndarray, y: np.ndarray, age: np.ndarray, male: np.ndarray,
                        rows: np.ndarray) -> tuple[float, float, float]:
    """Independent reference: standardise over `rows` (sample SD) and fit Logit there."""
    v = x[rows]
    z = (v - v.mean()) / v.std(ddof=1)
    D = np.column_stack([np.ones(rows.sum()), age[rows], male[rows], z])
    ref = smapi.Logit(y[rows].astype(float), D).fit(method="newton", tol=1e-14, disp=0)
    return float(ref.params[-1]), float(ref.bse[-1]), float(ref.pvalues[-1])


def _fixture(seed: int = 3, n: int = 2500) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    age = rng.normal(62, 11, n)
    male = (rng.uniform(size=n) < 0.5).astype(float)
    fires = rng.uniform(size=(n, 4)) < np.array([0.3, 0.05, 0.6, 0.0])
    A = np.where(fires, rng.gamma(2.0, 1.5, (n, 4)), 0.0)
    A[:, 3][:1] = 0.0  # feature 3 never fires: zero variance
    eta = -2.5 + 0.04 * (age - 62) + 0.35 * A[:, 0] + 0.5 * male
    Y = rng.uniform(size=(n, 2)) < (1 / (1 + np.exp(-eta)))[:, None]
    M = rng.uniform(size=(n, 2)) < 0.85
    return sp.csc_matrix(A), Y, M, age, male


def test_per_sd_matches_statsmodels_on_standardized_activation() -> None:
    A, Y, M, age, male = _fixture()
    pairs = np.array([[0, 0], [1, 0], [2, 1], [0, 1], [3, 0]])
    res = fit_per_sd(A, covariate_design(age, male), Y, M, pairs)
    dense = A.toarray()
    for i, (f, o) in enumerate(pairs[:4]):
        b, se, p = _statsmodels_per_sd(dense[:, f], Y[:, o], age, male, M[:, o])
        assert res.loc[i, "sd_log_or"] == pytest.approx(b, rel=1e-8, abs=1e-10)
        assert res.loc[i, "sd_se"] == pytest.approx(se, rel=1e-8)
        assert res.loc[i, "sd_p_value"] == pytest.approx(p, rel=1e-6)
        assert res.loc[i, "sd_flag"] is None
    assert res.loc[4, "sd_flag"] == ZERO_VARIANCE and np.isnan(res.loc[4, "sd_log_or"])


def test_zero_variance_separation_and_dead_outcome_are_flags() -> None:
    A, Y, M, age, male = _fixture(n=600)
    const = np.where(M[:, 0], 2.0, 0.0)  # fires with one value on every analysis row
    silent_in_cases = np.where(Y[:, 0], 0.0, A[:, 0].toarray()[:, 0])  # no case has activation > 0
    A2 = sp.csc_matrix(np.column_stack([A.toarray(), const, silent_in_cases]))
    Y[:, 1] = False
    res = fit_per_sd(A2, covariate_design(age, male), Y, M, np.array([[4, 0], [0, 1], [5, 0]]))
    assert res.loc[0, "sd_flag"] == ZERO_VARIANCE
    assert "no cases" in res.loc[1, "sd_flag"]
    assert res.loc[2, "sd_flag"] == SEPARATED
    w = M[:, 0]
    assert separated(silent_in_cases, Y[:, 0], w) and not separated(A[:, 0].toarray()[:, 0], Y[:, 0], w)
    assert res[["sd_log_or", "sd_se", "sd_p_value"]].isna().all().all()
    z, ok = standardize(np.array([0.0, 1.0, 3.0, 9.0]), np.array([True, True, True, False]))
    assert ok and z[3] == 0.0 and z[:3].mean() == pytest.approx(0) and z[:3].std(ddof=1) == pytest.approx(1)


def test_activation_matrix_from_long_rows() -> None:
    acts = pd.DataFrame({"study_id": ["b", "a", "zz", "b"], "feature_id": [0, 2, 1, 2],
                         "value": np.array([1.5, 2.0, 9.0, 0.5], np.float32)})
    A = activation_matrix(acts, np.array(["a", "b", "c"]), 3).toarray()
    assert np.array_equal(A, [[0, 0, 2.0], [1.5, 0, 0.5], [0, 0, 0]])


def _run(or_per_sd: bool) -> tuple[pd.DataFrame, object, np.ndarray, np.ndarray]:
    om, E, split = _cohort()
    rng = np.random.default_rng(11)
    # activation: positive where the cohort feature fires, a little dose elsewhere for some features
    act = E.toarray() * rng.gamma(3.0, 1.0, E.shape) + (rng.uniform(size=E.shape) < 0.2) * rng.uniform(size=E.shape)
    act[:, 5] = 0.0  # cohort without activation (cannot happen in a run): zero variance
    n_f = E.shape[1]
    cfg = AssociationConfig(min_exposed_cases=1, exact_select="top", exact_top_m=n_f, or_per_sd=or_per_sd)
    res = associate_splits({"report": (E, np.ones(n_f, bool), np.ones(len(split), bool))}, om, split, cfg,
                           {"report": sp.csc_matrix(act)} if or_per_sd else None)
    return res, om, act, split


def test_pipeline_option_on_matches_statsmodels_and_off_is_nan() -> None:
    off, *_ = _run(False)
    assert off[SD_COLS].isna().all().all() and off["sd_flag"].isna().all()
    on, om, act, split = _run(True)
    assert off.drop(columns=[*SD_COLS, "sd_flag"]).equals(on.drop(columns=[*SD_COLS, "sd_flag"]))
    ok_cov = np.isfinite(om.age) & np.isfinite(om.male)
    for name in ("discovery", "validation"):
        r = on[(on.feature_id == 0) & (on.outcome_id == "o0") & (on.split == name)].iloc[0]
        rows = om.M[:, 0] & (split == name) & ok_cov
        b, se, p = _statsmodels_per_sd(act[:, 0], om.Y[:, 0], om.age, om.male, rows)
        assert np.log(r.sd_odds_ratio) == pytest.approx(b, rel=1e-8)
        assert (np.log(r.sd_ci_high) - np.log(r.sd_ci_low)) / (2 * 1.959963984540054) == pytest.approx(se, rel=1e-8)
        assert r.sd_p_value == pytest.approx(p, rel=1e-6)
    zero = on[(on.feature_id == 5) & on.score_p.notna() & (on.outcome_id != "o3")]
    assert len(zero) and (zero["sd_flag"] == ZERO_VARIANCE).all() and zero[SD_COLS].isna().all().all()
    assert (on.loc[on.outcome_id == "o3", "sd_flag"].dropna().str.contains("no cases")).all()
    untested = on[on.score_p.isna()]
    assert len(untested) and untested["sd_odds_ratio"].isna().all()


def test_option_on_without_activations_is_an_error() -> None:
    om, E, split = _cohort()
    cfg = AssociationConfig(or_per_sd=True)
    with pytest.raises(ValueError, match="or_per_sd"):
        associate_splits({"report": (E, np.ones(E.shape[1], bool), np.ones(len(split), bool))}, om, split, cfg)


def test_heavy_tailed_activation_converges_from_either_start() -> None:
    # Demo-like: a feature firing in 7% of studies with a long right tail, a rare outcome.
    rng = np.random.default_rng(34)
    n = 1000
    age, male = rng.normal(62, 11, n), (rng.uniform(size=n) < 0.5).astype(float)
    x = np.where(rng.uniform(size=n) < 0.07, rng.lognormal(0.5, 0.5, n), 0.0)
    eta = -4.5 + 0.05 * (age - 62) + 1.3 * male + 1.2 * x
    y = rng.uniform(size=n) < 1 / (1 + np.exp(-eta))
    Z = covariate_design(age, male)
    null = fit_batch(Z, y[:, None].astype(float)).params
    z, _ = standardize(x, np.ones(n, bool))
    # Undamped Newton from the null model diverged here; with step halving it converges
    # from the null model and from zero to the same point.
    from_null = fit_batch(Z, y[:, None].astype(float), X=z[:, None], start=np.c_[null, 0.0])
    from_zero = fit_batch(Z, y[:, None].astype(float), X=z[:, None])
    assert from_null.converged[0] and from_zero.converged[0]
    np.testing.assert_allclose(from_null.params, from_zero.params, rtol=1e-9, atol=1e-10)
    res = fit_per_sd(sp.csc_matrix(x[:, None]), Z, y[:, None], np.ones((n, 1), bool), np.array([[0, 0]]), null)
    b, se, _ = _statsmodels_per_sd(x, y, age, male, np.ones(n, bool))
    assert res.loc[0, "sd_log_or"] == pytest.approx(b, rel=1e-8) and res.loc[0, "sd_se"] == pytest.approx(se, rel=1e-8)
