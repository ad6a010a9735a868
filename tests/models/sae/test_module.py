"""The SAE module: selection, sparse kernels against a dense autograd reference, decoder
geometry, BatchTopK inference threshold."""

from __future__ import annotations

import pytest
import torch

from data_contracts.config import SAEConfig
from models.sae.kernels import Workspace, blocked_topk, topk_indices
from models.sae.module import SparseAutoencoder, SparseCode, build_sae, default_prefixes


def _model(variant: str = "topk", n: int = 64, k: int = 4, d: int = 8, seed: int = 0) -> SparseAutoencoder:
    prefixes = (16, 32, n) if variant.startswith("matryoshka") else None
    m = build_sae(d, SAEConfig(variant=variant, n_features=n, k=k, prefixes=prefixes),  # type: ignore[arg-type]
                  torch.Generator().manual_seed(seed))
    with torch.no_grad():
        m.b_dec.normal_(generator=torch.Generator().manual_seed(seed + 1))
        m.b_enc.normal_(0, 0.1, generator=torch.Generator().manual_seed(seed + 2))
    return m


def test_blocked_topk_matches_topk() -> None:
    scores = torch.randn(50, 2048, generator=torch.Generator().manual_seed(0))
    got = blocked_topk(scores, 8).sort(dim=-1).values
    want = scores.topk(8, dim=-1).indices.sort(dim=-1).values
    assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("rows", "n", "k"), [(64, 1024, 32), (3, 40, 40), (1, 4096, 512)])
def test_topk_indices_equals_torch_topk(dtype: torch.dtype, rows: int, n: int, k: int) -> None:
    """The numpy introselect path (and the torch fallback at k = n) picks the same set as
    torch.topk; scores are distinct per row, so the set is unique."""
    gens = [torch.Generator().manual_seed(r) for r in range(rows)]
    scores = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(dtype) - n / 2
    got = topk_indices(scores, k)
    assert got.dtype == torch.long and got.shape == (rows, k)
    assert torch.equal(got.sort(dim=-1).values, scores.topk(k, dim=-1).indices.sort(dim=-1).values)


def test_topk_is_exact() -> None:
    m = _model()
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(3))
    code = m.encode_code(x)
    ref = torch.relu((x - m.b_dec) @ m.W_enc.t() + m.b_enc)
    ref_vals, ref_idx = ref.topk(4, dim=-1)
    assert torch.equal(code.cols, ref_idx.sort(dim=-1).values)
    assert torch.allclose(code.vals.sort(dim=-1).values, ref_vals.sort(dim=-1).values, atol=1e-6)
    dense = torch.zeros(5, 64).scatter(1, ref_idx, ref_vals)
    assert torch.allclose(m.decode(code), dense @ m.W_dec + m.b_dec, atol=1e-5)


def _dense_loss(m: SparseAutoencoder, x: torch.Tensor, keep: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The same loss written densely with plain autograd (Matryoshka: mean over prefixes)."""
    p = {n: t.detach().clone().requires_grad_(True) for n, t in m.named_parameters()}
    f = torch.relu((x - p["b_dec"]) @ p["W_enc"].t() + p["b_enc"]) * keep
    losses = [((f[:, :q] @ p["W_dec"][:q] + p["b_dec"]) - x).pow(2).sum(-1).mean() for q in m.prefixes]
    return torch.stack(losses).mean(), p


@pytest.mark.parametrize("variant", ["topk", "batchtopk", "matryoshka_topk", "matryoshka_batchtopk"])
@pytest.mark.parametrize("workspace", [False, True])
def test_sparse_gradients_match_dense_reference(variant: str, workspace: bool) -> None:
    m = _model(variant)
    m.workspace = Workspace() if workspace else None
    x = torch.randn(10, 8, generator=torch.Generator().manual_seed(4))
    pre = m.pre_acts(x)
    cols, valid = m.select(pre, training=True)
    code = SparseCode(cols, m.values(x, pre, cols, valid))
    loss = (m.decode_prefixes(code) - x).pow(2).sum(-1).mean()
    loss.backward()
    keep = code.dense(64).detach() > 0  # selected and positive (relu zeroes the rest anyway)
    ref, params = _dense_loss(m, x, keep)
    ref.backward()
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    for name, param in m.named_parameters():
        assert param.grad is not None and params[name].grad is not None
        assert torch.allclose(param.grad, params[name].grad, atol=1e-5), name


@torch.no_grad()
def _project_decoder_grad(m: SparseAutoencoder) -> None:
    """Reference: remove the gradient component parallel to each unit decoder row, so a
    step changes direction, not norm (which renormalisation would undo anyway)."""
    if m.W_dec.grad is None:
        return
    w, g = m.W_dec.data, m.W_dec.grad
    g.sub_((g * w).sum(dim=1, keepdim=True) * w)


def test_projected_decoder_gradient_equals_dense_projection() -> None:
    m = _model()
    x = torch.randn(12, 8, generator=torch.Generator().manual_seed(5))
    code = m.encode_code(x, training=True)
    (m.decode(code, project=True) - x).pow(2).sum().backward()
    projected = m.W_dec.grad.clone()  # type: ignore[union-attr]
    m.W_dec.grad = None
    code = m.encode_code(x, training=True)
    (m.decode(code, project=False) - x).pow(2).sum().backward()
    _project_decoder_grad(m)
    assert torch.allclose(projected, m.W_dec.grad, atol=1e-5)  # type: ignore[arg-type]
    assert torch.allclose((projected * m.W_dec).sum(1), torch.zeros(64), atol=1e-5)


def test_renorm_restores_unit_rows() -> None:
    m = _model()
    with torch.no_grad():
        m.W_dec.mul_(torch.linspace(0.5, 3.0, 64).unsqueeze(1))
    m.renorm_decoder()
    assert torch.allclose(m.W_dec.norm(dim=1), torch.ones(64), atol=1e-6)


def test_batchtopk_uses_learned_threshold_at_inference() -> None:
    m = _model("batchtopk")
    x = torch.randn(30, 8, generator=torch.Generator().manual_seed(6))
    train_code = m.encode_code(x, training=True)
    assert int((train_code.vals > 0).sum()) <= 4 * 30  # k per row on average, over the batch
    m.threshold.fill_(0.05)
    code = m.encode_code(x, training=False)
    pre = torch.relu((x - m.b_dec) @ m.W_enc.t() + m.b_enc)
    want = pre * (pre > 0.05)
    assert torch.allclose(code.dense(64), want, atol=1e-6)
    counts = (want > 0).sum(1)
    assert counts.min() != counts.max()  # per-row counts vary: no TopK at inference
    m.threshold.fill_(-1.0)  # not learned yet: TopK fallback
    assert int((m.encode_code(x).vals > 0).sum(1).max()) <= 4


def test_default_prefixes_follow_the_seed() -> None:
    assert default_prefixes(8192, 20) == (128, 512, 2048, 8192)
    assert default_prefixes(64, 8) == (16, 64)
    with pytest.raises(ValueError, match="prefixes"):
        SparseAutoencoder(8, 64, 4, prefixes=(32, 16, 64))
