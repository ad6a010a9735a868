"""Compiled CPU kernels of one SAE training step (numba), on numpy views of the weights.

In plain torch a CPU step is a chain of memory-bound passes over (B, k, d) contribution
tensors and (N, d) gradients -- gather, multiply, project, index_add, zero, norm, Adam,
renorm -- each reading and writing megabytes. Here the step after selection is three
passes (`train_update`):
1. per batch row: the forward decode of every Matryoshka prefix and AuxK, giving the
   gradient each firing latent's output receives; the firing pairs are bucketed by latent;
2. per latent: its gradient rows, only for their norm (global-norm clipping needs it
   before any update) and the bias gradients;
3. per latent: its gradient rows again, then Adam on that row of W_enc and W_dec and the
   decoder row's renormalisation, while the rows are in cache.
No (N, d) gradient is ever written or read (at d 256, N 2048 the two weight gradients are
4 MB, which a materialising step writes once and reads back in Adam); `sparse_grads` keeps
the materialised form, for tests and inspection.

All kernels are single-threaded (they run in the caller's thread, release the GIL, and are
deterministic); `fastmath` allows only reassociation, so reductions vectorise but NaN/inf
semantics are kept. Not FMA contraction: a freshly compiled kernel and the same kernel
loaded from numba's disk cache then fused different multiply-adds (Adam's second moment
differed in the last bit), so a run's result depended on whether the cache was warm.
Compiled code is cached on disk (numba `cache`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from numba import njit

_FM = {"reassoc"}  # no "contract": see the module docstring
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


@inlined
def _latent_rows(c: int, start: np.ndarray, vec: np.ndarray, xrow: np.ndarray, val: np.ndarray,
                 gvec: np.ndarray, xc: np.ndarray, w_dec: np.ndarray, gd: np.ndarray, ge: np.ndarray) -> Any:
    """Latent c's gradient rows into gd (decoder) and ge (encoder); returns its b_enc
    gradient. For a pair with output gradient g and value v, g_v = <g, W_dec[c]> flows
    through ReLU into the encoder (g_v xc, and g_v into b_enc) and the decoder row gets v g,
    minus its component along the unit row."""
    d = gd.shape[0]
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
        gd[t] -= par * w_dec[c, t]
    return gsum


@kernel
def _latent_pass(start: np.ndarray, vec: np.ndarray, xrow: np.ndarray, val: np.ndarray,
                 gvec: np.ndarray, xc: np.ndarray, w_enc: np.ndarray, w_dec: np.ndarray,
                 gw_enc: np.ndarray, gw_dec: np.ndarray, gb_enc: np.ndarray, gb_dec: np.ndarray,
                 write_rows: bool) -> float:
    """Every latent's gradients: b_enc and b_dec always; the weight rows too when
    `write_rows` (written whole, zeros for latents without pairs, so no zeroing pass).
    Returns the squared norm of the gradients of W_enc, W_dec and b_enc (for clipping)."""
    n, d = w_dec.shape
    gd = np.empty(d, np.float32)
    ge = np.empty(d, np.float32)
    ss = 0.0
    for c in range(n):
        if start[c] == start[c + 1]:
            gb_enc[c] = 0.0
            if write_rows:
                gw_dec[c] = 0.0
                gw_enc[c] = 0.0
            continue
        gsum = _latent_rows(c, start, vec, xrow, val, gvec, xc, w_dec, gd, ge)
        for t in range(d):
            gb_dec[t] -= gsum * w_enc[c, t]
        gb_enc[c] = gsum
        for t in range(d):
            ss += gd[t] * gd[t] + ge[t] * ge[t]
        ss += float(gsum * gsum)
        if write_rows:
            gw_dec[c] = gd
            gw_enc[c] = ge
    return ss


@inlined
def _adam_row(p: np.ndarray, m: np.ndarray, v: np.ndarray, i: int, g: np.ndarray, gs: np.floating[Any] | float,
              c: np.ndarray) -> None:
    """Adam on row i of p from gradient g * gs; c = (1 - beta1, beta2, 1 - beta2, step
    size, sqrt of the second bias correction, eps) as float32, as torch's fused Adam."""
    for t in range(p.shape[1]):
        gt = g[t] * gs
        m[i, t] += c[0] * (gt - m[i, t])
        v[i, t] = c[1] * v[i, t] + c[2] * gt * gt
        p[i, t] -= c[3] * m[i, t] / (np.sqrt(v[i, t]) / c[4] + c[5])


@kernel
def _adam_latents(start: np.ndarray, vec: np.ndarray, xrow: np.ndarray, val: np.ndarray,
                  gvec: np.ndarray, xc: np.ndarray, enc: tuple[np.ndarray, np.ndarray, np.ndarray],
                  dec: tuple[np.ndarray, np.ndarray, np.ndarray], gs: np.floating[Any] | float,
                  consts: np.ndarray) -> None:
    """Adam on every row of W_enc and W_dec (enc/dec: weight, exp_avg, exp_avg_sq), each
    row's gradient recomputed where it is needed, so no gradient matrix is written or read;
    decoder rows are renormalised after their update. Rows are independent: row c's
    gradient uses only row c of the weights, read before it is updated."""
    n, d = enc[0].shape
    gd = np.zeros(d, np.float32)
    ge = np.zeros(d, np.float32)
    for c in range(n):
        if start[c] < start[c + 1]:
            _latent_rows(c, start, vec, xrow, val, gvec, xc, dec[0], gd, ge)
        elif c > 0 and start[c - 1] < start[c]:  # the previous latent left its rows behind
            gd[:] = 0.0
            ge[:] = 0.0
        _adam_row(enc[0], enc[1], enc[2], c, ge, gs, consts)
        _adam_row(dec[0], dec[1], dec[2], c, gd, gs, consts)
        _unit_row(dec[0], c)


