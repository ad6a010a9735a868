"""GPU paths of the encoders (opt in: `-m gpu`; they run where a CUDA device is present)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_contracts.config import MiniLMConfig
from models.devices import resolve_dtype
from models.encoders.text_minilm import MiniLMEncoder

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

TEXTS = ["Cirrhotic liver morphology with splenomegaly and varices.",
         "No acute intrathoracic abnormality. Mild bibasilar atelectasis.",
         "Small right pleural effusion; stable 4 mm pulmonary nodule."]


def test_auto_device_and_dtype_resolve_to_cuda_bf16() -> None:
    cuda = torch.device("cuda")
    want = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    assert resolve_dtype("auto", cuda) == want


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_minilm_on_cuda_matches_cpu_float32(dtype: str) -> None:
    cpu = MiniLMEncoder(MiniLMConfig(device="cpu", dtype="float32")).encode(TEXTS).vectors
    gpu = MiniLMEncoder(MiniLMConfig(device="cuda", dtype=dtype)).encode(TEXTS).vectors  # type: ignore[arg-type]
    cos = (cpu * gpu).sum(axis=1) / (np.linalg.norm(cpu, axis=1) * np.linalg.norm(gpu, axis=1))
    assert cos.min() > (0.9999 if dtype == "float32" else 0.995), cos
