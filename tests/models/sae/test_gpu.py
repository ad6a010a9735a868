"""SAE training on a CUDA device (opt in: `-m gpu`; runs where a CUDA device is present)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_contracts.config import SAEConfig
from models.sae.train import train_sae
from tests.models.sae.test_train import planted

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _cfg(device: str, dtype: str) -> SAEConfig:
    return SAEConfig(variant="matryoshka_topk", n_features=48, k=3, prefixes=(12, 48), epochs=30, lr=3e-3,
                     batch_size=128, seed=1, device=device, dtype=dtype, kernels="torch")  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_training_recovers_the_planted_dictionary_like_cpu(dtype: str) -> None:
    x, dic = planted()
    gpu = train_sae(x, _cfg("cuda", dtype))
    cpu = train_sae(x, _cfg("cpu", "float32"))
    learned = gpu.model.W_dec.detach().float().cpu().numpy()
    assert np.mean((dic @ learned.T).max(axis=1) > 0.9) >= 0.8
    assert gpu.metrics["heldout"]["fvu"] < cpu.metrics["heldout"]["fvu"] + 0.03

