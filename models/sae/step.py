"""One optimisation step of SAE training (autograd through the sparse kernels of
models/sae/kernels.py): the learning-rate schedule, the loss with Matryoshka prefixes and
AuxK on dead latents, clipping, Adam and the unit-norm decoder; it also keeps the
dead-latent counters. `models/sae/cpu_step.py` is the same step with compiled CPU kernels."""

from __future__ import annotations

import torch
from torch import nn

from data_contracts.config import SAEConfig
from models.sae.kernels import Workspace, topk_indices
from models.sae.module import SparseAutoencoder, SparseCode

AUXK_ROWS = 64  # rows of each batch that carry the AuxK loss


def lr_at(step: int, total: int, cfg: SAEConfig) -> float:
    """Linear warm-up, constant, then linear decay to 0 over the last `decay_frac` of steps.
    (Cosine decay from the first step cost a lot on the planted benchmark: held-out FVU
    0.31 vs 0.08 with a constant rate at lr 1e-3 over 1,408 steps.)"""
    warm = max(1, round(total * cfg.warmup_frac))
    decay = round(total * cfg.decay_frac)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if step >= total - decay:
        return cfg.lr * (total - step) / max(1, decay)
    return cfg.lr


def clip_grads(params: list[nn.Parameter], max_norm: float) -> float:
    """Global-norm clipping like nn.utils.clip_grad_norm_, but the scaling pass over the
    gradients runs only when the norm is over the limit (most steps it is not)."""
    grads = [p.grad for p in params if p.grad is not None]
    total = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))
    if total > max_norm:
        torch._foreach_mul_(grads, max_norm / (total + 1e-6))
    return total


class Stepper:
    """One optimisation step on a normalised batch; holds the dead-latent counters."""

    def __init__(self, model: SparseAutoencoder, cfg: SAEConfig, total: int, dead_after: int,
                 dtype: torch.dtype = torch.float32) -> None:
        self.model, self.cfg, self.total, self.dead_after, self.dtype = model, cfg, total, dead_after, dtype
        self.params = list(model.parameters())
        model.workspace = Workspace()
        dev = model.W_dec.device
        fused = dev.type in ("cpu", "cuda")
        self.opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), fused=fused)
        self.since_fired = torch.zeros(model.n_features, dtype=torch.int64, device=dev)
        self.auxk_k = auxk_k(cfg, model.d_in)

    def loss(self, xb: torch.Tensor) -> tuple[torch.Tensor, SparseCode]:
        m = self.model
        code, pre = m.encode_with_pre(xb, training=True, dtype=self.dtype)
        recon = m.decode_prefixes(code, project=True)  # (P, B, d); P = 1 unless Matryoshka
        loss = (recon - xb).pow(2).sum(-1).mean()  # mean over prefixes and rows
        dead = self.since_fired >= self.dead_after
        if self.cfg.auxk_alpha > 0 and xb.shape[0] > 1 and bool(dead.any()):
            loss = loss + self.cfg.auxk_alpha * self._auxk(xb, recon[-1], pre, dead)
        return loss, code

    def _auxk(self, xb: torch.Tensor, x_hat: torch.Tensor, pre: torch.Tensor, dead: torch.Tensor) -> torch.Tensor:
        """Reconstruct the residual from the top dead latents (no decoder bias), normalised by
        the residual's variance: a gradient signal that pulls dead latents back to data.
        Computed on the first AUXK_ROWS rows of the (shuffled) batch, over dead columns only:
        on every row it doubled the step time once half the latents were dead (measured:
        8.4k vs 18k samples/s), for a heuristic whose job is only to reach dead latents."""
        m = self.model
        r = min(AUXK_ROWS, xb.shape[0])
        dead_idx = dead.nonzero().squeeze(1)
        k_aux = min(self.auxk_k, len(dead_idx))
        pos = topk_indices(pre[:r].index_select(1, dead_idx), k_aux)
        cols = dead_idx[pos]
        vals = m.values(xb[:r], pre[:r], cols, recompute=self.dtype != torch.float32)
        e = (xb[:r] - x_hat[:r]).detach()
        e_hat = m.decode_weights(vals.unsqueeze(1), cols, project=True, tag="auxk")[:, 0]
        return (e_hat - e).pow(2).sum() / (e - e.mean(0)).pow(2).sum().clamp_min(1e-12)

    def step(self, xb: torch.Tensor, step: int) -> None:
        m = self.model
        for g in self.opt.param_groups:
            g["lr"] = lr_at(step, self.total, self.cfg)
        loss, code = self.loss(xb)
        self.opt.zero_grad(set_to_none=False)  # persistent .grad: the kernels sum into it
        loss.backward()  # decoder gradients arrive already projected (Decode kernel)
        clip_grads(self.params, self.cfg.grad_clip)
        self.opt.step()
        m.renorm_decoder()
        self._track(code)

    @torch.no_grad()
    def _track(self, code: SparseCode) -> None:
        live = code.vals > 0
        self.since_fired += code.n_rows
        self.since_fired[code.cols[live]] = 0
        if self.model.selection == "batchtopk":
            self._track_threshold(code.vals)

    @torch.no_grad()
    def _track_threshold(self, vals: torch.Tensor) -> None:
        """BatchTopK's inference threshold: running mean of the smallest kept activation."""
        live = vals[vals > 0]
        if len(live):
            low = live.min().float()
            t = self.model.threshold
            t.copy_(low if float(t) < 0 else 0.99 * t + 0.01 * low)


def auxk_k(cfg: SAEConfig, d_in: int) -> int:
    """Dead latents per row in the AuxK loss: cfg.auxk_k, else min(d/2, 2k). The paper's d/2
    alone made the AuxK decode (B x k_aux x d) 16x the main one at d 256, k 8, roughly
    doubling the step time once latents die. At 2k, AuxK's 64 rows hold half the main
    decode's pairs and still reach every dead latent within a few steps; on the planted
    benchmark 8, 16 and 32 recovered the same atoms (within 0.003 over 3 seeds) and 2k ran
    5-15% faster than 4k."""
    return cfg.auxk_k or max(1, min(d_in // 2, 2 * cfg.k))
