"""The SAE training step on CPU with compiled kernels (models/sae_cpu_kernels.py).

Same arithmetic as the autograd `Stepper` -- selection, Matryoshka prefix losses, AuxK on
dead latents, projected decoder gradients, global-norm clipping, Adam, unit-norm decoder
rows -- with the gradients written by hand. Adam's moments and step count live in the
torch optimizer's state, so checkpoints and resume are shared with the torch path.
Measured on 1 thread (B 256, d 256, N 2048, K 8, AuxK active; `benchmarks/sae_train.py`
gives the end-to-end figures): see the closing notes of issue 3.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from models.sae import SparseCode
from models.sae_cpu_kernels import adam_rows, sparse_grads, topk_groups
from models.sae_step import AUXK_ROWS, Stepper, lr_at


def compiled_step_supported(device: torch.device, dtype: torch.dtype) -> bool:
    """The compiled step covers CPU training with an fp32 selection matmul."""
    return device.type == "cpu" and dtype == torch.float32


def adam_state(opt: torch.optim.Optimizer, p: torch.nn.Parameter) -> dict[str, torch.Tensor]:
    """The Adam state torch would create for `p` on its first step (fused layout: a float32
    scalar step on the parameter's device), so torch and compiled steps share checkpoints."""
    st = opt.state[p]
    if not st:
        st["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
        st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return st


GROUP_SIZE = 16  # entries per strided group of the top-k (see topk_groups)


def select_rows(pre: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-row top-k of (B, N) pre-activations: ids sorted ascending, ReLU'd values.
    Group maxima come from numpy's vectorised max over strided groups (N / 16 per row);
    numba's scalar max chains were 4x slower here. Falls back to argpartition where N does
    not split into groups of 16 or k is too large for groups to pay."""
    b, n = pre.shape
    cols = np.empty((b, k), np.int64)
    vals = np.empty((b, k), np.float32)
    n_groups = n // GROUP_SIZE
    if n % GROUP_SIZE or k * 4 > n_groups:
        cols[:] = np.sort(np.argpartition(pre, n - k, axis=1)[:, n - k:], axis=1)
        vals[:] = np.take_along_axis(pre, cols, 1)
    else:
        group_max = pre.reshape(b, GROUP_SIZE, n_groups).max(axis=1)
        topk_groups(pre, group_max, k, cols, vals)
    return cols, np.maximum(vals, 0.0, out=vals)


def auxk_code(pre: np.ndarray, dead: np.ndarray, k_aux: int) -> tuple[np.ndarray, np.ndarray]:
    """AuxK's latents: the top min(k_aux, #dead) dead latents of the first AUXK_ROWS rows."""
    r = min(AUXK_ROWS, pre.shape[0])
    dead_idx = np.flatnonzero(dead)
    k = min(k_aux, len(dead_idx))
    sub = pre[:r, dead_idx]
    pos = np.argpartition(sub, sub.shape[1] - k, axis=1)[:, sub.shape[1] - k:]
    vals = np.take_along_axis(sub, pos, 1)
    return dead_idx[pos], np.maximum(vals, 0.0, out=vals)


_NO_AUX = (np.empty((0, 1), np.int64), np.empty((0, 1), np.float32))


def _as2d(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().reshape(-1, t.shape[-1])


def adam_update(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], gscale: float,
                renorm: set[int]) -> None:
    """One Adam step of every parameter from its .grad (scaled by gscale), zeroing .grad;
    parameters whose index is in `renorm` get unit-norm rows afterwards."""
    group = opt.param_groups[0]
    beta1, beta2 = group["betas"]
    for i, p in enumerate(params):
        st = adam_state(opt, p)
        st["step"] += 1
        assert p.grad is not None
        adam_rows(_as2d(p), _as2d(p.grad), _as2d(st["exp_avg"]), _as2d(st["exp_avg_sq"]), gscale,
                  float(group["lr"]), beta1, beta2, float(group["eps"]), int(st["step"]), i in renorm)


class CompiledStepper(Stepper):
    """`Stepper` with the gradients, clipping, Adam and renorm in compiled kernels; only the
    dense selection matmul runs in torch (BLAS). BatchTopK selects over the batch with the
    torch selection; everything after it is shared."""

    def step(self, xb: torch.Tensor, step: int) -> None:
        m, cfg = self.model, self.cfg
        self.opt.param_groups[0]["lr"] = lr_at(step, self.total, cfg)
        pre_t = m.pre_acts(xb)
        pre, x = pre_t.numpy(), xb.numpy()
        if m.selection == "topk":
            cols, vals = select_rows(pre, min(m.k, pre.shape[1]))
        else:
            cols_t, valid = m.select(pre_t, training=True)
            cols = cols_t.numpy()
            vals = np.take_along_axis(pre, cols, 1)
            vals = np.maximum(vals, 0.0, out=vals) * (1 if valid is None else valid.numpy())
        dead = (self.since_fired >= self.dead_after).numpy()
        aux = auxk_code(pre, dead, self.auxk_k) if cfg.auxk_alpha > 0 and len(x) > 1 and dead.any() else _NO_AUX
        w = [t.detach().numpy() for t in (m.W_enc, m.W_dec, m.b_enc, m.b_dec)]
        g = [self._grad(p).numpy() for p in (m.W_enc, m.W_dec, m.b_enc, m.b_dec)]
        _, sq_norm = sparse_grads(x, w[3], w[0], w[1], cols, vals.astype(np.float32, copy=False),
                                  self.bounds, aux[0], aux[1], float(cfg.auxk_alpha), *g)
        total = math.sqrt(sq_norm)  # clip like clip_grad_norm_
        gscale = cfg.grad_clip / (total + 1e-6) if total > cfg.grad_clip else 1.0
        adam_update(self.opt, self.params, gscale, {self.params.index(m.W_dec)})
        self._track(SparseCode(torch.from_numpy(cols), torch.from_numpy(vals)))

    @property
    def bounds(self) -> np.ndarray:
        return np.asarray(self.model.prefixes, dtype=np.int64)

    @staticmethod
    def _grad(p: torch.nn.Parameter) -> torch.Tensor:
        """The persistent .grad, overwritten whole by every step."""
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        return p.grad
