"""Batched encoding of studies with a trained SAE (inference: normalisation, then TopK or
the learned BatchTopK threshold)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from models.sae.module import SparseAutoencoder


@torch.no_grad()
def encode_batch(model: SparseAutoencoder, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, W) values and latent ids of raw rows `x`; zero values are padding."""
    dev = next(model.parameters()).device
    xn = model.normalise(torch.as_tensor(x, dtype=torch.float32, device=dev))
    code = model.encode_code(xn, training=False)
    return code.vals.float().cpu().numpy(), code.cols.cpu().numpy()


def iter_encoded(model: SparseAutoencoder, chunks: Iterable[np.ndarray], batch_size: int = 4096
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """encode_batch over batches of a stream of chunks (e.g. parquet record batches)."""
    for x in chunks:
        for s in range(0, len(x), batch_size):
            yield encode_batch(model, x[s : s + batch_size])


def _pad(a: np.ndarray, width: int) -> np.ndarray:
    return np.pad(a, ((0, 0), (0, width - a.shape[1])))


def encode(model: SparseAutoencoder, x: np.ndarray, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Sparse codes of every row: (n, w) values and feature ids, w = k for TopK (BatchTopK:
    the most latents any row keeps). Zero values are padding."""
    parts = list(iter_encoded(model, [x], batch_size))
    if not parts:
        return np.zeros((0, model.k), np.float32), np.zeros((0, model.k), np.int64)
    width = max(p[0].shape[1] for p in parts)
    return (np.concatenate([_pad(v, width) for v, _ in parts]),
            np.concatenate([_pad(i, width) for _, i in parts]))
