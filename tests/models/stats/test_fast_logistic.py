from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import statsmodels.api as smapi

from models.stats.exact import fast_pairs, fit_pairs
from models.stats.fast_logistic import prepare
from models.stats.logistic import fit_batch
from models.stats.score_test import covariate_design


def _setup(rate: float, seed: int = 0, n: int = 20000):
    rng = np.random.default_rng(seed)
    age = rng.normal(60, 10, n)
    male = (rng.uniform(size=n) < 0.5).astype(float)
    Z = covariate_design(age, male)
    E = sp.csc_matrix((rng.uniform(size=(n, 6)) < rate).astype(float))
    eta = -2.5 + 0.04 * (age - 60) + 0.3 * male + 1.0 * E[:, 0].toarray()[:, 0]
    Y = rng.uniform(size=(n, 2)) < (1 / (1 + np.exp(-eta)))[:, None]
    M = rng.uniform(size=(n, 2)) < 0.95
    null = fit_batch(Z, (Y & M).astype(float), weights=M.astype(float))
    pairs = np.array([[f, o] for o in range(2) for f in range(6)])
    return Z, E, Y, M, pairs, null.params[pairs[:, 1]]


def _statsmodels(Z, E, Y, M, f: int, o: int):
    m = M[:, o]
    D = np.column_stack([Z[m], E[:, f].toarray()[m, 0]])
    return smapi.Logit(Y[m, o].astype(float), D).fit(method="newton", tol=1e-14, disp=0)


def test_fast_path_matches_statsmodels() -> None:
    Z, E, Y, M, pairs, null = _setup(rate=0.01)
    prep = prepare(Z)
    assert prep is not None
    res, done = fast_pairs(E, Z, Y, M, pairs, null, prep)
    assert done.all()  # rare exposures: the truncation bound holds for every pair
    for (f, o), b, se in zip(pairs, res["adj_log_or"], res["adj_se"], strict=True):
        ref = _statsmodels(Z, E, Y, M, f, o)
        assert abs(b - ref.params[-1]) < 1e-8 and abs(se - ref.bse[-1]) < 1e-8 * ref.bse[-1] + 1e-12


def test_common_exposure_falls_back_to_direct_fit() -> None:
    Z, E, Y, M, pairs, null = _setup(rate=0.4, seed=1, n=3000)
    _, done = fast_pairs(E, Z, Y, M, pairs, null, prepare(Z))
    assert not done.all()  # large shifts of the covariate coefficients: bound fails
    res = fit_pairs(E, Z, Y, M, pairs, firth=False, null=null)
    for (f, o), b in zip(pairs, res["adj_log_or"], strict=True):
        assert abs(b - _statsmodels(Z, E, Y, M, f, o).params[-1]) < 1e-8


def test_moments_from_the_screen_give_the_same_exact_fits() -> None:
    from models.stats.score_test import score_test

    Z, E, Y, M, pairs, _ = _setup(rate=0.01, seed=2)
    sc = score_test(E, Z, Y, M, with_moments=True)
    assert sc.moments is not None and all(m is not None for m in sc.moments)
    reused = fit_pairs(E, Z, Y, M, pairs, firth=False, null=sc.null_params[pairs[:, 1]], moments_given=sc.moments)
    for (f, o), b in zip(pairs, reused["adj_log_or"], strict=True):
        assert abs(b - _statsmodels(Z, E, Y, M, f, o).params[-1]) < 1e-8


def test_design_without_one_continuous_column_is_declined() -> None:
    Z = np.column_stack([np.ones(100), np.arange(100) % 2, np.arange(100) % 3])
    assert prepare(Z) is None


def test_a_singular_information_fails_its_pair_not_the_batch() -> None:
    """A start far out (here b = 80: every exposed probability rounds to 1, so the
    exposure's information is exactly 0) made np.linalg.solve raise for the whole batch;
    now that pair is left unconverged (the direct fit takes it) and the others are exact."""
    from models.stats.fast_logistic import fit_exposed, moments

    Z, E, Y, M, _, start = _setup(rate=0.01, seed=3)
    prep = prepare(Z)
    assert prep is not None
    o = 0
    w, y = M[:, o], Y[:, o]
    ws = w[prep.order].astype(np.float64)
    g0 = start[0, :3]
    mo = moments(prep, y[prep.order] * ws, ws, g0)
    rows = [E.indices[E.indptr[f]:E.indptr[f + 1]] for f in (0, 1)]
    rows = [r[w[r]] for r in rows]
    theta, _, conv, _ = fit_exposed(mo, [Z[r] for r in rows], [y[r].astype(float) for r in rows],
                                      [Z[r] @ g0 for r in rows], np.array([0.0, 80.0]))
    assert conv.tolist() == [True, False]
    assert abs(theta[0, -1] - _statsmodels(Z, E, Y, M, 0, o).params[-1]) < 1e-8
    # fit_pairs starts every exposure at 0 (its start is the outcome's null model), so the
    # pipeline reaches that start only through fit_exposed; its fits agree with the one above
    res = fit_pairs(E, Z, Y, M, np.array([[0, o], [1, o]]), firth=False, null=np.tile(g0, (2, 1)))
    assert abs(res["adj_log_or"].iloc[0] - theta[0, -1]) < 1e-10
