"""Exact adjusted logistic fits whose cost per pair scales with the exposed studies only.

For one outcome, every pair's model logit P(y) = z'g + b x shares the outcome's null fit
g0 (from the screen). Write g = g0 + d. The score and information split into a sum over
all eligible rows at x = 0, a function of d alone, and a correction over the few exposed
rows, computed directly. The all-rows part is a Taylor series in d around the null fit:
with one continuous covariate a (age) and the others taking few values (sex, intercept),
z'd = s_g + d_a a within each group g of rows, so every term reduces to the moments
P[g, m, j] = sum_i w_i mu^(m)(eta0_i) a_i^j, computed once per outcome (a few passes over
the rows). Newton's method then runs on small arrays.

Exactness: the series is cut at order M. Cauchy's estimate on the strip |Im| <= pi/2
(where |mu| <= 1) bounds |mu^(m)| / m! <= (2/pi)^m, so the score's truncation error is at
most n z_max q^(M+1) / (1 - q), q = (2/pi) max_i |z_i'd|. A pair whose bound, mapped
through the inverse information, exceeds `tol` is refitted directly (models/stats/logistic.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb, factorial

import numpy as np
from numpy.polynomial import polynomial as P
from scipy.special import expit

from models.stats.logistic import MAX_STEP

ORDER = 8  # Taylor order M
MAX_GROUPS = 16


@dataclass(frozen=True)
class Moments:
    """One outcome's all-rows quantities at its null fit."""

    cont: int  # index of the continuous column in Z
    base: np.ndarray  # (G, k) the group's z with 0 in the continuous column
    P: np.ndarray  # (G, M + 2, M + 3): sum w mu^(m)(eta0) a^j
    G0: np.ndarray  # (k,) exact null score sum w z (y - mu0)
    n_w: float
    z_max: float


def _derivative_polys(M: int) -> np.ndarray:
    """Coefficients (in mu) of d^m mu / d eta^m, m = 0..M+1: mu' = mu - mu^2."""
    polys, p = [], np.array([0.0, 1.0])
    for _ in range(M + 2):
        polys.append(p)
        p = P.polymul(P.polyder(p), [0.0, 1.0, -1.0])
    out = np.zeros((M + 2, M + 3))
    for m, c in enumerate(polys):
        out[m, : len(c)] = c
    return out


@dataclass(frozen=True)
class Prepared:
    """Z split into groups once per design: rows sorted by group, powers of the
    continuous column, the derivative polynomials."""

    cont: int
    base: np.ndarray  # (G, k)
    order: np.ndarray  # row permutation sorting rows by group
    bounds: np.ndarray  # (G + 1,) group boundaries in sorted order
    Zs: np.ndarray  # Z[order]
    A: np.ndarray  # (M+3, n) powers of the continuous column, sorted
    polys: np.ndarray
    z_max: float  # max |z| over all rows: bounds every outcome's eligible rows


def prepare(Z: np.ndarray) -> Prepared | None:
    """None when Z does not have exactly one many-valued column and few value combinations
    in the others (then the direct fit is used)."""
    many = [j for j in range(Z.shape[1]) if len(np.unique(Z[:, j])) > MAX_GROUPS]
    if len(many) != 1:
        return None
    rest = np.delete(Z, many[0], axis=1)
    base_rest, idx = np.unique(rest, axis=0, return_inverse=True)
    if len(base_rest) > MAX_GROUPS:
        return None
    idx = idx.ravel()
    order = np.argsort(idx, kind="stable")
    bounds = np.searchsorted(idx[order], np.arange(len(base_rest) + 1))
    Zs = Z[order]
    A = np.empty((ORDER + 3, len(Z)))  # row-major powers: contiguous passes
    A[0] = 1.0
    for j in range(1, ORDER + 3):
        np.multiply(A[j - 1], Zs[:, many[0]], out=A[j])
    return Prepared(many[0], np.insert(base_rest, many[0], 0.0, axis=1), order, bounds, Zs, A,
                    _derivative_polys(ORDER), float(np.abs(Z).max()))


def moments(prep: Prepared, ys: np.ndarray, ws: np.ndarray, g0: np.ndarray) -> Moments:
    """One outcome's moments at its null fit; ys, ws already in `prep.order`. A few
    passes over the rows (the weight rides in the zeroth power, so it costs none)."""
    mu0 = expit(prep.Zs @ g0)
    mu_pow = np.empty((ORDER + 3, len(mu0)))
    mu_pow[0] = ws
    for j in range(1, ORDER + 3):
        np.multiply(mu_pow[j - 1], mu0, out=mu_pow[j])
    b = prep.bounds
    Pm = np.stack([prep.polys @ (mu_pow[:, b[g]:b[g + 1]] @ prep.A[:, b[g]:b[g + 1]].T)
                   for g in range(len(prep.base))])
    G0 = prep.Zs.T @ (ws * (ys - mu0))
    return Moments(prep.cont, prep.base, Pm, G0, float(ws.sum()), prep.z_max)


