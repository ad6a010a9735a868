"""Batched logistic regression by Newton-Raphson, float64, many fits at once.

Every fit in a batch shares the covariate design Z (n x k, e.g. [1, age, sex]); fits differ
in their outcome column and prior weights (one null model per outcome) or in one extra
exposure column (one feature x outcome pair each). All per-row work is a dense
(n x batch) array operation or a BLAS product, so a batch costs a few passes over memory
per iteration instead of one Python-level model per fit.

Firth's penalised likelihood (option) adds h_i (1/2 - mu_i) to each residual, h the
diagonal of the weighted hat matrix (the gradient of l + 1/2 log det I); estimates stay
finite under separation. Its p and profile CI: models/stats/firth.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy.special import expit
from scipy.stats import norm

MAX_STEP = 5.0  # largest coordinate of a Newton step (logistf's maxstep): no overshoot from far starts
MAX_HALVINGS = 30  # step halvings per iteration while the objective decreases
SCORE_TOL = 1e-6  # largest |score| at convergence (sums over rows: absolute, not per row)
BATCH = 32  # exposure fits per batch: (n x 32) float64 arrays stay small for n in the 100,000s
DEAD_OUTCOME = "outcome not estimable: no cases or no non-cases"


@dataclass(frozen=True)
class BatchFit:
    params: np.ndarray  # (batch, p): Z coefficients, then the exposure's (if any)
    cov: np.ndarray  # (batch, p, p): inverse information at the estimate
    converged: np.ndarray  # (batch,) bool
    mu: np.ndarray  # (n, batch) fitted probabilities
    loglik: np.ndarray  # (batch,) log-likelihood at the estimate; penalised (+ 1/2 log det) for Firth


@cache
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
    max_iter: int = 100,
    fixed: np.ndarray | None = None,
) -> BatchFit:
    """Fit logit(P(y=1)) = Z g (+ x b) for each batch column.

    Z (n, k) shared; Y (n, B) or (n, 1) outcomes in {0, 1}; weights (n, B) or (n, 1) prior
    weights (0 drops a row); X (n, B) the exposure of each fit, or None for covariates only.
    `fixed` (B,): hold each fit's exposure coefficient at this value and fit the rest (the
    restricted fits of a likelihood-ratio test or a profile; the information, and with it
    Firth's penalty, stays that of the full design).

    Newton steps (Fisher scoring) whose largest coordinate is capped at MAX_STEP by scaling
    the whole step (its direction kept), then halved until the (penalised) log-likelihood
    does not decrease, up to MAX_HALVINGS times. Converged when both the next step and the
    (modified) score are below `tol` and SCORE_TOL in every free coordinate.
    """
    Z = np.asarray(Z, np.float64)
    B = max(Y.shape[1], 1 if X is None else X.shape[1], 1 if weights is None else weights.shape[1])
    wt = np.ones((Z.shape[0], 1)) if weights is None else np.asarray(weights, np.float64)
    wt, Yb = np.broadcast_to(wt, (Z.shape[0], B)), np.broadcast_to(np.asarray(Y, np.float64), (Z.shape[0], B))
    m = _Model(Z, Yb, wt, X, firth)
    p = Z.shape[1] + (0 if X is None else 1)
    theta = np.zeros((B, p)) if start is None else np.array(start, np.float64, copy=True)
    free = p
    if fixed is not None:
        theta[:, -1] = fixed
        free = Z.shape[1]
    st = m.state(theta, np.arange(B), firth)
    converged = np.zeros(B, bool)
    active = np.arange(B)
    for _ in range(max_iter):
        step = _newton_step(st, free)
        small = (np.abs(step).max(axis=1) < tol) & (np.abs(st.score[:, :free]).max(axis=1) < SCORE_TOL)
        converged[active[small]] = True
        keep = ~small & np.isfinite(step).all(axis=1)
        active, step, st = active[keep], step[keep], st.take(keep)
        if not len(active):
            break
        theta[active], st = _halved(m, theta[active], step, st, active)
    final = m.state(theta, np.arange(B), True)
    return BatchFit(theta, final.Hinv, converged & np.isfinite(theta).all(axis=1), final.mu, final.loglik)


@dataclass(frozen=True)
class _State:
    """Per-fit quantities at the current estimates (rows of the active fits)."""

    mu: np.ndarray  # (n, b)
    H: np.ndarray  # (b, p, p) information
    Hinv: np.ndarray
    score: np.ndarray  # (b, p) score, Firth-modified with the penalty
    loglik: np.ndarray  # (b,) log-likelihood, plus 1/2 log det H with the penalty

    def take(self, mask: np.ndarray) -> _State:
        return _State(self.mu[:, mask], self.H[mask], self.Hinv[mask], self.score[mask], self.loglik[mask])


class _Model:
    """The data of a batch; `state` evaluates any subset of its fits at given estimates."""

    def __init__(self, Z: np.ndarray, Y: np.ndarray, wt: np.ndarray, X: np.ndarray | None, firth: bool) -> None:
        self.Z, self.Y, self.wt, self.X, self.firth = Z, Y, wt, X, firth
        iu = _quad_index(Z.shape[1])
        self.Q = Z[:, iu[0]] * Z[:, iu[1]]

    def _cols(self, cols: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        if len(cols) == self.Y.shape[1]:  # every fit (cols is then arange): no copies
            return self.X, self.wt, self.Y
        return None if self.X is None else self.X[:, cols], self.wt[:, cols], self.Y[:, cols]

    def _eta(self, theta: np.ndarray, X: np.ndarray | None) -> np.ndarray:
        k = self.Z.shape[1]
        eta = self.Z @ theta[:, :k].T
        return eta if X is None else eta + X * theta[:, k]

    def state(self, theta: np.ndarray, cols: np.ndarray, with_loglik: bool) -> _State:
        """The fits `cols` at `theta`; the log-likelihood (NaN unless `with_loglik` or Firth,
        whose steps always need it) costs a log per row and fit."""
        X, wt, y = self._cols(cols)
        mu = expit(self._eta(theta, X))
        w = mu * (1 - mu) * wt
        H = _information(self.Z, self.Q, X, w)
        Hinv = np.linalg.pinv(H, hermitian=True)
        r = (y - mu) * wt
        ll = _loglik(mu, y, wt) if (with_loglik or self.firth) else np.full(len(cols), np.nan)
        if self.firth:
            r = r + _hat_diag(self.Z, self.Q, X, w, Hinv) * (0.5 - mu)
            ll = ll + 0.5 * np.linalg.slogdet(H)[1]
        return _State(mu, H, Hinv, _gradient(self.Z, X, r), ll)

    def loglik(self, theta: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Log-likelihood of the fits `cols` at `theta` (not penalised: ML fits only)."""
        X, wt, y = self._cols(cols)
        return _loglik(expit(self._eta(theta, X)), y, wt)


