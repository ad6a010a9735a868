"""Image encoder: Merlin (I3D ResNet-152) on Merlin's preprocessing.

The checkpoint is read from a local file (air-gapped clusters); the hub is used only when
the config allows it and the environment is not offline. Loading is strict: a checkpoint
whose image-encoder keys differ from the network's fails with the keys listed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data_contracts.config import MerlinConfig
from models.devices import dtype_name, resolve_device, resolve_dtype
from models.encoders.base import EncodeResult, Modality, ProgressFn
from models.encoders.ct_preprocess import PREPROCESSING, preprocess_path
from models.encoders.merlin_net import CONTRASTIVE_DIM, POOLED_DIM, I3ResNet, load_i3resnet
from models.encoders.parallel import map_items
from models.encoders.weights import files_sha256


def resolve_checkpoint(cfg: MerlinConfig) -> Path:
    """The local checkpoint file; downloaded from the hub only when allowed and online."""
    if cfg.checkpoint_path is not None:
        p = Path(cfg.checkpoint_path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"Merlin checkpoint not found: {p} (download {cfg.hub_filename} "
                                    f"from {cfg.hub_repo} and set encoder.checkpoint_path)")
        return p
    from huggingface_hub import hf_hub_download

    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")
    return Path(hf_hub_download(cfg.hub_repo, cfg.hub_filename, local_files_only=offline))


def load_checkpoint(path: Path) -> I3ResNet:
    """The strictly loaded network; `weights_only` refuses pickled code in the file."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    return load_i3resnet(state, source=str(path))


def _batches(results: Iterator[tuple[np.ndarray | None, str | None]], size: int,
             errors: dict[int, str]) -> Iterator[tuple[list[int], np.ndarray]]:
    """Group usable volumes into batches (positions, stacked array); record the others."""
    pos: list[int] = []
    vols: list[np.ndarray] = []
    for i, (vol, err) in enumerate(results):
        if vol is None:
            errors[i] = err or "unknown error"
            continue
        pos.append(i)
        vols.append(vol)
        if len(pos) == size:
            yield pos, np.stack(vols)
            pos, vols = [], []
    if pos:
        yield pos, np.stack(vols)


class MerlinEncoder:
    """2048-d pooled Merlin image features (or the 512-d contrastive head)."""

    modality: Modality = "image"

    def __init__(self, cfg: MerlinConfig, model: I3ResNet | None = None) -> None:
        self.cfg = cfg
        self.name: str = cfg.name
        self.dim: int = POOLED_DIM if cfg.output == "pooled" else CONTRASTIVE_DIM
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        self.checkpoint = resolve_checkpoint(cfg)
        self._model: Any = model
        self._ready = False

    def identity(self) -> dict[str, object]:
        return {
            "name": self.name,
            "architecture": "i3d_resnet152",
            "weights_sha256": files_sha256([self.checkpoint]),
            "output": self.cfg.output,
            "preprocessing": PREPROCESSING,
            "dtype": dtype_name(self.dtype),
            "dim": self.dim,
        }

    def _load(self) -> Any:
        """The network on the encoder's device and dtype, in eval mode; prepared on the
        first batch only (a given or loaded model alike)."""
        if not self._ready:
            model = self._model if self._model is not None else load_checkpoint(self.checkpoint)
            self._model = model.to(device=self.device, dtype=self.dtype).eval()
            self._ready = True
        return self._model

    def embed_volumes(self, volumes: np.ndarray) -> np.ndarray:
        """(B, 1, 224, 224, 160) preprocessed volumes -> (B, dim) float32."""
        model = self._load()
        x = torch.from_numpy(volumes).to(device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            pooled = model(x)
            out = pooled if self.cfg.output == "pooled" else model.contrastive(pooled)
        return out.float().cpu().numpy()

    def encode(self, items: Sequence[str | None], progress: ProgressFn | None = None) -> EncodeResult:
        errors: dict[int, str] = {}
        ok: list[int] = []
        chunks: list[np.ndarray] = []
        results = map_items(preprocess_path, items, self.cfg.n_workers)
        for pos, vols in _batches(results, self.cfg.batch_size, errors):
            chunks.append(self.embed_volumes(vols))
            ok.extend(pos)
            if progress is not None:
                progress(len(pos))
        if progress is not None and errors:
            progress(len(errors))
        vectors = np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)
        return EncodeResult(vectors=vectors, ok=np.asarray(ok, dtype=np.int64), errors=errors)
