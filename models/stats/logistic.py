"""Batched logistic regression by Newton-Raphson, float64, many fits at once.

Every fit in a batch shares the covariate design Z (n x k, e.g. [1, age, sex]); fits differ
in their outcome column and prior weights (one null model per outcome) or in one extra
exposure column (one feature x outcome pair each). All per-row work is a dense
(n x batch) array operation or a BLAS product, so a batch costs a few passes over memory
per iteration instead of one Python-level model per fit.

Firth's penalised likelihood (option) adds h_i (1/2 - mu_i) to each residual, h the
diagonal of the weighted hat matrix; estimates stay finite under separation. Its CIs here
are Wald intervals from the Fisher information at the penalised estimate (logistf's
default profile-likelihood intervals are not computed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.special import expit
from scipy.stats import norm

MAX_STEP = 5.0  # cap on a Newton step: keeps early iterations from overshooting
BATCH = 32  # exposure fits per batch: (n x 32) float64 arrays stay small for n in the 100,000s
DEAD_OUTCOME = "outcome not estimable: no cases or no non-cases"


@dataclass(frozen=True)
class BatchFit:
    params: np.ndarray  # (batch, p): Z coefficients, then the exposure's (if any)
    cov: np.ndarray  # (batch, p, p): inverse information at the estimate
    converged: np.ndarray  # (batch,) bool
    mu: np.ndarray  # (n, batch) fitted probabilities


def _quad_index(k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(k)


def _assemble(Q_w: np.ndarray, k: int) -> np.ndarray:
    """(n_quad, B) upper-triangle sums -> (B, k, k) symmetric matrices."""
    iu = _quad_index(k)
    out = np.zeros((Q_w.shape[1], k, k))
    out[:, iu[0], iu[1]] = Q_w.T
    out[:, iu[1], iu[0]] = Q_w.T
    return out


def _information(Z: np.ndarray, Q: np.ndarray, X: np.ndarray | None, w: np.ndarray) -> np.ndarray:
    k = Z.shape[1]
    H = _assemble(Q.T @ w, k)
    if X is None:
        return H
    zx = Z.T @ (w * X)  # (k, B)
    full = np.zeros((w.shape[1], k + 1, k + 1))
    full[:, :k, :k] = H
    full[:, :k, k] = zx.T
    full[:, k, :k] = zx.T
    full[:, k, k] = np.einsum("ib,ib->b", w * X, X)
    return full


def _hat_diag(Z: np.ndarray, Q: np.ndarray, X: np.ndarray | None, w: np.ndarray, Hinv: np.ndarray) -> np.ndarray:
    """diag of W^1/2 D (D'WD)^-1 D' W^1/2 for every fit: d_i' Hinv d_i w_i."""
    k = Z.shape[1]
    iu = _quad_index(k)
    coef = Hinv[:, iu[0], iu[1]] * np.where(iu[0] == iu[1], 1.0, 2.0)  # (B, n_quad)
    quad = Q @ coef.T
    if X is not None:
        quad = quad + 2.0 * X * (Z @ Hinv[:, :k, k].T) + X * X * Hinv[:, k, k]
    return w * quad


def fit_batch(
    Z: np.ndarray,
    Y: np.ndarray,
    weights: np.ndarray | None = None,
    X: np.ndarray | None = None,
    start: np.ndarray | None = None,
    firth: bool = False,
    tol: float = 1e-10,
    max_iter: int = 50,
) -> BatchFit:
    """Fit logit(P(y=1)) = Z g (+ x b) for each batch column.

    Z (n, k) shared; Y (n, B) or (n, 1) outcomes in {0, 1}; weights (n, B) or (n, 1) prior
    weights (0 drops a row); X (n, B) the exposure of each fit, or None for covariates only.
    """
    Z = np.asarray(Z, np.float64)
    B = max(Y.shape[1], 1 if X is None else X.shape[1], 1 if weights is None else weights.shape[1])
    wt = np.ones((Z.shape[0], 1)) if weights is None else np.asarray(weights, np.float64)
    Q = Z[:, _quad_index(Z.shape[1])[0]] * Z[:, _quad_index(Z.shape[1])[1]]
    p = Z.shape[1] + (0 if X is None else 1)
    theta = np.zeros((B, p)) if start is None else np.array(start, np.float64, copy=True)
    converged = np.zeros(B, bool)
    active = np.arange(B)  # a fit stops iterating once it has converged: the others go on alone
    for _ in range(max_iter):
        Xa, wa, Ya = (None if X is None else X[:, active]), _columns(wt, active), _columns(Y, active)
        mu, Hinv = _state(Z, Q, Xa, wa, theta[active])
        r = (Ya - mu) * wa
        if firth:
            r = r + _hat_diag(Z, Q, Xa, mu * (1 - mu) * wa, Hinv) * (0.5 - mu)
        grad = _gradient(Z, Xa, r)
        step = np.einsum("bij,bj->bi", Hinv, grad)
        step = np.clip(step, -MAX_STEP, MAX_STEP)
        theta[active] += step
        done = np.max(np.abs(step), axis=1) < tol
        converged[active] = done
        active = active[~done]
        if not len(active):
            break
    mu, Hinv = _state(Z, Q, X, wt, theta)
    return BatchFit(theta, Hinv, converged & np.isfinite(theta).all(axis=1), mu)


def _columns(a: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Columns `cols` of an (n, B) array; an (n, 1) array is shared by every fit."""
    return a if a.shape[1] == 1 else a[:, cols]


def _state(
    Z: np.ndarray, Q: np.ndarray, X: np.ndarray | None, wt: np.ndarray, theta: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    k = Z.shape[1]
    eta = Z @ theta[:, :k].T
    if X is not None:
        eta += X * theta[:, k]
    mu = expit(eta)
    H = _information(Z, Q, X, mu * (1 - mu) * wt)
    return mu, np.linalg.pinv(H, hermitian=True)


def _gradient(Z: np.ndarray, X: np.ndarray | None, r: np.ndarray) -> np.ndarray:
    g = (Z.T @ r).T
    if X is None:
        return g
    return np.concatenate([g, np.einsum("ib,ib->b", X, r)[:, None]], axis=1)


def batches(order: np.ndarray) -> Iterator[np.ndarray]:
    """Consecutive slices of `order`, BATCH entries each (the last may be shorter)."""
    for lo in range(0, len(order), BATCH):
        yield order[lo:lo + BATCH]


def dead_outcome(cases: np.ndarray, n: np.ndarray) -> np.ndarray:
    """True where an outcome column has no cases or no non-cases among its rows: no fit
    can estimate anything (flag it with DEAD_OUTCOME)."""
    return (cases == 0) | (cases == n)


def wald_last(fit: BatchFit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, SE, two-sided Wald p) of the last coefficient (the exposure) of every
    fit in the batch, converged or not (mask with fit.converged)."""
    beta, se = fit.params[:, -1], np.sqrt(fit.cov[:, -1, -1])
    return beta, se, wald_p(beta, se)


def wald_p(beta: np.ndarray, se: np.ndarray) -> np.ndarray:
    """Two-sided Wald p of estimates with standard errors `se`."""
    return 2 * norm.sf(np.abs(beta / se))