def _loglik(mu: np.ndarray, y: np.ndarray, wt: np.ndarray) -> np.ndarray:
    """sum w (y log mu + (1 - y) log(1 - mu)) per fit: -inf where a non-case has mu rounded
    to 1 (a point that bad is rejected by the step halving anyway)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray((wt * np.log(np.where(y > 0, mu, 1.0 - mu))).sum(axis=0))


def _newton_step(st: _State, free: int) -> np.ndarray:
    """Fisher-scoring step in the free coordinates (the rest 0), longest coordinate capped."""
    if free == st.H.shape[1]:
        step = np.einsum("bij,bj->bi", st.Hinv, st.score)
    else:
        sub = np.linalg.pinv(st.H[:, :free, :free], hermitian=True)
        step = np.zeros_like(st.score)
        step[:, :free] = np.einsum("bij,bj->bi", sub, st.score[:, :free])
    with np.errstate(invalid="ignore", divide="ignore"):
        big = np.abs(step).max(axis=1)
        scale = np.where(big > MAX_STEP, MAX_STEP / big, 1.0)
    return step * scale[:, None]


def _halved(m: _Model, theta: np.ndarray, step: np.ndarray, st: _State, cols: np.ndarray) -> tuple[np.ndarray, _State]:
    """theta + step, each fit's step halved until its objective does not decrease
    (after MAX_HALVINGS halvings the last one is taken, as logistf does). ML's
    log-likelihood is concave: where it still rises at the end of the step (score . step
    >= 0) it rose, and no log-likelihood needs computing; Firth's penalised one is checked
    every step."""
    out = theta + step
    new = m.state(out, cols, False)
    base = st.loglik.copy()
    if m.firth:
        worse = ~(new.loglik >= base - _slack(base))
    else:
        worse = np.einsum("bi,bi->b", new.score, step) < 0
        idx = np.flatnonzero(worse)
        if len(idx):
            miss = idx[np.isnan(base[idx])]
            base[miss] = m.loglik(theta[miss], cols[miss])
            new.loglik[idx] = m.loglik(out[idx], cols[idx])
            worse[idx] = ~(new.loglik[idx] >= base[idx] - _slack(base[idx]))
    for _ in range(MAX_HALVINGS):
        if not worse.any():
            break
        idx = np.flatnonzero(worse)
        step[idx] *= 0.5
        out[idx] = theta[idx] + step[idx]
        sub = m.state(out[idx], cols[idx], True)
        for name in ("H", "Hinv", "score", "loglik"):
            getattr(new, name)[idx] = getattr(sub, name)
        new.mu[:, idx] = sub.mu
        worse[idx] = ~(sub.loglik >= base[idx] - _slack(base[idx]))
    return out, new


def _slack(ll: np.ndarray) -> np.ndarray:
    """Rounding of a sum over the rows: a change this small is no decrease."""
    return 1e-10 * (1.0 + np.abs(ll))


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
