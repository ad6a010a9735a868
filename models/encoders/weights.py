"""Checksums of model weights, recorded in an encoder's `identity()` so that new weights
never reuse embeddings computed with old ones. Hashing a 1 GB checkpoint takes seconds, so
results are cached per process, keyed by (size, mtime) so a replaced file is re-hashed."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


@functools.cache
def _sha256_files(paths: tuple[str, ...], stamps: tuple[tuple[int, int], ...]) -> str:
    del stamps  # part of the cache key only
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def files_sha256(files: Sequence[Path]) -> str:
    """One sha256 over the files' bytes, in the given order."""
    stamps = tuple((f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _sha256_files(tuple(str(f) for f in files), stamps)


def weights_sha256(model_dir: Path) -> str:
    """Checksum of the weight files in a model folder (safetensors preferred, else .bin)."""
    for pattern in WEIGHT_PATTERNS:
        files = sorted(model_dir.glob(pattern))
        if files:
            return files_sha256(files)
    raise FileNotFoundError(f"no weight files ({', '.join(WEIGHT_PATTERNS)}) in {model_dir}")
