"""SAE training: planted recovery, determinism, resume, streaming, AuxK, unit-norm decoder."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from data_contracts.config import SAEConfig
from models.sae.cpu_step import CompiledStepper
from models.sae.data import ParquetSource
from models.sae.module import build_sae
from models.sae.step import Stepper
from models.sae.train import cpu_threads, geometric_median, train_sae


def planted(n: int = 3000, d: int = 32, atoms: int = 24, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    dic = rng.normal(size=(atoms, d))
    dic /= np.linalg.norm(dic, axis=1, keepdims=True)
    idx = np.argsort(rng.random((n, atoms)), axis=1)[:, :k]
    x = np.einsum("nk,nkd->nd", rng.uniform(0.5, 1.5, size=(n, k)), dic[idx])
    return (x + 0.01 * rng.normal(size=x.shape)).astype(np.float32), dic


def test_training_recovers_planted_dictionary_and_is_deterministic() -> None:
    x, dic = planted()
    cfg = SAEConfig(variant="topk", n_features=48, k=3, epochs=30, lr=3e-3, batch_size=128, seed=1, device="cpu")
    r1, r2 = train_sae(x, cfg), train_sae(x, cfg)
    assert torch.equal(r1.model.W_dec, r2.model.W_dec)
    assert r1.metrics["heldout"]["fvu"] < 0.15
    assert torch.allclose(r1.model.W_dec.norm(dim=1), torch.ones(48), atol=1e-5)  # unit rows after every step
    learned = r1.model.W_dec.detach().numpy()
    assert np.mean((dic @ learned.T).max(axis=1) > 0.9) >= 0.8


def test_matryoshka_prefix_fvu_falls_with_prefix_size() -> None:
    x, _ = planted()
    cfg = SAEConfig(variant="matryoshka_topk", n_features=48, k=3, prefixes=(6, 12, 24, 48), epochs=20,
                    lr=3e-3, batch_size=128, seed=1, device="cpu")
    held = train_sae(x, cfg).metrics["heldout"]
    fvus = [held[f"fvu_prefix_{p}"] for p in (6, 12, 24, 48)]
    assert all(b < a for a, b in itertools.pairwise(fvus)), fvus
    assert held["fvu_prefix_48"] == held["fvu"]


def test_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    x, _ = planted(n=600)
    # BatchTopK + Matryoshka + AuxK (dead after 300 samples) exercise every piece of state.
    cfg = SAEConfig(variant="matryoshka_batchtopk", n_features=32, k=3, prefixes=(8, 32), epochs=4,
                    batch_size=64, dead_after_samples=300, seed=2, device="cpu")
    whole = train_sae(x, cfg)
    first = train_sae(x, cfg, state_dir=tmp_path, stop_after=13)  # mid-epoch (9 steps per epoch)
    assert first.steps == 13
    resumed = train_sae(x, cfg, state_dir=tmp_path)
    assert resumed.steps == whole.steps == 36
    for name, t in whole.model.state_dict().items():
        assert torch.equal(t, resumed.model.state_dict()[name]), name
    assert float(whole.model.threshold) > 0


def test_streamed_parquet_equals_in_memory(tmp_path: Path) -> None:
    x, _ = planted(n=500)
    path = tmp_path / "emb.parquet"
    pq.write_table(pa.table({"embedding": pa.array(list(x), type=pa.list_(pa.float32()))}), path, row_group_size=64)
    cfg = SAEConfig(variant="topk", n_features=32, k=3, epochs=2, batch_size=64, seed=0, device="cpu", chunk_rows=1000)
    a = train_sae(x, cfg)
    b = train_sae(ParquetSource(path, chunk_rows=1000), cfg)
    assert torch.equal(a.model.W_dec, b.model.W_dec)
    c = train_sae(ParquetSource(path, chunk_rows=100), cfg.model_copy(update={"chunk_rows": 100}))
    assert c.metrics["heldout"]["fvu"] < 1.0  # chunked shuffling still trains


@pytest.mark.parametrize("kind", [Stepper, CompiledStepper])
def test_auxk_revives_dead_latents(kind: type[Stepper]) -> None:
    x, _ = planted(n=2000, d=16, atoms=12, k=2)
    xt = torch.as_tensor(x)
    revived = {}
    for alpha in (0.0, 1 / 32):
        cfg = SAEConfig(variant="topk", n_features=32, k=2, auxk_alpha=alpha, seed=0, device="cpu")
        m = build_sae(16, cfg, torch.Generator().manual_seed(0))
        with torch.no_grad():
            # Latents 16..31: tiny positive pre-activations, never among the top k: dead.
            m.W_enc[16:].mul_(1e-3)
            m.b_enc[16:] = 1e-3
        st = kind(m, cfg, total=200, dead_after=64)
        with cpu_threads(1):
            for step in range(200):
                st.step(xt[(step * 64) % 2000 :][:64], step)
        m.workspace = None
        with torch.no_grad():
            fired = torch.zeros(32, dtype=torch.bool)
            code = m.encode_code(xt)
            fired[code.cols[code.vals > 0]] = True
        revived[alpha] = int(fired[16:].sum())
    assert revived[0.0] == 0
    assert revived[1 / 32] >= 4


def test_geometric_median_matches_weiszfeld_reference() -> None:
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(200, 3))
    pts[:20] += 50  # outliers pull the mean, barely the median
    y = pts.mean(0)
    for _ in range(500):
        w = 1 / np.linalg.norm(pts - y, axis=1)
        y = (w[:, None] * pts).sum(0) / w.sum()
    got = geometric_median(torch.as_tensor(pts, dtype=torch.float64), iters=500, eps=1e-12).numpy()
    np.testing.assert_allclose(got, y, atol=1e-6)


def test_cpu_threads_restores_after_overlapping_contexts() -> None:
    before = torch.get_num_threads()
    outer = cpu_threads(1)
    outer.__enter__()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 1  # the outer context is still active
    outer.__exit__(None, None, None)
    assert torch.get_num_threads() == before
