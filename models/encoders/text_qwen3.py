"""Report encoder: Qwen3-Embedding through plain transformers.

The published recipe: the tokenizer pads on the left, every sequence ends with the
end-of-text token, the embedding is the hidden state of that last token, L2-normalised.
Queries (not documents) may carry an `Instruct: {task}\\nQuery:` prefix. Matryoshka (MRL)
training makes the leading `dim` coordinates a usable embedding on their own: truncate,
then re-normalise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from data_contracts.config import Qwen3EmbeddingConfig
from models.devices import dtype_name
from models.encoders.base import EncodeResult, Modality, ProgressFn
from models.encoders.text_batching import embed_token_ids, encode_reports, load_text_model, resolve_text_model
from models.encoders.weights import weights_sha256

EOS_TOKEN = "<|endoftext|>"


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hidden state of each sequence's last real token, for left or right padding."""
    if bool(mask[:, -1].all()):  # left padding: the last column is real for every row
        return hidden[:, -1]
    last = mask.sum(dim=1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def mrl_normalize(vectors: torch.Tensor, dim: int | None) -> torch.Tensor:
    """L2-normalise in float32, keeping the first `dim` coordinates (all when None)."""
    v = vectors.to(torch.float32)
    if dim is not None:
        v = v[:, :dim]
    return F.normalize(v, p=2, dim=1)


def with_instruction(text: str, instruction: str | None) -> str:
    return text if instruction is None else f"Instruct: {instruction}\nQuery:{text}"


def resolve_model_dir(model: str, allow_download: bool) -> Path:
    """A local folder as is; a hub id from the local hub cache, or downloaded when allowed
    and the environment is not marked offline."""
    p = Path(model).expanduser()
    if p.is_dir():
        return p
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = not allow_download or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")
    try:
        return Path(snapshot_download(model, local_files_only=offline))
    except LocalEntryNotFoundError as e:
        raise FileNotFoundError(
            f"Qwen3-Embedding model '{model}' is neither a local folder nor in the hub cache; "
            "set encoder.model to the downloaded folder (or allow_download: true with network)"
        ) from e


class Qwen3EmbeddingEncoder:
    """Report encoder; the model loads on the first `encode` (identity() needs no load)."""

    modality: Modality = "report"

    def __init__(self, cfg: Qwen3EmbeddingConfig) -> None:
        self.cfg = cfg
        self.name: str = cfg.name
        self.model_dir = resolve_model_dir(cfg.model, cfg.allow_download)
        self.device, self.dtype, hidden = resolve_text_model(self.model_dir, cfg.device, cfg.dtype)
        if cfg.dim is not None and cfg.dim > hidden:
            raise ValueError(f"qwen3_embedding.dim ({cfg.dim}) exceeds the model width ({hidden})")
        self.dim: int = cfg.dim or hidden
        self._tokenizer: Any = None
        self._model: Any = None

    def identity(self) -> dict[str, object]:
        return {
            "name": self.name,
            "weights_sha256": weights_sha256(self.model_dir),
            "max_length": self.cfg.max_length,
            "instruction": self.cfg.instruction,
            "pooling": "last_token",
            "padding_side": "left",
            "append_eos": EOS_TOKEN,
            "normalize": "l2",
            "dim": self.dim,
            "dtype": dtype_name(self.dtype),
        }

    def _load(self) -> None:
        if self._model is not None:
            return
        # Load straight into the target dtype: an 8B model in float32 would need 32 GB of RAM.
        self._tokenizer, self._model = load_text_model(self.model_dir, self.device, self.dtype,
                                                       load_in_dtype=True, padding_side="left")

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids ending in the end-of-text token (older tokenizer files do not add it),
        truncated so the total stays within max_length."""
        tok = self._tokenizer
        eos = int(tok.convert_tokens_to_ids(EOS_TOKEN))
        prompts = [with_instruction(t, self.cfg.instruction) for t in texts]
        ids = tok(prompts, truncation=True, max_length=self.cfg.max_length - 1)["input_ids"]
        return [x if x and x[-1] == eos else [*x, eos] for x in ids]

    def encode(self, items: Sequence[str | None], progress: ProgressFn | None = None) -> EncodeResult:
        dim = self.cfg.dim

        def pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return mrl_normalize(last_token_pool(hidden, mask), dim)

        def embed(texts: list[str], out: np.ndarray) -> None:
            self._load()
            embed_token_ids(self.token_ids(texts), self._tokenizer, self._model, pool, out,
                            batch_size=self.cfg.batch_size, device=self.device, progress=progress)

        return encode_reports(items, self.dim, embed)
