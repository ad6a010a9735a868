"""Compiled CPU kernels of one SAE training step (numba), on numpy views of the weights.

In plain torch a CPU step is a chain of memory-bound passes over (B, k, d) contribution
tensors and (N, d) gradients -- gather, multiply, project, index_add, zero, norm, Adam,
renorm -- each reading and writing megabytes. These kernels do the same arithmetic in a few
passes: one per batch row for the forward decode and every sparse gradient (main loss,
Matryoshka prefixes, AuxK), one norm pass, and one Adam pass that also zeroes the gradient
and renormalises decoder rows while each row is in cache. The dense selection matmul stays
with BLAS.

All kernels are single-threaded (they run in the caller's thread, release the GIL, and are
deterministic); `fastmath` allows only reassociation and FMA contraction, so reductions
vectorise but NaN/inf semantics are kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from numba import njit

_FM = {"reassoc", "contract"}
_F = TypeVar("_F", bound=Callable[..., Any])


def kernel(fn: _F) -> _F:
    # error_model numpy: no ZeroDivisionError checks, which keep loops with a division scalar
    return cast(_F, njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy")(fn))


def inlined(fn: _F) -> _F:
    """Inlined into its callers at numba's IR level: a call that passes arrays costs
    reference counting (measured 3x slower in the top-k heap)."""
    return cast(_F, njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy", inline="always")(fn))



@kernel
def _residuals(xn: np.ndarray, b_dec: np.ndarray, w_dec: np.ndarray, cols: np.ndarray,
               vals: np.ndarray, bounds: np.ndarray, level: np.ndarray, gvec: np.ndarray,
               xc: np.ndarray, err: np.ndarray, gb_dec: np.ndarray) -> float:
    """Forward decode of every row and prefix, and the gradient each latent's output gets.

    level[b, j]: the first prefix holding cols[b, j]. gvec[b * P + l] = d loss / d output of
    a latent first in prefix l (the scaled sum of the residuals of prefixes l..P-1); xc[b] =
    x - b_dec; err[b] = x - x_hat for the AuxK rows; gb_dec gets the decoder-bias gradient.
    Returns the mean squared residual over rows and prefixes."""
    b_rows, d = xn.shape
    n_lev = bounds.shape[0]
    scale = np.float32(2.0 / (n_lev * b_rows))
    sq = 0.0
    for b in range(b_rows):
        base = b * n_lev
        gvec[base:base + n_lev] = 0.0
        for j in range(cols.shape[1]):
            lv = 0
            while cols[b, j] >= bounds[lv]:
                lv += 1
            level[b, j] = lv
            v, c = vals[b, j], cols[b, j]
            if v > 0:
                for t in range(d):
                    gvec[base + lv, t] += v * w_dec[c, t]
        for t in range(d):
            xc[b, t] = xn[b, t] - b_dec[t]
            gvec[base, t] -= xc[b, t]
        for p in range(1, n_lev):  # residual of prefix p: cumulative over levels
            for t in range(d):
                gvec[base + p, t] += gvec[base + p - 1, t]
        for p in range(n_lev):
            for t in range(d):
                sq += gvec[base + p, t] * gvec[base + p, t]
        if b < err.shape[0]:
            for t in range(d):
                err[b, t] = -gvec[base + n_lev - 1, t]
        for p in range(n_lev - 2, -1, -1):  # a latent first in prefix l feeds prefixes >= l
            for t in range(d):
                gvec[base + p, t] += gvec[base + p + 1, t]
        for p in range(n_lev):
            for t in range(d):
                gvec[base + p, t] *= scale
        for t in range(d):
            gb_dec[t] += gvec[base, t]
    return sq / (n_lev * b_rows)


@kernel
def _aux_residuals(w_dec: np.ndarray, aux_cols: np.ndarray, aux_vals: np.ndarray, alpha: float,
                   err: np.ndarray, gvec: np.ndarray) -> float:
    """AuxK: gvec[b] = d loss / d e_hat[b] for e_hat[b] = sum of the row's dead latents'
    outputs; returns alpha |e_hat - err|^2 / sum |err - mean err|^2."""
    r, d = err.shape
    mean = np.zeros(d, np.float64)
    for b in range(r):
        for t in range(d):
            mean[t] += err[b, t]
    denom = 0.0
    for b in range(r):
        for t in range(d):
            dev = err[b, t] - mean[t] / r
            denom += dev * dev
    denom = max(denom, 1e-12)
    coef = np.float32(2.0 * alpha / denom)
    sq = 0.0
    for b in range(r):
        gvec[b] = 0.0
        for j in range(aux_cols.shape[1]):
            v, c = aux_vals[b, j], aux_cols[b, j]
            if v > 0:
                for t in range(d):
                    gvec[b, t] += v * w_dec[c, t]
        for t in range(d):
            diff = gvec[b, t] - err[b, t]
            sq += diff * diff
            gvec[b, t] = coef * diff
    return alpha * sq / denom


@kernel
def _bucket(n: int, cols: np.ndarray, vals: np.ndarray, level: np.ndarray, n_lev: int,
            aux_cols: np.ndarray, aux_vals: np.ndarray, vec0: int) -> tuple[np.ndarray, ...]:
    """Firing (row, latent) pairs grouped by latent (counting sort): start[c]..start[c+1]
    index the pairs of latent c; each pair has its gradient-vector row, x row and value."""
    start = np.zeros(n + 1, np.int64)
    for src_cols, src_vals in ((cols, vals), (aux_cols, aux_vals)):
        for b in range(src_cols.shape[0]):
            for j in range(src_cols.shape[1]):
                if src_vals[b, j] > 0:
                    start[src_cols[b, j] + 1] += 1
    for c in range(n):
        start[c + 1] += start[c]
    m = start[n]
    vec, xrow, val = np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m, np.float32)
    fill = start[:-1].copy()
    for b in range(cols.shape[0]):
        for j in range(cols.shape[1]):
            if vals[b, j] > 0:
                i = fill[cols[b, j]]
                vec[i], xrow[i], val[i] = b * n_lev + level[b, j], b, vals[b, j]
                fill[cols[b, j]] += 1
    for b in range(aux_cols.shape[0]):
        for j in range(aux_cols.shape[1]):
            if aux_vals[b, j] > 0:
                i = fill[aux_cols[b, j]]
                vec[i], xrow[i], val[i] = vec0 + b, b, aux_vals[b, j]
                fill[aux_cols[b, j]] += 1
    return start, vec, xrow, val


@kernel
def _latent_pass(start: np.ndarray, vec: np.ndarray, xrow: np.ndarray, val: np.ndarray,
                 gvec: np.ndarray, xc: np.ndarray, w_enc: np.ndarray, w_dec: np.ndarray,
                 gw_enc: np.ndarray, gw_dec: np.ndarray, gb_enc: np.ndarray, gb_dec: np.ndarray) -> float:
    """Every latent's gradient rows, written whole (latents with no pair get zeros, so no
    separate zeroing pass): for a pair with output gradient g and value v, g_v = <g, W_dec[c]>
    flows through ReLU into the encoder (g_v xc, g_v, -g_v W_enc[c]) and the decoder row
    gets v g minus its component along the unit row. Returns the squared norm of all
    gradients written here (for clipping)."""
    n, d = w_dec.shape
    gd = np.empty(d, np.float32)
    ge = np.empty(d, np.float32)
    ss = 0.0
    for c in range(n):
        if start[c] == start[c + 1]:
            gw_dec[c] = 0.0
            gw_enc[c] = 0.0
            gb_enc[c] = 0.0
            continue
        gd[:] = 0.0
        ge[:] = 0.0
        gsum, par = np.float32(0.0), np.float32(0.0)
        for i in range(start[c], start[c + 1]):
            q, xr, v = vec[i], xrow[i], val[i]
            gv = np.float32(0.0)
            for t in range(d):
                gv += gvec[q, t] * w_dec[c, t]
            for t in range(d):
                gd[t] += v * gvec[q, t]
            for t in range(d):
                ge[t] += gv * xc[xr, t]
            gsum += gv
            par += v * gv
        for t in range(d):
            gw_dec[c, t] = gd[t] - par * w_dec[c, t]
        for t in range(d):
            gw_enc[c, t] = ge[t]
        for t in range(d):
            gb_dec[t] -= gsum * w_enc[c, t]
        gb_enc[c] = gsum
        for t in range(d):
            ss += gw_dec[c, t] * gw_dec[c, t] + ge[t] * ge[t]
        ss += float(gsum * gsum)
    return ss


@kernel
def sparse_grads(xn: np.ndarray, b_dec: np.ndarray, w_enc: np.ndarray, w_dec: np.ndarray,
                 cols: np.ndarray, vals: np.ndarray, bounds: np.ndarray,
                 aux_cols: np.ndarray, aux_vals: np.ndarray, aux_alpha: float,
                 gw_enc: np.ndarray, gw_dec: np.ndarray, gb_enc: np.ndarray, gb_dec: np.ndarray
                 ) -> tuple[float, float]:
    """Loss of one batch and its gradients, written into gw_enc, gw_dec, gb_enc, gb_dec
    (overwritten, no zeroing needed). vals are relu(pre-activations) of the selected cols (0:
    padding or not firing). Loss: mean over Matryoshka prefixes (`bounds`, ascending, last =
    N) and rows of |x_hat_p - x|^2, plus aux_alpha times the AuxK loss of the first
    len(aux_cols) rows: |sum aux_vals W_dec[aux_cols] - e|^2 / sum |e - mean e|^2 with
    e = x - x_hat (the full reconstruction, held constant). Returns (loss, squared global
    gradient norm)."""
    b_rows, d = xn.shape
    n_lev = bounds.shape[0]
    r_aux = aux_cols.shape[0] if aux_alpha > 0 and aux_cols.shape[0] > 1 else 0
    gvec = np.empty((b_rows * n_lev + r_aux, d), np.float32)
    xc = np.empty((b_rows, d), np.float32)
    err = np.empty((r_aux, d), np.float32)
    level = np.empty(cols.shape, np.int64)
    gb_dec[:] = 0.0
    loss = _residuals(xn, b_dec, w_dec, cols, vals, bounds, level, gvec, xc, err, gb_dec)
    if r_aux:
        loss += _aux_residuals(w_dec, aux_cols, aux_vals, aux_alpha, err, gvec[b_rows * n_lev:])
    aux_c, aux_v = aux_cols[:r_aux], aux_vals[:r_aux]
    start, vec, xrow, val = _bucket(w_dec.shape[0], cols, vals, level, n_lev, aux_c, aux_v, b_rows * n_lev)
    ss = _latent_pass(start, vec, xrow, val, gvec, xc, w_enc, w_dec, gw_enc, gw_dec, gb_enc, gb_dec)
    for t in range(d):
        ss += gb_dec[t] * gb_dec[t]
    return loss, ss


@kernel
def adam_rows(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, gscale: float, lr: float,
              beta1: float, beta2: float, eps: float, step: int, renorm: bool) -> None:
    """torch.optim.Adam's update (no weight decay, no amsgrad) on a 2-D parameter, gradient
    scaled by `gscale` (clipping). With `renorm`
    each updated row is rescaled to unit norm, as the trainer does after every step."""
    # float32 arithmetic, as torch's fused CPU Adam does for float32 parameters
    one_m_b1, b2, one_m_b2 = np.float32(1.0 - beta1), np.float32(beta2), np.float32(1.0 - beta2)
    step_size = np.float32(lr / (1.0 - beta1**step))
    bc2_sqrt, eps32, gs = np.float32(math.sqrt(1.0 - beta2**step)), np.float32(eps), np.float32(gscale)
    rows, d = p.shape
    for i in range(rows):
        pr, gr, mr, vr = p[i], g[i], m[i], v[i]
        for t in range(d):
            gt = gr[t] * gs
            mr[t] += one_m_b1 * (gt - mr[t])
            vr[t] = b2 * vr[t] + one_m_b2 * gt * gt
            pr[t] -= step_size * mr[t] / (np.sqrt(vr[t]) / bc2_sqrt + eps32)
        if renorm:
            n = 0.0
            for t in range(d):
                n += pr[t] * pr[t]
            inv = 1.0 / max(math.sqrt(n), 1e-8)
            for t in range(d):
                pr[t] *= inv


@kernel
def mark_fired(since: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
    """Dead-latent counters: every latent ages by the batch's rows; those that fired reset."""
    since += cols.shape[0]
    for b in range(cols.shape[0]):
        for j in range(cols.shape[1]):
            if vals[b, j] > 0:
                since[cols[b, j]] = 0
