"""SAE checkpoints: the self-describing model checkpoint used downstream, and the training
state that lets a stopped run resume exactly.

Model checkpoint (a directory): `sae.safetensors` (weights, normalisation x_mean/x_scale,
BatchTopK threshold) and `sae_config.json` (shape, variant, prefixes, full SAEConfig,
metrics). Training state: the same weights plus `optimizer.pt` (Adam moments and step
counts), `since_fired` (dead-latent counters) and `train_state.json` (global step). Batch
order is a pure function of (seed, epoch), so no RNG state needs saving.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from data_contracts.config import SAEConfig
from models.sae.module import SparseAutoencoder, build_sae

WEIGHTS, META = "sae.safetensors", "sae_config.json"


def _save_weights(model: SparseAutoencoder, path: Path, extra: dict[str, torch.Tensor] | None = None) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors | (extra or {}), str(path))


def save_sae(model: SparseAutoencoder, cfg: SAEConfig, directory: Path,
             metrics: dict[str, dict[str, float]] | None = None) -> None:
    """Weights + normalisation + threshold (safetensors), shape + config + metrics (JSON)."""
    directory.mkdir(parents=True, exist_ok=True)
    _save_weights(model, directory / WEIGHTS)
    meta: dict[str, Any] = {
        "d_in": model.d_in, "n_features": model.n_features, "k": model.k,
        "selection": model.selection, "prefixes": list(model.prefixes),
        "config": cfg.model_dump(mode="json"), "metrics": metrics or {},
        "inference": "xn = (x - x_mean) / x_scale; pre = (xn - b_dec) @ W_enc.T + b_enc; "
                     + ("keep relu(pre) > threshold" if model.selection == "batchtopk" else "keep top-k of relu(pre)"),
    }
    (directory / META).write_text(json.dumps(meta, indent=2))


def read_meta(directory: Path) -> dict[str, Any]:
    """The checkpoint's JSON half (shape, prefixes, config, metrics), without the weights."""
    meta: dict[str, Any] = json.loads((directory / META).read_text())
    return meta


def load_sae(directory: Path) -> tuple[SparseAutoencoder, SAEConfig]:
    meta = read_meta(directory)
    cfg = SAEConfig.model_validate(meta["config"])
    model = build_sae(int(meta["d_in"]), cfg)
    model.load_state_dict(load_file(str(directory / WEIGHTS)), strict=True)
    model.eval()
    return model, cfg


def checkpoint_metrics(directory: Path) -> dict[str, dict[str, float]]:
    return dict(read_meta(directory).get("metrics", {}))


@dataclass
class TrainState:
    step: int


def save_state(directory: Path, state: TrainState, model: SparseAutoencoder,
               opt: torch.optim.Optimizer, since_fired: torch.Tensor) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _save_weights(model, directory / "train_weights.safetensors", {"since_fired": since_fired.cpu()})
    torch.save(opt.state_dict(), directory / "optimizer.pt")
    (directory / "train_state.json").write_text(json.dumps({"step": state.step}))


def load_state(directory: Path, model: SparseAutoencoder, opt: torch.optim.Optimizer,
               since_fired: torch.Tensor) -> TrainState:
    """Restore weights, optimizer and counters in place; return the step to continue at."""
    tensors = load_file(str(directory / "train_weights.safetensors"))
    since_fired.copy_(tensors.pop("since_fired"))
    model.load_state_dict(tensors, strict=True)
    opt.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
    return TrainState(step=int(json.loads((directory / "train_state.json").read_text())["step"]))


def load_decoder(directory: Path) -> tuple[np.ndarray, list[int]]:
    """The decoder directions (N, d) and the Matryoshka prefixes, without building the model."""
    with safe_open(str(directory / WEIGHTS), framework="numpy") as f:
        decoder = np.asarray(f.get_tensor("W_dec"), dtype=np.float32)
    return decoder, [int(p) for p in read_meta(directory)["prefixes"]]
