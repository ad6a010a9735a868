"""Firth's penalised logistic regression for a batch of exposure fits, reported as logistf
reports it: the estimate and its SE from the penalised fit, p from the penalised
likelihood-ratio test and the 95% CI from the profile penalised likelihood.

With l*(g, b) = l(g, b) + 1/2 log det I(g, b), I the information of the full design
[Z, x] (models/stats/logistic.py, firth=True):
- estimate: the maximum of l*, from the outcome's null model with b = 0, retried from
  zero for fits that do not converge (never from the score test's one-step estimate,
  which for a strong rare exposure lies far out, e.g. 27 where the estimate is 5);
- p: 2 (l*(estimate) - max_g l*(g, 0)) ~ chi2(1); the restricted fit keeps the penalty of
  the full design, as logistf does;
- CI: the b on either side where 2 (l*(estimate) - max_g l*(g, b)) = chi2(1) 95% quantile,
  found for every fit at once by bracketing outward, then regula falsi (Illinois) on the
  signed root of the deviance (nearly linear in b).
A restricted fit that does not converge leaves its p or bound NaN with a flag.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

from models.stats.logistic import BatchFit, fit_batch

Q95 = float(chi2.ppf(0.95, 1))
R95 = float(np.sqrt(Q95))
BRACKET_DOUBLINGS = 10  # bracket widths tried: 2 SE, 4 SE, ... 2^10 SE
ROOT_TOL = 1e-9  # width of the final bracket of a profile bound (log-OR units)
NO_PROFILE_BOUND = "Firth profile CI: bound not reached (open interval)"
RESTRICTED_FAILED = "Firth restricted fit did not converge: p / CI missing"


@dataclass(frozen=True)
class FirthResult:
    beta: np.ndarray  # (B,) exposure coefficient
    se: np.ndarray  # sqrt of the inverse information at the estimate (logistf's vcov)
    p: np.ndarray  # penalised likelihood-ratio p
    ci_low: np.ndarray  # profile penalised likelihood 95% bounds (log-OR)
    ci_high: np.ndarray
    converged: np.ndarray  # (B,) bool: the fit itself
    flags: list[str | None]


def firth_fit(Z: np.ndarray, y: np.ndarray, W: np.ndarray, X: np.ndarray, null: np.ndarray | None) -> BatchFit:
    """Penalised fits of y ~ Z + x per column (y, W, X: (n, B)); `null` (B, k) the outcome's
    null coefficients as the start (exposure 0); fits left unconverged are retried from zero."""
    B, k = X.shape[1], Z.shape[1]
    start = np.zeros((B, k + 1))
    if null is not None:
        start[:, :k] = np.nan_to_num(null)
    fit = fit_batch(Z, y, weights=W, X=X, firth=True, start=start)
    bad = np.flatnonzero(~fit.converged)
    if null is not None and len(bad):
        again = fit_batch(Z, y[:, bad], weights=W[:, bad], X=X[:, bad], firth=True)
        take = bad[again.converged]
        sel = again.converged
        params, cov, conv = fit.params.copy(), fit.cov.copy(), fit.converged.copy()
        mu, ll = fit.mu.copy(), fit.loglik.copy()
        params[take], cov[take], conv[take] = again.params[sel], again.cov[sel], True
        mu[:, take], ll[take] = again.mu[:, sel], again.loglik[sel]
        fit = BatchFit(params, cov, conv, mu, ll)
    return fit


def firth_pairs(Z: np.ndarray, y: np.ndarray, W: np.ndarray, X: np.ndarray, null: np.ndarray | None) -> FirthResult:
    """Estimate, SE, penalised-LR p and profile CI of the exposure of every column."""
    fit = firth_fit(Z, y, W, X, null)
    k = Z.shape[1]
    beta, se = fit.params[:, k], np.sqrt(np.abs(fit.cov[:, k, k]))
    ok = fit.converged.copy()
    profile = _Profile(Z, y, W, X, fit)
    lr, lr_ok = profile.deviance(np.zeros(len(beta)), np.arange(len(beta)))
    p = np.where(ok & lr_ok, chi2.sf(np.maximum(lr, 0.0), 1), np.nan)
    lo, lo_ok = profile.bound(-1.0, se, ok)
    hi, hi_ok = profile.bound(1.0, se, ok)
    flags: list[str | None] = []
    for j in range(len(beta)):
        f = [RESTRICTED_FAILED] if ok[j] and not (lr_ok[j] and lo_ok[j] and hi_ok[j]) else []
        f += [NO_PROFILE_BOUND] if ok[j] and not (np.isfinite(lo[j]) and np.isfinite(hi[j])) else []
        flags.append("; ".join(f) or None)
    nan = np.full(len(beta), np.nan)
    return FirthResult(np.where(ok, beta, nan), np.where(ok, se, nan), p, np.where(ok & lo_ok, lo, nan),
                       np.where(ok & hi_ok, hi, nan), ok, flags)


class _Profile:
    """Restricted fits (exposure held at b) of a batch, warm-started from the last fit."""

    def __init__(self, Z: np.ndarray, y: np.ndarray, W: np.ndarray, X: np.ndarray, fit: BatchFit) -> None:
        self.Z, self.y, self.W, self.X, self.fit = Z, y, W, X, fit
        self.gamma = np.nan_to_num(fit.params[:, : Z.shape[1]]).copy()
        self.beta = fit.params[:, Z.shape[1]]

    def deviance(self, b: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """2 (l*(estimate) - max_g l*(g, b)) for columns `cols` at exposure values b."""
        if not len(cols):
            return np.zeros(0), np.zeros(0, bool)
        start = np.column_stack([self.gamma[cols], b])
        # tol 1e-8 in the other coefficients: the deviance is flat there, its error ~ info x 1e-16
        r = fit_batch(self.Z, self.y[:, cols], weights=self.W[:, cols], X=self.X[:, cols], firth=True,
                      start=start, fixed=b, tol=1e-8)
        self.gamma[cols[r.converged]] = r.params[r.converged, : self.Z.shape[1]]
        return 2.0 * (self.fit.loglik[cols] - r.loglik), r.converged

    def bound(self, side: float, se: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Profile bound on `side` (-1 lower, +1 upper) of every column where ok; inf where
        the deviance stays below Q95 out to 2^BRACKET_DOUBLINGS SE."""
        cols = np.flatnonzero(ok & np.isfinite(self.beta))
        self.gamma[cols] = self.fit.params[cols, : self.Z.shape[1]]
        width = 2.0 * np.maximum(np.nan_to_num(se[cols], nan=1.0), 0.05)
        return _bracket_and_solve(lambda b, c: self._g(b, cols[c]), self.beta[cols], side * width,
                                  len(self.beta), cols)

    def _g(self, b: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """sqrt(deviance) - sqrt(Q95): the signed root deviance is nearly linear in b, so
        regula falsi needs few restricted fits."""
        d, conv = self.deviance(b, cols)
        return np.sqrt(np.maximum(d, 0.0)) - R95, conv


def _bracket_and_solve(g: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]], b0: np.ndarray,
                       step: np.ndarray, n_all: int, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Root of g (-R95 at b0, increasing outward) along b0 + t * step, t > 0, for every
    entry at once. Returns (roots over all n_all columns, ok) with inf where none was found."""
    m = len(b0)
    root, ok = np.full(n_all, np.nan), np.zeros(n_all, bool)
    lo, g_lo = b0.copy(), np.full(m, -R95)
    hi, g_hi = b0 + step, np.full(m, np.nan)
    todo, alive = np.arange(m), np.ones(m, bool)
    for _ in range(BRACKET_DOUBLINGS):  # grow the bracket until g changes sign
        if not len(todo):
            break
        val, conv = g(hi[todo], todo)
        alive[todo[~conv]] = False
        g_hi[todo] = val
        up = conv & (val < 0)
        lo[todo[up]], g_lo[todo[up]] = hi[todo[up]], val[up]
        hi[todo[up]] = b0[todo[up]] + 2 * (hi[todo[up]] - b0[todo[up]])
        todo = todo[up]
    open_ = np.zeros(m, bool)
    open_[todo] = True
    bracketed = alive & ~open_
    r, r_ok = _illinois(g, lo, g_lo, hi, g_hi, np.flatnonzero(bracketed))
    root[cols] = np.where(open_ & alive, np.sign(step) * np.inf, r)
    ok[cols] = alive & (open_ | r_ok)
    return root, ok


def _illinois(g: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]], a: np.ndarray,
              ga: np.ndarray, b: np.ndarray, gb: np.ndarray, todo: np.ndarray, max_iter: int = 100
              ) -> tuple[np.ndarray, np.ndarray]:
    """Regula falsi with the Illinois modification on brackets [a, b] (g(a) < 0 < g(b))."""
    a, ga, b, gb = a.copy(), ga.copy(), b.copy(), gb.copy()
    out, ok = np.full(len(a), np.nan), np.zeros(len(a), bool)
    side = np.zeros(len(a), int)
    for _ in range(max_iter):
        if not len(todo):
            break
        c = (a[todo] * gb[todo] - b[todo] * ga[todo]) / (gb[todo] - ga[todo])
        gc, conv = g(c, todo)
        neg = gc < 0
        t_neg, t_pos = todo[neg], todo[~neg]
        # Illinois: the end kept twice in a row has its g halved, so the bracket shrinks on both sides
        gb[t_neg[side[t_neg] == -1]] *= 0.5
        ga[t_pos[side[t_pos] == 1]] *= 0.5
        a[t_neg], ga[t_neg], side[t_neg] = c[neg], gc[neg], -1
        b[t_pos], gb[t_pos], side[t_pos] = c[~neg], gc[~neg], 1
        done = (np.abs(b[todo] - a[todo]) < ROOT_TOL) | (np.abs(gc) < 1e-12) | ~conv
        out[todo[done]] = c[done]
        ok[todo[done]] = conv[done]
        todo = todo[~done]
    return out, ok