@inlined
def _unit_row(w: np.ndarray, i: int) -> None:
    nn = np.float32(0.0)
    for t in range(w.shape[1]):
        nn += w[i, t] * w[i, t]
    inv = np.float32(1.0) / max(np.sqrt(nn), np.float32(1e-8))
    for t in range(w.shape[1]):
        w[i, t] *= inv


@kernel
def _prepare(xn: np.ndarray, b_dec: np.ndarray, w_dec: np.ndarray, cols: np.ndarray, vals: np.ndarray,
             bounds: np.ndarray, aux_cols: np.ndarray, aux_vals: np.ndarray, aux_alpha: float,
             gb_dec: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          np.ndarray]:
    """Forward pass and what the per-latent gradients need: (loss, start, vec, xrow, val,
    gvec, xc) -- see _residuals and _bucket; gb_dec gets the decoder-bias part."""
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
    start, vec, xrow, val = _bucket(w_dec.shape[0], cols, vals, level, n_lev, aux_cols[:r_aux],
                                    aux_vals[:r_aux], b_rows * n_lev)
    return loss, start, vec, xrow, val, gvec, xc


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
    gradient norm). The training step uses train_update, which never writes the weight
    gradients; this is the same arithmetic with them materialised."""
    loss, start, vec, xrow, val, gvec, xc = _prepare(xn, b_dec, w_dec, cols, vals, bounds, aux_cols,
                                                     aux_vals, aux_alpha, gb_dec)
    ss = _latent_pass(start, vec, xrow, val, gvec, xc, w_enc, w_dec, gw_enc, gw_dec, gb_enc, gb_dec, True)
    for t in range(gb_dec.shape[0]):
        ss += gb_dec[t] * gb_dec[t]
    return loss, ss


@kernel
def train_update(xn: np.ndarray, cols: np.ndarray, vals: np.ndarray, bounds: np.ndarray,
                 aux_cols: np.ndarray, aux_vals: np.ndarray, aux_alpha: float, max_norm: float,
                 enc: tuple[np.ndarray, np.ndarray, np.ndarray], dec: tuple[np.ndarray, np.ndarray, np.ndarray],
                 b_enc: tuple[np.ndarray, np.ndarray, np.ndarray], b_dec: tuple[np.ndarray, np.ndarray, np.ndarray],
                 consts: np.ndarray) -> tuple[float, float]:
    """One optimisation step in place: the loss of sparse_grads, its gradient clipped to
    global norm max_norm, Adam on every parameter ((weight, exp_avg, exp_avg_sq) each; the
    biases as (1, n) rows), unit-norm decoder rows. Two passes over the latents: the first
    takes the gradient norm (and the bias gradients), the second recomputes each row's
    gradient where Adam needs it. Returns (loss, gradient norm before clipping)."""
    d = xn.shape[1]
    gb_dec = np.empty(d, np.float32)
    gb_enc = np.empty(enc[0].shape[0], np.float32)
    none = np.empty((0, d), np.float32)
    loss, start, vec, xrow, val, gvec, xc = _prepare(xn, b_dec[0][0], dec[0], cols, vals, bounds, aux_cols,
                                                     aux_vals, aux_alpha, gb_dec)
    ss = _latent_pass(start, vec, xrow, val, gvec, xc, enc[0], dec[0], none, none, gb_enc, gb_dec, False)
    for t in range(d):
        ss += gb_dec[t] * gb_dec[t]
    norm = np.sqrt(ss)
    gs = np.float32(max_norm / (norm + 1e-6)) if norm > max_norm else np.float32(1.0)
    _adam_latents(start, vec, xrow, val, gvec, xc, enc, dec, gs, consts)
    _adam_row(b_enc[0], b_enc[1], b_enc[2], 0, gb_enc, gs, consts)
    _adam_row(b_dec[0], b_dec[1], b_dec[2], 0, gb_dec, gs, consts)
    return loss, norm


def adam_consts(lr: float, beta1: float, beta2: float, eps: float, step: int) -> np.ndarray:
    """_adam_row's constants for optimizer step `step` (1-based), as float32."""
    return np.array([1.0 - beta1, beta2, 1.0 - beta2, lr / (1.0 - beta1**step),
                     math.sqrt(1.0 - beta2**step), eps], np.float32)


@kernel
def adam_rows(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, gscale: float,
              consts: np.ndarray, renorm: bool) -> None:
    """torch.optim.Adam's update (no weight decay, no amsgrad) on a 2-D parameter from
    gradient g * gscale; with `renorm` each updated row is rescaled to unit norm. The
    training step applies the same _adam_row and _unit_row inside train_update; this
    whole-matrix form is where tests compare them with torch.optim.Adam."""
    gs = np.float32(gscale)
    for i in range(p.shape[0]):
        _adam_row(p, m, v, i, g[i], gs, consts)
        if renorm:
            _unit_row(p, i)


@kernel
def mark_fired(since: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
    """Dead-latent counters: every latent ages by the batch's rows; those that fired reset."""
    since += cols.shape[0]
    for b in range(cols.shape[0]):
        for j in range(cols.shape[1]):
            if vals[b, j] > 0:
                since[cols[b, j]] = 0
