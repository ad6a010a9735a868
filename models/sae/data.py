"""Embedding sources for SAE training: an in-memory array or a parquet file read in chunks.

Training never holds more than one chunk (plus a partial batch) of a parquet file: each
epoch streams the file in `chunk_rows` record batches, shuffles rows within the chunk with
a seeded permutation, and cuts batches, carrying a remainder into the next chunk. With
chunk_rows >= n (the default for up to 65,536 studies) this is a full shuffle per epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


class EmbeddingSource(Protocol):
    @property
    def n_rows(self) -> int: ...

    @property
    def d_in(self) -> int: ...

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(global row ids, float32 rows) in file order."""
        ...


@dataclass(frozen=True)
class ArraySource:
    x: np.ndarray
    chunk_rows: int = 65536

    @property
    def n_rows(self) -> int:
        return int(self.x.shape[0])

    @property
    def d_in(self) -> int:
        return int(self.x.shape[1])

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for s in range(0, self.n_rows, self.chunk_rows):
            rows = np.arange(s, min(s + self.chunk_rows, self.n_rows))
            yield rows, np.ascontiguousarray(self.x[s : s + self.chunk_rows], dtype=np.float32)


def list_column_to_matrix(col: pa.Array | pa.ChunkedArray, where: str) -> np.ndarray:
    """A list<float> column as an (n, d) float32 matrix without a Python loop."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if len(arr) == 0:
        return np.zeros((0, 0), np.float32)
    if arr.null_count:
        raise ValueError(f"{where}: {arr.null_count} null embeddings; quarantine them upstream")
    lengths = np.diff(arr.offsets.to_numpy())
    if (lengths != lengths[0]).any():
        bad = int(np.argmax(lengths != lengths[0]))
        raise ValueError(f"{where}: row {bad} has {lengths[bad]} dims, row 0 has {lengths[0]}")
    flat = np.array(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)  # writable copy
    return flat.reshape(len(arr), int(lengths[0]))


class ParquetSource:
    """Rows of a list<float32> column of a parquet file, streamed in record batches."""

    def __init__(self, path: Path, column: str = "embedding", chunk_rows: int = 65536) -> None:
        self.path, self.column, self.chunk_rows = Path(path), column, chunk_rows
        meta = pq.ParquetFile(self.path).metadata
        self.n_rows = int(meta.num_rows)
        first = next(self._batches(1), None)
        self.d_in = 0 if first is None else int(first[1].shape[1])

    def _batches(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        start = 0
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=size, columns=[self.column]):
            x = list_column_to_matrix(batch.column(0), f"{self.path} column '{self.column}'")
            yield np.arange(start, start + len(x)), x
            start += len(x)

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self._batches(self.chunk_rows)


def heldout_mask(n: int, heldout_frac: float, seed: int) -> np.ndarray:
    """Boolean (n,) mask of held-out rows: a seeded random subset (none below 20 rows)."""
    n_held = round(n * heldout_frac) if n >= 20 else 0
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[:n_held]] = True
    return mask


def iter_rows(source: EmbeddingSource, keep: np.ndarray) -> Iterator[np.ndarray]:
    """Chunks of the rows where `keep` is true, in source order."""
    for rows, x in source.chunks():
        sel = keep[rows]
        if sel.any():
            yield x[sel]


def iter_batches(
    source: EmbeddingSource, keep: np.ndarray, batch_size: int, seed: int, epoch: int
) -> Iterator[np.ndarray]:
    """One epoch of training batches: ceil(n_kept / batch_size) of them, deterministic
    in (seed, epoch), so a resumed run can skip exactly the batches already seen."""
    rng = np.random.default_rng([seed, epoch])
    carry = np.zeros((0, source.d_in), np.float32)
    for x in iter_rows(source, keep):
        x = np.concatenate([carry, x[rng.permutation(len(x))]]) if len(carry) else x[rng.permutation(len(x))]
        full = len(x) - len(x) % batch_size
        for s in range(0, full, batch_size):
            yield x[s : s + batch_size]
        carry = x[full:]
    if len(carry):
        yield carry


def sample_rows(source: EmbeddingSource, keep: np.ndarray, n: int) -> np.ndarray:
    """The first `n` kept rows (for initialising b_dec)."""
    out, have = [], 0
    for x in iter_rows(source, keep):
        out.append(x[: n - have])
        have += len(out[-1])
        if have >= n:
            break
    return np.concatenate(out) if out else np.zeros((0, source.d_in), np.float32)
