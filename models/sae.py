"""TopK sparse autoencoder (first form): module, training loop, encoding, checkpoint.

    f = W_enc (x - b_dec) + b_enc,  f_sparse = TopK(ReLU(f)),  x_hat = W_dec f_sparse + b_dec

Inputs are standardised per dimension with statistics from the training split; the
statistics live in the checkpoint and are applied at inference, so a saved SAE is used
exactly as it was trained. Decoder rows are kept unit-norm so activations are comparable
across features (cohort thresholds are per feature, but magnitudes are shown in reports).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from data_contracts.config import SAEConfig
from models.devices import resolve_device


class TopKSAE(nn.Module):
    """A TopK SAE with normalisation buffers carried in its state dict."""

    x_mean: torch.Tensor
    x_scale: torch.Tensor

    def __init__(self, d_in: int, n_features: int, k: int) -> None:
        super().__init__()
        self.d_in, self.n_features, self.k = d_in, n_features, k
        w = torch.randn(n_features, d_in)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w.clone())  # (N, d): row i is feature i's direction
        self.W_enc = nn.Parameter(w.t().clone())  # (d, N): initialised as the transpose
        self.b_enc = nn.Parameter(torch.zeros(n_features))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("x_mean", torch.zeros(d_in))
        self.register_buffer("x_scale", torch.ones(d_in))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.x_mean) / self.x_scale

    def pre_acts(self, xn: torch.Tensor) -> torch.Tensor:
        return torch.relu((xn - self.b_dec) @ self.W_enc + self.b_enc)

    def encode_sparse(self, xn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k values (>= 0) and their feature indices for normalised inputs."""
        vals, idx = self.pre_acts(xn).topk(self.k, dim=-1, sorted=False)
        return vals, idx

    def decode_sparse(self, vals: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        # Gather only the selected decoder rows: O(B k d) instead of O(B N d).
        return torch.einsum("bk,bkd->bd", vals, self.W_dec[idx]) + self.b_dec

    def forward(self, xn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        vals, idx = self.encode_sparse(xn)
        return self.decode_sparse(vals, idx), vals, idx

    @torch.no_grad()
    def renorm_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove the gradient component parallel to each unit decoder row, so the step
        changes direction, not norm (which renormalisation would undo anyway)."""
        if self.W_dec.grad is None:
            return
        w, g = self.W_dec.data, self.W_dec.grad
        g.sub_((g * w).sum(dim=1, keepdim=True) * w)


@dataclass
class TrainResult:
    model: TopKSAE
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # split -> name -> value


def fvu(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Fraction of variance unexplained: sum |x - x_hat|^2 / sum |x - mean(x)|^2."""
    resid = (x - x_hat).pow(2).sum()
    total = (x - x.mean(dim=0, keepdim=True)).pow(2).sum().clamp_min(1e-12)
    return float(resid / total)


@torch.no_grad()
def evaluate(model: TopKSAE, x: np.ndarray, batch_size: int = 4096) -> dict[str, float]:
    """FVU, MSE, mean L0 and dead fraction (features never selected) on raw inputs."""
    if len(x) == 0:
        return {}
    dev = next(model.parameters()).device
    xn = model.normalise(torch.as_tensor(x, dtype=torch.float32, device=dev))
    hats, fired, l0 = [], torch.zeros(model.n_features, dtype=torch.bool, device=dev), 0.0
    for s in range(0, len(xn), batch_size):
        x_hat, vals, idx = model(xn[s : s + batch_size])
        hats.append(x_hat)
        live = vals > 0
        fired[idx[live]] = True
        l0 += float(live.sum())
    x_hat = torch.cat(hats)
    return {
        "fvu": fvu(xn, x_hat),
        "mse": float((xn - x_hat).pow(2).mean()),
        "l0": l0 / len(xn),
        "dead_frac": float((~fired).float().mean()),
    }


def _split(n: int, heldout_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_held = round(n * heldout_frac) if n >= 20 else 0
    return np.sort(perm[n_held:]), np.sort(perm[:n_held])


def _lr_at(step: int, total: int, base: float) -> float:
    warm = max(1, total // 20)
    if step < warm:
        return base * (step + 1) / warm
    return base * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op threads (None: leave as is)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _threads_for(d_in: int, n_features: int, device: torch.device) -> int | None:
    # Small matrices gain nothing from a second thread and lose badly when the cores are
    # shared (measured here: 1.5 s with 1 thread vs 29 s with 2 on a loaded 2-core box).
    if device.type == "cpu" and d_in * n_features < (1 << 20):
        return 1
    return None


def train_sae(
    x: np.ndarray, cfg: SAEConfig, progress: Callable[[int, int], None] | None = None
) -> TrainResult:
    """Train a TopK SAE on rows of `x` (n, d). Seeded and deterministic on CPU."""
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need a 2-D array with at least 2 rows, got shape {x.shape}")
    dev = resolve_device(cfg.device)
    with cpu_threads(_threads_for(x.shape[1], cfg.n_features, dev)):
        return _train(x, cfg, dev, progress)


def _train(
    x: np.ndarray, cfg: SAEConfig, dev: torch.device, progress: Callable[[int, int], None] | None
) -> TrainResult:
    torch.manual_seed(cfg.seed)
    train_idx, held_idx = _split(len(x), cfg.heldout_frac, cfg.seed)
    xt = torch.as_tensor(x[train_idx], dtype=torch.float32)
    model = TopKSAE(x.shape[1], cfg.n_features, cfg.k)
    model.x_mean.copy_(xt.mean(0))
    # One scale for all dims keeps the embedding geometry (cosines) intact; per-dim std
    # would inflate noise dimensions of hand-crafted features.
    model.x_scale.fill_(float((xt - xt.mean(0)).pow(2).sum(1).mean().sqrt()) / math.sqrt(x.shape[1]) + 1e-8)
    with torch.no_grad():
        model.b_dec.copy_(model.normalise(xt).median(dim=0).values)
    model.to(dev)
    xn = model.normalise(xt.to(dev))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = max(1, math.ceil(len(xn) / cfg.batch_size))
    total = steps_per_epoch * cfg.epochs
    step = 0
    for _epoch in range(cfg.epochs):
        order = torch.randperm(len(xn), generator=gen).to(dev)
        for s in range(0, len(xn), cfg.batch_size):
            batch = xn[order[s : s + cfg.batch_size]]
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total, cfg.lr)
            x_hat, _, _ = model(batch)
            loss = (batch - x_hat).pow(2).sum(-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            model.project_decoder_grad()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            model.renorm_decoder()
            step += 1
        if progress is not None:
            progress(step, total)
    model.eval()
    metrics = {"train": evaluate(model, x[train_idx]), "heldout": evaluate(model, x[held_idx])}
    return TrainResult(model.cpu(), {k: v for k, v in metrics.items() if v})


@torch.no_grad()
def encode(model: TopKSAE, x: np.ndarray, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Sparse codes of every row: (n, k) values and (n, k) feature ids, values > 0 only
    meaningful (zeros are padding from TopK)."""
    dev = next(model.parameters()).device
    vals_out, idx_out = [], []
    for s in range(0, len(x), batch_size):
        xn = model.normalise(torch.as_tensor(x[s : s + batch_size], dtype=torch.float32, device=dev))
        vals, idx = model.encode_sparse(xn)
        vals_out.append(vals.cpu().numpy())
        idx_out.append(idx.cpu().numpy())
    if not vals_out:
        return np.zeros((0, model.k), np.float32), np.zeros((0, model.k), np.int64)
    return np.concatenate(vals_out), np.concatenate(idx_out)


def save_sae(model: TopKSAE, cfg: SAEConfig, directory: Path) -> None:
    """Self-describing checkpoint: weights + normalisation (safetensors) and config JSON."""
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(directory / "sae.safetensors"))
    meta = {"d_in": model.d_in, "n_features": model.n_features, "k": model.k, "config": cfg.model_dump()}
    (directory / "sae_config.json").write_text(json.dumps(meta, indent=2))


def load_sae(directory: Path) -> tuple[TopKSAE, SAEConfig]:
    meta = json.loads((directory / "sae_config.json").read_text())
    model = TopKSAE(meta["d_in"], meta["n_features"], meta["k"])
    model.load_state_dict(load_file(str(directory / "sae.safetensors")), strict=True)
    model.eval()
    return model, SAEConfig.model_validate(meta["config"])
