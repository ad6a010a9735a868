"""The encoder interface: a name in the run config maps to an object that embeds studies.

Every encoder, from the offline defaults to Merlin and Qwen3-Embedding, implements
`Encoder`. Inputs are per-study items (report text or image path); an item the encoder
cannot use (unreadable volume, empty report) is returned as an error string in
`EncodeResult.errors` instead of raising, so the run can quarantine it and go on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

Modality = Literal["report", "image"]


@dataclass
class EncodeResult:
    """Vectors for the items that could be embedded.

    `vectors[i]` belongs to `items[ok[i]]`; `errors` maps item positions that failed to
    a human-readable reason.
    """

    vectors: np.ndarray  # (n_ok, dim) float32
    ok: np.ndarray  # (n_ok,) int64 positions into the input sequence
    errors: dict[int, str] = field(default_factory=dict)


ProgressFn = Callable[[int], None]  # called with the number of items just finished


def is_null(item: object) -> bool:
    """None or float NaN: how pandas hands over a missing value."""
    return item is None or (isinstance(item, float) and math.isnan(item))


def is_missing(item: object) -> bool:
    """None, NaN or blank: no input for this study."""
    return is_null(item) or not str(item).strip()


class Encoder(Protocol):
    """Embeds one modality of a study.

    `identity()` returns everything that determines the output (encoder name, weights
    checksum, preprocessing parameters); it is hashed into the embeddings artifact version,
    so changing weights or preprocessing never reuses stale embeddings.
    """

    name: str
    modality: Modality
    dim: int

    def identity(self) -> dict[str, object]: ...

    def encode(self, items: Sequence[str | None], progress: ProgressFn | None = None) -> EncodeResult: ...
