"""SAE metric definitions against a direct numpy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_contracts.config import SAEConfig
from models.sae.metrics import evaluate, firing_histogram
from models.sae.module import build_sae


def test_metrics_match_numpy() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32) * 3 + 1
    m = build_sae(8, SAEConfig(variant="matryoshka_topk", n_features=40, k=3, prefixes=(10, 20, 40)),
                  torch.Generator().manual_seed(0))
    with torch.no_grad():
        m.x_mean.copy_(torch.as_tensor(x.mean(0)))
        m.x_scale.fill_(2.5)
        m.b_enc.fill_(0.3)
    got = evaluate(m, x, batch_size=64)  # several batches: the accumulation is exercised

    xn = (x - x.mean(0)) / 2.5
    w_enc, w_dec = m.W_enc.detach().numpy(), m.W_dec.detach().numpy()
    b_enc, b_dec = m.b_enc.detach().numpy(), m.b_dec.detach().numpy()
    pre = np.maximum((xn - b_dec) @ w_enc.T + b_enc, 0)
    top = np.argsort(-pre, axis=1)[:, :3]
    f = np.zeros_like(pre)
    np.put_along_axis(f, top, np.take_along_axis(pre, top, axis=1), axis=1)
    total = ((xn - xn.mean(0)) ** 2).sum()
    for p in (10, 20, 40):
        x_hat = f[:, :p] @ w_dec[:p] + b_dec
        np.testing.assert_allclose(got[f"fvu_prefix_{p}"], ((xn - x_hat) ** 2).sum() / total, rtol=1e-4)
    x_hat = f @ w_dec + b_dec
    np.testing.assert_allclose(got["fvu"], ((xn - x_hat) ** 2).sum() / total, rtol=1e-4)
    np.testing.assert_allclose(got["mse"], ((xn - x_hat) ** 2).mean(), rtol=1e-4)
    np.testing.assert_allclose(got["l0"], (f > 0).sum(1).mean(), rtol=1e-6)
    np.testing.assert_allclose(got["dead_frac"], ((f > 0).sum(0) == 0).mean(), rtol=1e-6)
    freq = (f > 0).sum(0) / len(x)
    live = freq[freq > 0]
    for b in range(-7, 1):
        want = np.sum(np.clip(np.floor(np.log10(live)), -7, 0) == b) / 40
        assert got[f"freq_log10_{b}"] == want


def test_firing_histogram_bins() -> None:
    fires = np.array([0, 1, 10, 100, 1000, 1000])  # frequencies 0, 1e-3, 1e-2, 1e-1, 1, 1 of 1000 rows
    h = firing_histogram(fires, 1000)
    assert h["freq_log10_-3"] == h["freq_log10_-2"] == h["freq_log10_-1"] == 1 / 6
    assert h["freq_log10_0"] == 2 / 6
    assert sum(h.values()) == pytest.approx(5 / 6)  # the dead latent is in dead_frac, not in a bin
