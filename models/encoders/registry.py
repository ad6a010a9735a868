"""Config name -> encoder factory.

Factories import their module on call, so `import models.encoders` stays cheap (no
transformers/monai import) for code that only needs the names, e.g. config validation.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from models.encoders.base import Encoder, EncodeResult, ProgressFn


def _minilm(cfg: Any) -> Encoder:
    from models.encoders.text_minilm import MiniLMEncoder

    return MiniLMEncoder(cfg)


def _ct_radiomics(cfg: Any) -> Encoder:
    from models.encoders.ct_radiomics import CTRadiomicsEncoder

    return CTRadiomicsEncoder(cfg)


def _merlin(cfg: Any) -> Encoder:
    from models.encoders.merlin import MerlinEncoder

    return MerlinEncoder(cfg)


def _qwen3(cfg: Any) -> Encoder:
    from models.encoders.text_qwen3 import Qwen3EmbeddingEncoder

    return Qwen3EmbeddingEncoder(cfg)


# Keyed by the config's `name` literal (MiniLMConfig.name == "minilm", ...).
ENCODERS: dict[str, Callable[[Any], Encoder]] = {
    "minilm": _minilm,
    "ct_radiomics": _ct_radiomics,
    "merlin": _merlin,
    "qwen3_embedding": _qwen3,
}


def build_encoder(cfg: Any) -> Encoder:
    """Instantiate the encoder a config names; an unknown name lists the known ones."""
    name = getattr(cfg, "name", None)
    factory = ENCODERS.get(name) if isinstance(name, str) else None
    if factory is None:
        known = ", ".join(sorted(ENCODERS))
        raise ValueError(f"unknown encoder '{name}'; known encoders: {known}")
    return factory(cfg)


class _Shared:
    """An encoder shared by the tasks of one process; one `encode` at a time, since a
    model on one device (and a fast tokenizer) is not meant for concurrent calls."""

    def __init__(self, encoder: Encoder) -> None:
        self.inner = encoder
        self.name, self.modality, self.dim = encoder.name, encoder.modality, encoder.dim
        self._lock = threading.Lock()

    def identity(self) -> dict[str, object]:
        return self.inner.identity()

    def encode(self, items: Sequence[str | None], progress: ProgressFn | None = None) -> EncodeResult:
        with self._lock:
            return self.inner.encode(items, progress)


_SHARED: OrderedDict[tuple[Any, Any], _Shared] = OrderedDict()
_SHARED_LOCK = threading.Lock()
_SHARED_MAX = 2  # encoders kept per process (a model of each modality)
BUILDS: Counter[str] = Counter()  # encoders built by this process, by name


def shared_encoder(cfg: Any, factory: Callable[[Any], Encoder] = build_encoder) -> Encoder:
    """The process's encoder for `cfg`, built (and its model loaded) once per process
    rather than once per task: a Dask or Prefect worker reuses it for every partition it
    runs. The least recently used one is dropped beyond two."""
    key = (factory, cfg)
    with _SHARED_LOCK:
        enc = _SHARED.get(key)
        if enc is None:
            enc = _Shared(factory(cfg))
            BUILDS[enc.name] += 1
            _SHARED[key] = enc
            while len(_SHARED) > _SHARED_MAX:
                _SHARED.popitem(last=False)
        _SHARED.move_to_end(key)
        return enc
