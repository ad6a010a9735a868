from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import statsmodels.api as smapi
from scipy.stats import chi2

from models.stats.score_test import covariate_design, score_test


def test_score_test_matches_dense_reference() -> None:
    rng = np.random.default_rng(4)
    n, nf, no = 800, 6, 3
    age = rng.normal(60, 10, n)
    male = rng.uniform(size=n) < 0.5
    Z = covariate_design(age, male)
    E = rng.uniform(size=(n, nf)) < 0.15
    eta = -2 + 0.05 * (age - 60) + 0.7 * E[:, 0]
    Y = rng.uniform(size=(n, no)) < (1 / (1 + np.exp(-eta)))[:, None]
    M = rng.uniform(size=(n, no)) < 0.85
    res = score_test(sp.csc_matrix(E.astype(float)), Z, Y, M)
    D = np.column_stack([np.ones(n), age, male.astype(float)])  # unstandardised: same test
    for o in range(no):
        m = M[:, o]
        mu = smapi.Logit(Y[m, o].astype(float), D[m]).fit(method="newton", tol=1e-14, disp=0).predict()
        w, r = mu * (1 - mu), Y[m, o] - mu
        A = D[m].T @ (w[:, None] * D[m])
        for j in range(nf):
            e = E[m, j].astype(float)
            c = D[m].T @ (w * e)
            U, V = e @ r, e @ (w * e) - c @ np.linalg.solve(A, c)
            np.testing.assert_allclose(res.p[j, o], chi2.sf(U * U / V, 1), rtol=1e-7)
            np.testing.assert_allclose(res.log_or[j, o], U / V, rtol=1e-7)
            np.testing.assert_allclose(res.se[j, o], 1 / np.sqrt(V), rtol=1e-7)


def test_outcome_without_cases_gives_nan_not_crash() -> None:
    rng = np.random.default_rng(5)
    n = 200
    Z = covariate_design(rng.normal(60, 10, n), rng.uniform(size=n) < 0.5)
    E = sp.csc_matrix((rng.uniform(size=(n, 3)) < 0.2).astype(float))
    Y = np.zeros((n, 2), bool)
    Y[:20, 1] = True
    res = score_test(E, Z, Y, np.ones((n, 2), bool))
    assert np.isnan(res.p[:, 0]).all() and not res.null_ok[0]
    assert np.isfinite(res.p[:, 1]).all() and res.null_ok[1]
