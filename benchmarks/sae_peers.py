"""Peer SAE trainers for benchmarks/sae_train.py, each driven the way its own trainer
drives it (defaults unless the benchmark passes lr or a schedule), behind one small interface:

    make(d, n_latents, k, lr, total_steps, schedule) -> object with .step(x) and
    .evaluate(x) -> (x_hat, fired (N,) bool, mean L0, decoder rows (N, d))

`schedule` (step -> learning-rate multiplier) replaces the peer's own schedule, so every
trainer can run the same warm-up fraction, decay and step count; None keeps the peer's
own (sparsify: 1,000 warm-up steps then linear decay to 0 over the run, as its trainer's
get_linear_schedule_with_warmup; dictionary_learning: 1,000 warm-up steps, then constant).

The packages' top-level modules import their LM-training stacks (datasets, nnsight, ...);
only the SAE modules are loaded here, by registering the package folder without running
its __init__.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


class PeerMissing(RuntimeError):
    pass


def _load(package: str, module: str) -> Any:
    if package not in sys.modules:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise PeerMissing(package)
        stub = types.ModuleType(package)
        stub.__path__ = list(spec.submodule_search_locations)
        sys.modules[package] = stub
    try:
        return importlib.import_module(f"{package}.{module}")
    except ImportError as e:
        raise PeerMissing(f"{package}: {e}") from e


Schedule = Callable[[int], float]


class SparsifyTopK:
    """sparsify's SparseCoder in its trainer's loop: b_dec at the first batch mean, loss
    FVU (+ AuxK, off by default), Adam, its learning-rate schedule (linear warm-up over
    `lr_warmup_steps`, then linear decay to 0 at the last step), parallel-gradient removal,
    unit-norm decoder."""

    def __init__(self, d: int, n: int, k: int, lr: float | None, total: int, schedule: Schedule | None) -> None:
        sc = _load("sparsify", "sparse_coder")
        cfg_mod = _load("sparsify", "config")
        torch.manual_seed(0)
        self.sae = sc.SparseCoder(d, cfg_mod.SparseCoderConfig(num_latents=n, k=k), device="cpu")
        lr = lr or 2e-4 / (n / 2**14) ** 0.5
        self.opt = torch.optim.Adam(self.sae.parameters(), lr=lr)
        if schedule is None:
            warm = min(cfg_mod.TrainConfig.__dataclass_fields__["lr_warmup_steps"].default, total - 1)

            def schedule(s: int) -> float:  # transformers' get_linear_schedule_with_warmup
                return s / warm if s < warm else max(0.0, (total - s) / max(1, total - warm))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, schedule)
        self.t = 0

    def step(self, x: torch.Tensor) -> None:
        if self.t == 0:
            self.sae.b_dec.data = x.mean(0)
        out = self.sae(x)
        out.fvu.backward()
        self.sae.remove_gradient_parallel_to_decoder_directions()
        self.opt.step()
        self.opt.zero_grad()
        self.sched.step()
        self.sae.set_decoder_norm_to_unit_norm()
        self.t += 1

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        out = self.sae(x)
        fired = np.zeros(self.sae.num_latents, bool)
        live = out.latent_acts > 0
        fired[out.latent_indices[live].numpy()] = True
        return (out.sae_out.numpy(), fired, float(live.sum(1).float().mean()),
                self.sae.W_dec.detach().numpy())


class DictionaryLearningTopK:
    """dictionary_learning's TopKTrainer, stepped with its own update()."""

    def __init__(self, d: int, n: int, k: int, lr: float | None, total: int, schedule: Schedule | None) -> None:
        mod = _load("dictionary_learning", "trainers.top_k")
        self.trainer = mod.TopKTrainer(steps=total, activation_dim=d, dict_size=n, k=k, layer=0,
                                       lm_name="planted", lr=lr, seed=0, device="cpu",
                                       warmup_steps=min(1000, total - 1))  # 1000 = its default
        if schedule is not None:
            self.trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(self.trainer.optimizer, schedule)
        self.t = 0

    def step(self, x: torch.Tensor) -> None:
        self.trainer.update(self.t, x)
        self.t += 1

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        ae = self.trainer.ae
        f = ae.encode(x)
        return (ae.decode(f).numpy(), (f > 0).any(0).numpy(), float((f > 0).sum(1).float().mean()),
                ae.decoder.weight.detach().T.numpy())


PEERS: dict[str, Callable[..., Any]] = {
    "sparsify_topk": SparsifyTopK,
    "dictionary_learning_topk": DictionaryLearningTopK,
}
