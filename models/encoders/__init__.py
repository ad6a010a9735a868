"""Encoders behind one interface; `build_encoder` maps a config name to an instance."""

from models.encoders.base import Encoder, EncodeResult, Modality
from models.encoders.registry import ENCODERS, build_encoder, shared_encoder

__all__ = ["ENCODERS", "EncodeResult", "Encoder", "Modality", "build_encoder", "shared_encoder"]
