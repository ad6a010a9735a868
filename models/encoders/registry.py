"""Config name -> encoder factory.

Factories import their module on call, so `import models.encoders` stays cheap (no
transformers/monai import) for code that only needs the names, e.g. config validation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from models.encoders.base import Encoder


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
