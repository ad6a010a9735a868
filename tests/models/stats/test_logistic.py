from __future__ import annotations

import numpy as np
import statsmodels.api as smapi

from models.stats.logistic import fit_batch


def _data(seed: int, n: int = 600, pairs: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    age = rng.normal(0, 1, n)
    sex = (rng.uniform(size=n) < 0.5).astype(float)
    Z = np.column_stack([np.ones(n), age, sex])
    X = (rng.uniform(size=(n, pairs)) < rng.uniform(0.05, 0.4, pairs)).astype(float)
    X[:, -1] = rng.normal(size=n)  # a continuous exposure (activation per SD)
    eta = -1.5 + 0.6 * age - 0.4 * sex + 0.8 * X[:, 0]
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(float)
    return Z, X, y


def test_batch_matches_statsmodels_logit() -> None:
    Z, X, y = _data(0)
    fit = fit_batch(Z, y[:, None], X=X)
    assert fit.converged.all()
    for j in range(X.shape[1]):
        ref = smapi.Logit(y, np.column_stack([Z, X[:, j]])).fit(method="newton", tol=1e-14, disp=0)
        np.testing.assert_allclose(fit.params[j], ref.params, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(np.sqrt(np.diag(fit.cov[j])), ref.bse, rtol=1e-8)


def test_prior_weights_drop_rows_and_null_models() -> None:
    Z, _, y = _data(1)
    keep = np.random.default_rng(2).uniform(size=len(y)) < 0.7
    fit = fit_batch(Z, np.column_stack([y, 1 - y]), weights=np.column_stack([keep, keep]).astype(float))
    ref = smapi.Logit(y[keep], Z[keep]).fit(method="newton", tol=1e-14, disp=0)
    np.testing.assert_allclose(fit.params[0], ref.params, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fit.params[1], -ref.params, rtol=1e-8, atol=1e-10)


def _firth_reference(D: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Plain Firth iteration with the full hat matrix (Heinze & Schemper 2002)."""
    beta = np.zeros(D.shape[1])
    for _ in range(200):
        mu = 1 / (1 + np.exp(-D @ beta))
        W = np.diag(mu * (1 - mu))
        info_inv = np.linalg.inv(D.T @ W @ D)
        Wh = np.sqrt(W)
        h = np.diag(Wh @ D @ info_inv @ D.T @ Wh)
        step = info_inv @ (D.T @ (y - mu + h * (0.5 - mu)))
        beta += step
        if np.abs(step).max() < 1e-12:
            break
    return beta


def test_firth_matches_reference_and_survives_separation() -> None:
    Z, X, y = _data(3, n=150, pairs=2)
    X[:, 1] = 0.0
    X[:40, 1] = 1.0
    y[:40] = 1.0  # exposure perfectly predicts the outcome: ML diverges, Firth does not
    fit = fit_batch(Z, y[:, None], X=X, firth=True)
    assert fit.converged.all()
    for j in range(2):
        ref = _firth_reference(np.column_stack([Z, X[:, j]]), y)
        np.testing.assert_allclose(fit.params[j], ref, rtol=1e-7, atol=1e-9)
    ml = fit_batch(Z, y[:, None], X=X[:, 1:], max_iter=25)
    assert not ml.converged[0] or abs(ml.params[0, -1]) > 8


def test_fits_stop_one_by_one_with_the_same_estimates() -> None:
    """A batch where one fit cannot converge (its exposure separates the outcome): the
    others leave the batch once converged, with the same estimates as each fit alone
    (statsmodels' ML fit as the independent reference)."""
    import statsmodels.api as sm

    from models.stats.logistic import fit_batch

    rng = np.random.default_rng(9)
    n, B = 3000, 6
    Z = np.column_stack([np.ones(n), rng.normal(size=n), (rng.uniform(size=n) < 0.5).astype(float)])
    X = (rng.uniform(size=(n, B)) < 0.1).astype(float)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(2.0 - 0.8 * X[:, 0]))).astype(float)
    Y = np.tile(y[:, None], (1, B))
    Y[:, -1] = X[:, -1]  # the last exposure is the outcome itself: no ML estimate
    W = np.ones((n, B))
    start = np.column_stack([np.zeros((B, 3)), np.linspace(0, 3, B)])
    fit = fit_batch(Z, Y, weights=W, X=X, start=start)
    assert fit.converged.tolist() == [True] * (B - 1) + [False]
    for b in range(B - 1):
        alone = fit_batch(Z, Y[:, [b]], weights=W[:, [b]], X=X[:, [b]], start=start[[b]])
        np.testing.assert_allclose(fit.params[b], alone.params[0], rtol=0, atol=1e-12)
        ref = sm.Logit(y, np.column_stack([Z, X[:, b]])).fit(disp=0, tol=1e-12, maxiter=100).params
        np.testing.assert_allclose(fit.params[b], ref, rtol=1e-7, atol=1e-9)
