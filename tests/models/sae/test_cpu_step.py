"""Compiled CPU SAE step: selection, hand-written gradients and Adam against independent
references (numpy selection, torch autograd on a dense graph, torch.optim.Adam), and
whole steps against the autograd Stepper."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from data_contracts.config import SAEConfig
from models.sae.cpu_kernels import adam_consts, adam_rows, sparse_grads
from models.sae.cpu_step import CompiledStepper, auxk_code, select_rows
from models.sae.module import build_sae
from models.sae.step import Stepper


@pytest.mark.parametrize(("rows", "n", "k"), [(37, 256, 5), (20, 2048, 8), (9, 100, 3), (5, 64, 40), (3, 48, 47)])
def test_select_rows_is_exact_top_k(rows: int, n: int, k: int) -> None:
    pre = np.random.default_rng(n).normal(size=(rows, n)).astype(np.float32)
    cols, vals = select_rows(pre, k)
    ref = np.sort(np.argsort(-pre, axis=1, kind="stable")[:, :k], axis=1)
    np.testing.assert_array_equal(cols, ref)
    np.testing.assert_array_equal(vals, np.maximum(np.take_along_axis(pre, ref, 1), 0))


def test_auxk_code_takes_top_dead_latents_of_first_rows() -> None:
    rng = np.random.default_rng(3)
    pre = rng.normal(size=(80, 50)).astype(np.float32)
    dead = rng.random(50) < 0.4
    cols, vals = auxk_code(pre, dead, 6)
    assert cols.shape == (64, 6) and dead[cols].all()
    sub = np.where(dead, pre[:64], -np.inf)
    ref = np.sort(np.argsort(-sub, axis=1)[:, :6], axis=1)
    np.testing.assert_array_equal(np.sort(cols, axis=1), ref)
    np.testing.assert_array_equal(vals, np.maximum(np.take_along_axis(pre[:64], cols, 1), 0))


def _dense_reference(x: torch.Tensor, w: list[torch.Tensor], cols: torch.Tensor, valid: torch.Tensor,
                     bounds: tuple[int, ...], aux_cols: torch.Tensor | None, alpha: float
                     ) -> tuple[float, list[np.ndarray]]:
    """Loss and gradients by autograd on an ordinary dense graph (decoder gradient projected
    off the unit rows afterwards, as the trainer's constraint requires)."""
    w_enc, w_dec, b_enc, b_dec = (t.clone().requires_grad_(True) for t in w)
    pre = (x - b_dec) @ w_enc.T + b_enc
    vals = torch.relu(pre.gather(1, cols)) * valid
    recons = [b_dec + ((vals * (cols < b)).unsqueeze(2) * w_dec[cols]).sum(1) for b in bounds]
    loss = sum(((r - x) ** 2).sum(1).mean() for r in recons) / len(bounds)
    if aux_cols is not None:
        r = len(aux_cols)
        e = (x - recons[-1]).detach()[:r]
        e_hat = (torch.relu(pre[:r].gather(1, aux_cols)).unsqueeze(2) * w_dec[aux_cols]).sum(1)
        loss = loss + alpha * ((e_hat - e) ** 2).sum() / ((e - e.mean(0)) ** 2).sum()
    loss.backward()
    g_dec = w_dec.grad - (w_dec.grad * w_dec).sum(1, keepdim=True) * w_dec
    grads = [w_enc.grad, g_dec, b_enc.grad, b_dec.grad]
    return float(loss.detach()), [g.detach().numpy() for g in grads]


@pytest.mark.parametrize("bounds", [(24,), (6, 12, 24)])
@pytest.mark.parametrize("aux", [False, True])
def test_sparse_grads_match_autograd_on_dense_graph(bounds: tuple[int, ...], aux: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    b, d, n, k = 70, 12, 24, 4
    x = torch.randn(b, d, generator=gen)
    w_dec = torch.randn(n, d, generator=gen)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    w = [torch.randn(n, d, generator=gen) * 0.5, w_dec, torch.randn(n, generator=gen) * 0.1,
         torch.randn(d, generator=gen) * 0.1]
    pre = ((x - w[3]) @ w[0].T + w[2]).numpy()
    cols, vals = select_rows(pre, k)
    valid = torch.rand(b, k, generator=gen) > 0.2  # padded codes (BatchTopK) have invalid slots
    vals = vals * valid.numpy()
    dead = np.arange(n) % 3 == 0
    aux_cols, aux_vals = auxk_code(pre, dead, 3) if aux else (np.empty((0, 1), np.int64), np.empty((0, 1), np.float32))
    out = [np.zeros((n, d), np.float32), np.zeros((n, d), np.float32), np.zeros(n, np.float32), np.zeros(d, np.float32)]
    out[0] += 7.0  # stale values from a previous step must be overwritten, not summed into
    loss, sq = sparse_grads(x.numpy(), w[3].numpy(), w[0].numpy(), w[1].numpy(), cols, vals.astype(np.float32),
                            np.asarray(bounds, np.int64), aux_cols, aux_vals, 0.25, *out)
    ref_loss, ref = _dense_reference(x, w, torch.from_numpy(cols), valid, bounds,
                                     torch.from_numpy(aux_cols) if aux else None, 0.25)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for got, want in zip(out, ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert sq == pytest.approx(sum(float((g.astype(np.float64) ** 2).sum()) for g in ref), rel=1e-4)


@pytest.mark.parametrize("renorm", [False, True])
def test_adam_rows_matches_torch_adam(renorm: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    p_ref = torch.nn.Parameter(torch.randn(6, 5, generator=gen))
    p = p_ref.detach().clone().numpy()
    opt = torch.optim.Adam([p_ref], lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    m, v = np.zeros_like(p), np.zeros_like(p)
    for step in range(1, 6):
        g = torch.randn(6, 5, generator=gen)
        p_ref.grad = g * 0.5
        opt.step()
        if renorm:
            with torch.no_grad():
                p_ref /= p_ref.norm(dim=1, keepdim=True)
        adam_rows(p, g.numpy().copy(), m, v, 0.5, adam_consts(1e-2, 0.9, 0.999, 1e-8, step), renorm)
        np.testing.assert_allclose(p, p_ref.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m, opt.state[p_ref]["exp_avg"].numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("variant", ["topk", "batchtopk", "matryoshka_topk", "matryoshka_batchtopk"])
def test_compiled_steps_follow_the_autograd_stepper(variant: str) -> None:
    x = torch.randn(20 * 48, 16, generator=torch.Generator().manual_seed(4))
    cfg = SAEConfig(variant=variant, n_features=64, k=4, batch_size=48, seed=0, device="cpu",  # type: ignore[arg-type]
                    **({"prefixes": (16, 64)} if variant.startswith("matryoshka") else {}))
    states = []
    for kind in (Stepper, CompiledStepper):
        m = build_sae(16, cfg, torch.Generator().manual_seed(0))
        with torch.no_grad():  # latents 48.. get tiny positive pre-activations: dead, so AuxK runs
            m.W_enc[48:].mul_(1e-3)
            m.b_enc[48:] = 1e-3
        st = kind(m, cfg, total=20, dead_after=96)
        for step in range(20):
            st.step(x[step * 48:(step + 1) * 48], step)
        states.append({**{n: t.detach().clone() for n, t in m.state_dict().items()}, "since": st.since_fired})
    assert int((states[1]["since"] >= 96).sum()) > 0  # AuxK was active
    for name, want in states[0].items():
        torch.testing.assert_close(states[1][name], want, rtol=1e-4, atol=2e-5, msg=name)


_CACHE_RUN = """
import sys
import numpy as np
from models.sae.cpu_kernels import adam_consts, train_update
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 16)).astype(np.float32)
w = (rng.normal(size=(128, 16)) / 4).astype(np.float32)
cols = np.sort(np.argsort(-(x @ w.T), axis=1)[:, :4], axis=1)
vals = np.maximum(np.take_along_axis(x @ w.T, cols, 1), 0).astype(np.float32)
state = [tuple(np.zeros_like(a) if i else a.copy() for i in range(3))
         for a in (w, w / np.linalg.norm(w, axis=1, keepdims=True), np.zeros((1, 128), np.float32),
                   np.zeros((1, 16), np.float32))]
for step in (1, 2, 3):
    train_update(x, cols, vals, np.array([128]), cols[:8], vals[:8], 0.5, 1.0, *state,
                 adam_consts(1e-2, 0.9, 0.999, 1e-8, step))
np.save(sys.argv[1], np.concatenate([a.ravel() for t in state for a in t]))
"""


def test_freshly_compiled_and_cached_kernels_give_the_same_bits(tmp_path: Path) -> None:
    """A run must not depend on whether numba's disk cache was warm (FMA contraction once
    made the two differ in the last bit)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    root = Path(__file__).resolve().parents[3]
    outs = [tmp_path / "fresh.npy", tmp_path / "cached.npy"]
    for out in outs:  # the first run compiles into the empty cache, the second loads from it
        subprocess.run([sys.executable, "-c", _CACHE_RUN, str(out)], cwd=root, env=env, check=True)
    assert any((tmp_path / "cache").rglob("*.nbi"))
    np.testing.assert_array_equal(np.load(outs[0]), np.load(outs[1]))
