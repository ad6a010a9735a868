"""CPU TopK selection: group top-k and the certified bf16 selection against float64
references; the error bound it relies on is checked entry by entry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_contracts.config import SAEConfig
from models.sae.cpu_select import REL, Bf16Selector, select_rows
from models.sae.cpu_step import CompiledStepper
from models.sae.module import build_sae


def _problem(seed: int, b: int, d: int, n: int, w_scale: float) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xc = torch.from_numpy(rng.normal(size=(b, d)).astype(np.float32))
    w = (rng.normal(size=(n, d)) * w_scale / np.sqrt(d)).astype(np.float32)
    bias = (rng.normal(size=n) * 0.3 * w_scale).astype(np.float32)
    return xc, w, bias


def _exact_topk(xc: torch.Tensor, w: np.ndarray, bias: np.ndarray, k: int) -> np.ndarray:
    pre = xc.numpy().astype(np.float64) @ w.T.astype(np.float64) + bias
    return np.sort(np.argsort(-pre, axis=1, kind="stable")[:, :k], axis=1)


@pytest.mark.parametrize(("b", "d", "n", "k", "w_scale"), [
    (96, 64, 512, 8, 1.0), (64, 32, 256, 4, 40.0), (40, 48, 1024, 16, 1e-3), (16, 16, 4096, 20, 3.0)])
def test_bf16_selection_is_the_exact_top_k(b: int, d: int, n: int, k: int, w_scale: float) -> None:
    xc, w, bias = _problem(n + k, b, d, n, w_scale)
    sel = Bf16Selector(n, d)
    sel.refresh(w)
    cols, vals, _ = sel.select(xc, w, bias, k)
    np.testing.assert_array_equal(cols, _exact_topk(xc, w, bias, k))
    pre = (xc.numpy() @ w.T + bias).astype(np.float32)
    np.testing.assert_allclose(vals, np.maximum(np.take_along_axis(pre, cols, 1), 0), rtol=1e-5, atol=1e-6 * w_scale)
    assert k <= sel.scored / sel.rows < n / 4  # re-scored candidates: more than k, far fewer than all


def test_error_bound_holds_entrywise() -> None:
    xc, w, bias = _problem(0, 128, 256, 2048, 2.0)
    sel = Bf16Selector(2048, 256)
    sel.refresh(w)
    _, _, approx = sel.select(xc, w, bias, 8)
    base = sel.error_base(xc.numpy(), xc.to(torch.bfloat16).float().numpy(), float(np.abs(bias).max()))
    err = np.abs(approx - (xc.numpy().astype(np.float64) @ w.T.astype(np.float64) + bias))
    bound = base[:, None] + REL * np.abs(approx)
    assert (err <= bound).all()
    assert (err / bound).max() > 0.02  # and it is not vacuous


def test_rows_with_too_many_candidates_are_rescored_whole() -> None:
    xc, w, bias = _problem(5, 8, 16, 256, 1.0)
    sel = Bf16Selector(256, 16)
    sel.refresh(w)
    sel.w_err = 1e3  # a bound that admits every latent overflows the candidate buffer
    cols, _, _ = sel.select(xc, w, bias, 4)
    np.testing.assert_array_equal(cols, _exact_topk(xc, w, bias, 4))
    assert sel.scored == 8 * 256


def test_select_rows_falls_back_where_groups_do_not_fit() -> None:
    pre = np.random.default_rng(2).normal(size=(5, 100)).astype(np.float32)  # 100 is no multiple of 16
    cols, _ = select_rows(pre, 7)
    np.testing.assert_array_equal(cols, np.sort(np.argsort(-pre, axis=1)[:, :7], axis=1))


def test_certified_pick_among_columns_is_exact() -> None:
    xc, w, bias = _problem(9, 80, 64, 512, 2.0)
    sel = Bf16Selector(512, 64)
    sel.refresh(w)
    sel.select(xc, w, bias, 8)
    columns = np.flatnonzero(np.random.default_rng(1).random(512) < 0.4)
    cols, vals = sel.select_among(columns, 64, 12, w, bias)
    pre = xc.numpy().astype(np.float64) @ w.T.astype(np.float64) + bias
    sub = pre[:64, columns]
    ref = np.sort(columns[np.argsort(-sub, axis=1)[:, :12]], axis=1)
    np.testing.assert_array_equal(cols, ref)
    np.testing.assert_allclose(vals, np.maximum(np.take_along_axis(pre[:64], ref, 1), 0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["topk", "matryoshka_topk"])
def test_compiled_step_with_bf16_selection_follows_the_fp32_one(variant: str) -> None:
    """The same exact selections (main and AuxK), so the same training."""
    x = torch.randn(12 * 64, 32, generator=torch.Generator().manual_seed(7))
    states = []
    for dtype in ("float32", "bfloat16"):
        cfg = SAEConfig(variant=variant, n_features=256, k=4, batch_size=64, seed=0, device="cpu",  # type: ignore[arg-type]
                        dtype=dtype)
        m = build_sae(32, cfg, torch.Generator().manual_seed(0))
        st = CompiledStepper(m, cfg, total=12, dead_after=128)
        assert (st.low is not None) == (dtype == "bfloat16")
        for step in range(12):
            st.step(x[step * 64:(step + 1) * 64], step)
        states.append({n: t.detach().clone() for n, t in m.state_dict().items()} | {"since": st.since_fired})
    assert int((states[1]["since"] >= 128).sum()) > 0  # AuxK ran
    for name, want in states[0].items():
        torch.testing.assert_close(states[1][name], want, rtol=1e-4, atol=2e-5, msg=name)
