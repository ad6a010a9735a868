"""SAE quality metrics, defined once and accumulated over batches (so they stream).

All metrics are computed in the SAE's normalised input space, over the rows given:
    fvu        = sum_i |x_i - x_hat_i|^2 / sum_i |x_i - mean(x)|^2
    mse        = sum_i |x_i - x_hat_i|^2 / (n d)
    l0         = mean number of latents with a positive activation per row
    dead_frac  = fraction of latents that are positive on no row
    fvu_prefix_<m> (Matryoshka) = fvu when decoding with latents [0, m) only
    freq_log10_<b> = fraction of latents whose firing frequency f has floor(log10 f) = b
                     (b = -7 collects f < 1e-6 but > 0; dead latents are in dead_frac)
"""

from __future__ import annotations

import numpy as np
import torch

from models.sae.module import SparseAutoencoder, SparseCode

HIST_LOW = -7  # lowest log10-frequency bin


class MetricAccumulator:
    def __init__(self, model: SparseAutoencoder) -> None:
        self.model = model
        n_p, d = len(model.prefixes), model.d_in
        self.n = 0
        self.sum_x = torch.zeros(d, dtype=torch.float64)
        self.sum_x2 = 0.0
        self.sse = torch.zeros(n_p, dtype=torch.float64)
        self.nnz = 0
        self.fires = torch.zeros(model.n_features, dtype=torch.int64)

    def add(self, xn: torch.Tensor, code: SparseCode) -> None:
        """Fold in one batch of normalised inputs and its code."""
        recon = self.model.decode_prefixes(code).double()  # (P, B, d)
        x = xn.double()
        self.sse += (recon - x).pow(2).sum(dim=(1, 2)).cpu()
        self.n += x.shape[0]
        self.sum_x += x.sum(0).cpu()
        self.sum_x2 += float(x.pow(2).sum())
        live = code.vals > 0
        self.nnz += int(live.sum())
        self.fires += torch.bincount(code.cols[live].cpu(), minlength=self.model.n_features)

    def result(self) -> dict[str, float]:
        if self.n == 0:
            return {}
        total = max(self.sum_x2 - float(self.sum_x.pow(2).sum()) / self.n, 1e-12)
        out = {
            "fvu": float(self.sse[-1]) / total,
            "mse": float(self.sse[-1]) / (self.n * self.model.d_in),
            "l0": self.nnz / self.n,
            "dead_frac": float((self.fires == 0).double().mean()),
        }
        if len(self.model.prefixes) > 1:
            out |= {f"fvu_prefix_{m}": float(s) / total for m, s in zip(self.model.prefixes, self.sse, strict=True)}
        return out | firing_histogram(self.fires.numpy(), self.n)


def firing_histogram(fires: np.ndarray, n_rows: int) -> dict[str, float]:
    """Fraction of latents per log10 firing-frequency bin (see module docstring)."""
    freq = fires[fires > 0] / max(n_rows, 1)
    bins = np.clip(np.floor(np.log10(freq)), HIST_LOW, 0).astype(int) if len(freq) else np.zeros(0, int)
    counts = np.bincount(bins - HIST_LOW, minlength=1 - HIST_LOW)
    return {f"freq_log10_{b}": float(c) / len(fires) for b, c in zip(range(HIST_LOW, 1), counts, strict=True)}


@torch.no_grad()
def evaluate_batches(model: SparseAutoencoder, batches: object) -> dict[str, float]:
    """Metrics over an iterable of raw (un-normalised) numpy batches."""
    acc = MetricAccumulator(model)
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    for x in batches:  # type: ignore[attr-defined]
        xn = model.normalise(torch.as_tensor(x, dtype=torch.float32, device=dev))
        acc.add(xn, model.encode_code(xn, training=False))
    model.train(was)
    return acc.result()


def evaluate(model: SparseAutoencoder, x: np.ndarray, batch_size: int = 4096) -> dict[str, float]:
    """Metrics of `model` on the rows of `x` (raw inputs)."""
    return evaluate_batches(model, (x[s : s + batch_size] for s in range(0, len(x), batch_size)))