def _taylor_terms(mo: Moments, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All-rows score shift sum w z (mu(eta0 + z'd) - mu0) and information
    sum w mu'(eta0 + z'd) z z' for each pair's d (B, k)."""
    M, c = ORDER, mo.cont
    s = d @ mo.base.T  # (B, G)
    dc = d[:, c][:, None]
    m = np.arange(M + 1)
    coef = np.array([[comb(mm, ll) / factorial(mm) if ll <= mm else 0.0 for ll in m] for mm in m])
    pw = m[:, None] - m[None, :]  # m - l
    T = coef * np.where(pw >= 0, s[..., None, None] ** np.maximum(pw, 0), 0.0) * dc[..., None, None] ** m
    T1 = T.copy()
    T1[:, :, 0, :] = 0.0  # the score shift starts at order 1
    Pm = mo.P
    S1 = [np.einsum("bgml,gml->bg", T1, Pm[:, : M + 1, j: j + M + 1]) for j in (0, 1)]
    S2 = [np.einsum("bgml,gml->bg", T, Pm[:, 1: M + 2, j: j + M + 1]) for j in (0, 1, 2)]
    e = np.zeros(len(mo.G0))
    e[c] = 1.0
    shift = S1[0] @ mo.base + S1[1].sum(axis=1)[:, None] * e
    bb = np.einsum("ga,gb->gab", mo.base, mo.base)
    be = np.einsum("ga,b->gab", mo.base, e)
    info = (np.einsum("bg,gxy->bxy", S2[0], bb) + np.einsum("bg,gxy->bxy", S2[1], be + be.transpose(0, 2, 1))
            + S2[2].sum(axis=1)[:, None, None] * np.outer(e, e))
    return shift, info


def truncation_bound(mo: Moments, d: np.ndarray) -> np.ndarray:
    """Upper bound of the all-rows score error per pair (inf when the series may diverge)."""
    reach = np.abs(d @ mo.base.T).max(axis=1) + np.abs(d[:, mo.cont]) * mo.z_max
    q = 2.0 / np.pi * reach
    with np.errstate(divide="ignore", over="ignore"):
        return np.where(q < 1, mo.n_w * mo.z_max * q ** (ORDER + 1) / (1 - q), np.inf)


def fit_exposed(mo: Moments, Zx: list[np.ndarray], yx: list[np.ndarray], eta0x: list[np.ndarray],
                start_b: np.ndarray, tol: float = 1e-10, max_iter: int = 50) -> tuple[np.ndarray, ...]:
    """Newton on (d, b) for a batch of pairs of one outcome. Zx/yx/eta0x: each pair's
    exposed eligible rows. Returns (params (B, k+1), cov (B, k+1, k+1), converged, bound)."""
    B, k = len(Zx), len(mo.G0)
    width = max((len(z) for z in Zx), default=0)
    Zp, Yp, Ep, Wp = np.zeros((B, width, k)), np.zeros((B, width)), np.zeros((B, width)), np.zeros((B, width))
    for b, (z, yy, e0) in enumerate(zip(Zx, yx, eta0x, strict=True)):
        Zp[b, : len(z)], Yp[b, : len(z)], Ep[b, : len(z)], Wp[b, : len(z)] = z, yy, e0, 1.0
    theta = np.zeros((B, k + 1))
    theta[:, k] = np.nan_to_num(start_b)
    converged = np.zeros(B, bool)
    for _ in range(max_iter):
        grad, info = _score_info(mo, theta, Zp, Yp, Ep, Wp)
        step = _solve(info, grad[..., None])[..., 0]
        big = np.abs(step).max(axis=1, keepdims=True)
        theta += step * np.minimum(1.0, MAX_STEP / np.maximum(big, 1e-300))  # direction kept, as logistic.py
        converged = np.abs(step).max(axis=1) < tol  # False where the step is NaN
        if converged.all():
            break
    _, info = _score_info(mo, theta, Zp, Yp, Ep, Wp)
    eye = np.broadcast_to(np.eye(k + 1), info.shape)
    return theta, _solve(info, eye), converged, truncation_bound(mo, theta[:, :k])


def _solve(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched solve in which a singular matrix gives NaN for its own pair instead of
    failing the batch: a start far out (fitted probabilities 0 or 1) makes the
    information singular, and such a pair, never converged, goes to the direct fit."""
    try:
        return np.linalg.solve(A, b)
    except np.linalg.LinAlgError:
        out = np.full(np.broadcast_shapes(A.shape[:-2], b.shape[:-2]) + A.shape[-1:] + b.shape[-1:], np.nan)
        for i in range(len(out)):
            try:
                out[i] = np.linalg.solve(A[i], b[i])
            except np.linalg.LinAlgError:
                continue
        return out


def _score_info(mo: Moments, theta: np.ndarray, Zp: np.ndarray, Yp: np.ndarray, Ep: np.ndarray,
                Wp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = Zp.shape[2]
    d, b = theta[:, :k], theta[:, k]
    eta = Ep + np.einsum("bik,bk->bi", Zp, d)
    mua, mub = expit(eta), expit(eta + b[:, None])
    shift, info_zz = _taylor_terms(mo, d)
    g_z = mo.G0 - shift + np.einsum("bik,bi->bk", Zp, Wp * (mua - mub))
    g_b = (Wp * (Yp - mub)).sum(axis=1)
    wa, wb = Wp * mua * (1 - mua), Wp * mub * (1 - mub)
    info = np.zeros((len(theta), k + 1, k + 1))
    info[:, :k, :k] = info_zz + np.einsum("bik,bil,bi->bkl", Zp, Zp, wb - wa)
    zb = np.einsum("bik,bi->bk", Zp, wb)
    info[:, :k, k], info[:, k, :k], info[:, k, k] = zb, zb, wb.sum(axis=1)
    return np.concatenate([g_z, g_b[:, None]], axis=1), info
