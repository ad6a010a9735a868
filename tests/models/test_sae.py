from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from data_contracts.config import SAEConfig
from models.sae import TopKSAE, encode, evaluate, fvu, load_sae, save_sae, train_sae


def _planted(n: int = 3000, d: int = 32, atoms: int = 24, k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(atoms, d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    x = np.zeros((n, d))
    for i in range(n):
        idx = rng.choice(atoms, size=k, replace=False)
        x[i] = rng.uniform(0.5, 1.5, size=k) @ D[idx]
    return (x + 0.01 * rng.normal(size=x.shape)).astype(np.float32), D


def test_topk_is_exact() -> None:
    torch.manual_seed(0)
    m = TopKSAE(8, 16, 3)
    x = torch.randn(5, 8)
    vals, idx = m.encode_sparse(x)
    ref = torch.relu((x - m.b_dec) @ m.W_enc + m.b_enc)
    ref_vals, _ = ref.topk(3, dim=-1)
    assert torch.allclose(vals.sort(dim=-1).values, ref_vals.sort(dim=-1).values)
    dense = torch.zeros(5, 16).scatter(1, idx, vals)
    assert torch.allclose(m.decode_sparse(vals, idx), dense @ m.W_dec + m.b_dec, atol=1e-6)


def test_gradient_projection_and_unit_norm() -> None:
    torch.manual_seed(0)
    m = TopKSAE(8, 16, 3)
    m.W_dec.grad = torch.randn_like(m.W_dec)
    m.project_decoder_grad()
    assert torch.allclose((m.W_dec.grad * m.W_dec).sum(1), torch.zeros(16), atol=1e-6)
    with torch.no_grad():
        m.W_dec.mul_(3.0)
    m.renorm_decoder()
    assert torch.allclose(m.W_dec.norm(dim=1), torch.ones(16), atol=1e-6)


def test_training_recovers_planted_dictionary_and_is_deterministic(tmp_path: Path) -> None:
    x, D = _planted()
    cfg = SAEConfig(n_features=48, k=3, epochs=30, lr=3e-3, batch_size=128, seed=1)
    r1 = train_sae(x, cfg)
    r2 = train_sae(x, cfg)
    assert torch.equal(r1.model.W_dec, r2.model.W_dec)
    assert r1.metrics["heldout"]["fvu"] < 0.15
    assert torch.allclose(r1.model.W_dec.norm(dim=1), torch.ones(48), atol=1e-5)
    learned = r1.model.W_dec.detach().numpy()
    learned = learned / np.linalg.norm(learned, axis=1, keepdims=True)
    # decoder rows live in normalised space; the planted atoms are directions in raw space
    cos = np.abs(D @ learned.T).max(axis=1)
    assert np.mean(cos > 0.9) >= 0.8
    save_sae(r1.model, cfg, tmp_path)
    m2, cfg2 = load_sae(tmp_path)
    assert cfg2 == cfg
    v1, i1 = encode(r1.model, x[:50])
    v2, i2 = encode(m2, x[:50])
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(i1, i2)


def test_metrics_match_numpy() -> None:
    x, _ = _planted(n=200)
    m = TopKSAE(x.shape[1], 16, 2)
    met = evaluate(m, x)
    xn = (x - m.x_mean.numpy()) / m.x_scale.numpy()
    vals, idx = encode(m, x)
    dense = np.zeros((len(x), 16), np.float32)
    np.put_along_axis(dense, idx, vals, axis=1)
    x_hat = dense @ m.W_dec.detach().numpy() + m.b_dec.detach().numpy()
    ref_fvu = ((xn - x_hat) ** 2).sum() / ((xn - xn.mean(0)) ** 2).sum()
    assert abs(met["fvu"] - ref_fvu) < 1e-4
    assert abs(met["l0"] - (vals > 0).sum(1).mean()) < 1e-6
    fired = np.zeros(16, bool)
    fired[idx[vals > 0]] = True
    assert abs(met["dead_frac"] - (1 - fired.mean())) < 1e-9
    assert fvu(torch.as_tensor(xn), torch.as_tensor(xn)) == 0.0
