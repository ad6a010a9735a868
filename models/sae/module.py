"""Sparse autoencoder module: TopK, BatchTopK and Matryoshka over either, one design.

    xn = (x - x_mean) / x_scale                       (normalisation, stored as buffers)
    pre = W_enc (xn - b_dec) + b_enc                  (encoder pre-bias)
    f = select(relu(pre))                             (TopK per sample / BatchTopK per batch)
    xn_hat = W_dec^T f + b_dec                        (decoder rows unit-norm)

Selection runs on the dense pre-activations without autograd; the selected values are then
recomputed as gathered dot products, so the backward pass of both encoder and decoder
touches only the selected (sample, latent) pairs: O(B k d) instead of the O(B N d) a dense
backward costs. The encoder weight is stored (N, d) like the decoder so both are row-gathered.

BatchTopK keeps the k*B largest activations of a batch during training and learns a
threshold (running mean of the smallest kept activation); at inference every activation
above the threshold is kept, so a sample's code does not depend on its batch.

Matryoshka: latents are ordered and nested prefixes (e.g. 128 < 512 < 2048 < 8192) must
each reconstruct the input alone; training averages the prefixes' losses so early latents
carry broad concepts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from data_contracts.config import SAEConfig
from models.sae.kernels import Decode, EncodeValues, Workspace, blocked_topk


@dataclass(frozen=True)
class SparseCode:
    """Selected latents of B rows, padded to a common width W: latent ids `cols` (B, W) and
    values `vals` (B, W) >= 0; padding has value 0 (TopK: W = k, no padding)."""

    cols: torch.Tensor
    vals: torch.Tensor

    @property
    def n_rows(self) -> int:
        return int(self.cols.shape[0])

    def dense(self, n_features: int) -> torch.Tensor:
        out = torch.zeros(self.n_rows, n_features, dtype=self.vals.dtype, device=self.vals.device)
        return out.scatter_add_(1, self.cols, self.vals)


class SparseAutoencoder(nn.Module):
    """One module for every variant; `variant` and `prefixes` only change selection and loss."""

    x_mean: torch.Tensor
    x_scale: torch.Tensor
    threshold: torch.Tensor

    def __init__(
        self,
        d_in: int,
        n_features: int,
        k: int,
        selection: str = "topk",
        prefixes: tuple[int, ...] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if selection not in ("topk", "batchtopk"):
            raise ValueError(f"selection must be 'topk' or 'batchtopk', got {selection!r}")
        self.d_in, self.n_features, self.k, self.selection = d_in, n_features, k, selection
        self.prefixes = tuple(prefixes) if prefixes else (n_features,)
        if list(self.prefixes) != sorted(set(self.prefixes)) or self.prefixes[-1] != n_features:
            raise ValueError(f"prefixes must increase strictly and end at n_features, got {self.prefixes}")
        w = torch.randn(n_features, d_in, generator=generator)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w.clone())  # (N, d): row i is latent i's direction
        self.W_enc = nn.Parameter(w.clone())  # (N, d): the decoder transpose, stored row-wise
        self.b_enc = nn.Parameter(torch.zeros(n_features))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("x_mean", torch.zeros(d_in))
        self.register_buffer("x_scale", torch.ones(d_in))
        # BatchTopK inference threshold; -1 = not learned yet (falls back to TopK).
        self.register_buffer("threshold", torch.tensor(-1.0))
        # Set by the trainer: reused buffers, weight gradients summed into .grad directly.
        self.workspace: Workspace | None = None

    # ------------------------------------------------------------ encoding
    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.x_mean) / self.x_scale

    def pre_acts(self, xn: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Dense pre-activations (B, N) before ReLU, no autograd. `dtype` bfloat16 runs the
        matmul in bf16 (AMX / tensor cores) for selection only; the result is fp32 either way."""
        with torch.no_grad():
            w, b, xc = self.W_enc, self.b_enc, xn - self.b_dec
            ws = self.workspace
            shape = (xn.shape[0], self.n_features)
            out = ws.get("pre", shape, w) if ws is not None else torch.empty(shape, dtype=w.dtype, device=w.device)
            if dtype == torch.float32:
                return torch.addmm(b, xc, w.t(), out=out)
            wl = ws.get("w_enc_low", tuple(w.shape), w, dtype).copy_(w) if ws is not None else w.to(dtype)
            low = torch.mm(xc.to(dtype), wl.t())
            return torch.add(low, b, out=out)

    @torch.no_grad()
    def select(self, pre: torch.Tensor, training: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Kept latents as padded ids (B, W), sorted per row, and a validity mask (None: all
        valid). TopK per row; BatchTopK over the batch when training, by the learned
        threshold at inference."""
        b = pre.shape[0]
        if self.selection == "topk" or (not training and float(self.threshold) < 0):
            return blocked_topk(pre, min(self.k, pre.shape[1])).sort(dim=-1).values, None
        if training:
            flat = blocked_topk(pre.reshape(1, -1), min(self.k * b, pre.numel()))[0].sort().values
        else:
            flat = torch.nonzero(pre.reshape(-1) > self.threshold).squeeze(1)
        return pad_rows(flat // self.n_features, flat % self.n_features, b)

    def values(self, xn: torch.Tensor, pre: torch.Tensor, cols: torch.Tensor,
               valid: torch.Tensor | None = None, recompute: bool = False) -> torch.Tensor:
        """relu(pre-activation) of the selected latents (0 where not valid), differentiable;
        gradients reach only the selected encoder rows. `recompute`: exact fp32 dot products
        instead of reading `pre` (which came from a bf16 matmul)."""
        if not recompute:
            pre_sel = pre.gather(1, cols)
        else:
            with torch.no_grad():
                b, w = cols.shape
                rows = self.W_enc.index_select(0, cols.reshape(-1)).view(b, w, -1)
                pre_sel = torch.bmm(rows, (xn - self.b_dec).unsqueeze(2)).squeeze(2) + self.b_enc[cols]
        if valid is not None:
            pre_sel = pre_sel.masked_fill(~valid, 0.0)
        vals: torch.Tensor = EncodeValues.apply(pre_sel, xn, cols, self.W_enc, self.b_enc, self.b_dec,
                                                 self.workspace)
        return vals

    def encode_with_pre(self, xn: torch.Tensor, training: bool = False,
                        dtype: torch.dtype = torch.float32) -> tuple[SparseCode, torch.Tensor]:
        """The code and the dense pre-activations it was selected from (the trainer's AuxK
        reuses them). Selected values are recomputed in fp32 when `dtype` is not fp32."""
        pre = self.pre_acts(xn, dtype)
        cols, valid = self.select(pre, training)
        return SparseCode(cols, self.values(xn, pre, cols, valid, recompute=dtype != torch.float32)), pre

    def encode_code(self, xn: torch.Tensor, training: bool = False,
                    dtype: torch.dtype = torch.float32) -> SparseCode:
        return self.encode_with_pre(xn, training, dtype)[0]

    # ------------------------------------------------------------ decoding
    def decode_weights(self, weights: torch.Tensor, cols: torch.Tensor, project: bool = False,
                       tag: str = "main") -> torch.Tensor:
        """(B, P, d): sum_j weights[b, p, j] W_dec[cols[b, j]], without b_dec. `tag` names
        the workspace buffers of one decode in a step (main, auxk)."""
        out: torch.Tensor = Decode.apply(weights, cols, self.W_dec, project, self.workspace, tag)
        return out

    def decode(self, code: SparseCode, project: bool = False) -> torch.Tensor:
        return self.decode_weights(code.vals.unsqueeze(1), code.cols, project)[:, 0] + self.b_dec

    def decode_prefixes(self, code: SparseCode, project: bool = False) -> torch.Tensor:
        """(P, B, d) reconstructions using only latents below each prefix boundary."""
        if len(self.prefixes) == 1:
            return self.decode(code, project).unsqueeze(0)
        bounds = torch.tensor(self.prefixes, device=code.cols.device).view(1, -1, 1)
        weights = code.vals.unsqueeze(1) * (code.cols.unsqueeze(1) < bounds)  # (B, P, W)
        return self.decode_weights(weights, code.cols, project).transpose(0, 1) + self.b_dec

    def forward(self, xn: torch.Tensor) -> tuple[torch.Tensor, SparseCode]:
        code = self.encode_code(xn, self.training)
        return self.decode(code), code

    # ------------------------------------------------------------ decoder geometry
    @torch.no_grad()
    def renorm_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))


def pad_rows(rows: torch.Tensor, cols: torch.Tensor, n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates sorted by row -> padded (n_rows, W) ids and validity mask, W = the most
    any row has (at least 1)."""
    counts = torch.bincount(rows, minlength=n_rows)
    width = max(1, int(counts.max())) if n_rows else 1
    pos = torch.arange(len(rows), device=rows.device) - (torch.cumsum(counts, 0) - counts)[rows]
    out = torch.zeros(n_rows, width, dtype=torch.long, device=rows.device)
    valid = torch.zeros(n_rows, width, dtype=torch.bool, device=rows.device)
    out[rows, pos], valid[rows, pos] = cols, True
    return out, valid


def default_prefixes(n_features: int, k: int, levels: int = 4, ratio: int = 4) -> tuple[int, ...]:
    """Nested prefixes N, N/4, N/16, ... (at most `levels`, none smaller than 2k): for
    N = 8192 this is the seed's (128, 512, 2048, 8192)."""
    out = [n_features]
    while len(out) < levels and out[-1] // ratio >= 2 * k:
        out.append(out[-1] // ratio)
    return tuple(sorted(out))


def build_sae(d_in: int, cfg: SAEConfig, generator: torch.Generator | None = None) -> SparseAutoencoder:
    """The module a config describes."""
    matryoshka = cfg.variant.startswith("matryoshka")
    selection = "batchtopk" if cfg.variant.endswith("batchtopk") else "topk"
    prefixes = (cfg.prefixes or default_prefixes(cfg.n_features, cfg.k)) if matryoshka else None
    return SparseAutoencoder(d_in, cfg.n_features, cfg.k, selection, prefixes, generator)
