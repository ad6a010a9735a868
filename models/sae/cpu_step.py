"""The SAE training step on CPU with compiled kernels (models/sae/cpu_kernels.py).

Same arithmetic as the autograd `Stepper` -- selection, Matryoshka prefix losses, AuxK on
dead latents, projected decoder gradients, global-norm clipping, Adam, unit-norm decoder
rows -- with the gradients written by hand. Adam's moments and step count live in the
torch optimizer's state, so checkpoints and resume are shared with the torch path.
On one thread at B 256, d 256, N 2048, K 8 with AuxK active, a step took about 5.6 ms
against 12 ms for the autograd step (interleaved runs on this 2-core machine);
`benchmarks/sae_train.py` gives the end-to-end figures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from data_contracts.config import SAEConfig
from models.sae.cpu_kernels import adam_consts, mark_fired, train_update
from models.sae.cpu_select import (
    Bf16Selector,
    amx_bf16_available,
    groups_fit,
    select_rows,
)
from models.sae.kernels import topk_indices
from models.sae.module import SparseAutoencoder
from models.sae.step import AUXK_ROWS, Stepper, lr_at


def compiled_step_supported(device: torch.device, cfg: SAEConfig, selection: str) -> bool:
    """The compiled step trains on CPU. A bf16 selection matmul is taken only where its
    top-k can be certified exact (per-row TopK); BatchTopK with dtype bfloat16 stays on the
    torch step, which selects from the bf16 product as asked."""
    return device.type == "cpu" and (cfg.dtype != "bfloat16" or selection == "topk")


def bf16_selection(cfg: SAEConfig, model: SparseAutoencoder) -> bool:
    """Certified bf16 selection (models/sae/cpu_select.py) for per-row TopK whose latents
    split into groups: with dtype bfloat16, or under auto on a CPU that multiplies bf16 in
    hardware (AMX). It selects the same exact top-k as the fp32 matmul, faster: training
    on the planted benchmark (d 256, N 2048, k 8, 1 thread) ran at 50-56k samples/s
    against 38-47k with the fp32 selection (three interleaved runs each); selection alone
    1.3-1.9x faster up to N 8192 (`benchmarks/sae_select.py`)."""
    if model.selection != "topk" or cfg.dtype == "float32" or not groups_fit(model.n_features, model.k):
        return False
    return cfg.dtype == "bfloat16" or amx_bf16_available()


def adam_state(opt: torch.optim.Optimizer, p: torch.nn.Parameter) -> dict[str, torch.Tensor]:
    """The Adam state torch would create for `p` on its first step (fused layout: a float32
    scalar step on the parameter's device), so torch and compiled steps share checkpoints."""
    st = opt.state[p]
    if not st:
        st["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
        st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return st


def auxk_code(pre: np.ndarray, dead: np.ndarray, k_aux: int) -> tuple[np.ndarray, np.ndarray]:
    """AuxK's latents: the top min(k_aux, #dead) dead latents of the first AUXK_ROWS rows."""
    r = min(AUXK_ROWS, pre.shape[0])
    dead_idx = np.flatnonzero(dead)
    k = min(k_aux, len(dead_idx))
    sub = pre[:r, dead_idx]  # numpy's introselect beat a compiled heap here (0.36 vs 0.57 ms, 64 x 1000, k 32)
    pos = topk_indices(torch.from_numpy(sub), k).numpy()
    vals = np.take_along_axis(sub, pos, 1)
    return dead_idx[pos], np.maximum(vals, 0.0, out=vals)


_NO_AUX = (np.empty((0, 1), np.int64), np.empty((0, 1), np.float32))


def _as2d(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().reshape(-1, t.shape[-1])


class _AdamViews:
    """numpy views of (param, exp_avg, exp_avg_sq) per parameter as 2-D arrays, and of the
    step counters; rebuilt only when the optimizer's state tensors change (first step, or a
    resumed state_dict)."""

    def __init__(self) -> None:
        self.key: tuple[int, ...] = ()
        self.triples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.steps: list[np.ndarray] = []

    def refresh(self, opt: torch.optim.Optimizer, params: list[torch.nn.Parameter]) -> None:
        states = [adam_state(opt, p) for p in params]
        key = tuple(id(t) for st in states for t in st.values())
        if key != self.key:
            self.key = key
            self.triples = [(_as2d(p), _as2d(st["exp_avg"]), _as2d(st["exp_avg_sq"]))
                            for p, st in zip(params, states, strict=True)]
            self.steps = [st["step"].numpy().reshape(1) for st in states]

    def advance(self) -> int:
        """Count one optimizer step in every parameter's state; the new (1-based) step."""
        for s in self.steps:
            s += 1
        return int(self.steps[0][0])


class CompiledStepper(Stepper):
    """`Stepper` with the gradients, clipping, Adam and renorm in compiled kernels; only the
    dense selection matmul runs in torch (BLAS). BatchTopK selects over the batch with the
    torch selection; everything after it is shared."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._views = _AdamViews()
        m = self.model
        self.low = Bf16Selector(m.n_features, m.d_in) if bf16_selection(self.cfg, m) else None

    def step(self, xb: torch.Tensor, step: int) -> None:
        m, cfg = self.model, self.cfg
        self.opt.param_groups[0]["lr"] = lr_at(step, self.total, cfg)
        params = (m.W_enc, m.W_dec, m.b_enc, m.b_dec)
        w = [p.detach().numpy() for p in params]
        cols, vals, pre = self._select(xb, w[0], w[2])
        since = self.since_fired.numpy()
        dead = since >= self.dead_after
        aux = _NO_AUX
        if cfg.auxk_alpha > 0 and len(xb) > 1 and dead.any():
            if self.low is None:
                aux = auxk_code(pre, dead, self.auxk_k)
            else:  # certified like the main selection
                dead_idx = np.flatnonzero(dead)
                aux = self.low.select_among(dead_idx, min(AUXK_ROWS, len(xb)), min(self.auxk_k, len(dead_idx)),
                                            w[0], w[2])
        views = self._views
        views.refresh(self.opt, list(params))
        group = self.opt.param_groups[0]
        beta1, beta2 = group["betas"]
        consts = adam_consts(float(group["lr"]), beta1, beta2, float(group["eps"]), views.advance())
        enc, dec, benc, bdec = views.triples
        train_update(xb.numpy(), cols, vals, self.bounds, aux[0], aux[1], float(cfg.auxk_alpha), cfg.grad_clip,
                     enc, dec, benc, bdec, consts)
        mark_fired(since, cols, vals)
        if m.selection == "batchtopk":
            self._track_threshold(torch.from_numpy(vals))

    def _select(self, xb: torch.Tensor, w_enc: np.ndarray, b_enc: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cols, relu(values) in fp32, dense pre-activations exact or approximate)."""
        m = self.model
        if self.low is not None:
            self.low.refresh(w_enc)  # before the step: follows resumed or edited weights
            with torch.no_grad():
                return self.low.select(xb - m.b_dec, w_enc, b_enc, m.k)
        pre_t = m.pre_acts(xb)
        pre = pre_t.numpy()
        if m.selection == "topk":
            return (*select_rows(pre, min(m.k, pre.shape[1])), pre)
        cols_t, valid = m.select(pre_t, training=True)
        cols = cols_t.numpy()
        vals = np.maximum(np.take_along_axis(pre, cols, 1), 0.0)
        if valid is not None:
            vals *= valid.numpy()
        return cols, vals, pre

    @property
    def bounds(self) -> np.ndarray:
        return np.asarray(self.model.prefixes, dtype=np.int64)
