"""SAE training loop: Adam with warm-up and cosine decay, gradient clipping, unit-norm
decoder with projected gradients, AuxK on dead latents, resumable from a training state.

Determinism: every random draw comes from a generator seeded by `cfg.seed` (init) or by
(seed, epoch) (batch order), never from torch's global RNG, so runs are bit-identical on
CPU and sweep runs may train side by side in threads.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from data_contracts.config import SAEConfig
from models.devices import resolve_device, resolve_dtype
from models.sae.checkpoint import TrainState, load_state, save_state
from models.sae.cpu_step import CompiledStepper, compiled_step_supported
from models.sae.data import ArraySource, EmbeddingSource, heldout_mask, iter_batches, iter_rows, sample_rows
from models.sae.metrics import evaluate_batches
from models.sae.module import SparseAutoencoder, build_sae
from models.sae.step import Stepper

DEAD_CAP_SAMPLES = 100_000  # see SAEConfig: dead = silent for min(one epoch, this) samples


@dataclass
class TrainResult:
    model: SparseAutoencoder
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # split -> name -> value
    samples_per_s: float = 0.0
    steps: int = 0


_THREADS_LOCK = threading.Lock()
_THREADS_USERS = [0, 0]  # active cpu_threads contexts, thread count before the first


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op threads (None: leave as is). The setting is
    process-wide and sweep runs train side by side in threads, so the count before the
    first context is restored when the last one exits."""
    if n is None:
        yield
        return
    with _THREADS_LOCK:
        if _THREADS_USERS[0] == 0:
            _THREADS_USERS[1] = torch.get_num_threads()
        _THREADS_USERS[0] += 1
        torch.set_num_threads(n)
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_USERS[0] -= 1
            if _THREADS_USERS[0] == 0:
                torch.set_num_threads(_THREADS_USERS[1])


def _threads_for(d_in: int, n_features: int, device: torch.device) -> int | None:
    # Small matrices gain nothing from a second thread and lose badly when the cores are
    # shared (measured here: 1.5 s with 1 thread vs 29 s with 2 on a loaded 2-core box).
    if device.type == "cpu" and d_in * n_features < (1 << 20):
        return 1
    return None


def train_clock(dev: torch.device) -> Callable[[], float]:
    """Seconds for throughput: this thread's CPU time when torch runs on one CPU thread
    (robust to other processes on a shared machine), else wall time (after a CUDA sync)."""
    if dev.type == "cpu" and torch.get_num_threads() == 1:
        return time.thread_time
    if dev.type == "cuda":

        def synced() -> float:
            torch.cuda.synchronize()
            return time.perf_counter()

        return synced
    return time.perf_counter


def select_dtype(cfg: SAEConfig, dev: torch.device) -> torch.dtype:
    """dtype of the torch step's dense selection matmul: bf16 when asked, or under 'auto' on a
    CUDA device with bf16; fp32 on CPU under 'auto'. (The compiled CPU step chooses its own,
    see models.sae.cpu_step.bf16_selection: its bf16 selection is certified exact.) Plain bf16
    selection picks slightly different latents: recomputing only the selected values in fp32
    gave recovered 0.976 vs 0.980 on the planted benchmark."""
    return torch.float32 if cfg.dtype == "auto" and dev.type == "cpu" else resolve_dtype(cfg.dtype, dev)


def geometric_median(x: torch.Tensor, iters: int = 100, eps: float = 1e-6) -> torch.Tensor:
    """Weiszfeld iterations from the mean: the point minimising the sum of distances."""
    y = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - y).norm(dim=1).clamp_min(eps)
        nxt = (w[:, None] * x).sum(0) / w.sum()
        if (nxt - y).norm() < eps * (1 + y.norm()):
            return nxt
        y = nxt
    return y


def init_model(source: EmbeddingSource, train_rows: np.ndarray, cfg: SAEConfig) -> SparseAutoencoder:
    """Module from config; normalisation from one pass over the training rows; b_dec at the
    geometric median of (up to) 4096 of them."""
    gen = torch.Generator().manual_seed(cfg.seed)
    model = build_sae(source.d_in, cfg, gen)
    n, s1, s2 = 0, np.zeros(source.d_in), 0.0
    for x in iter_rows(source, train_rows):
        x64 = x.astype(np.float64)
        n, s1, s2 = n + len(x), s1 + x64.sum(0), s2 + float((x64**2).sum())
    mean = s1 / max(n, 1)
    # One scale for all dims keeps the embedding geometry (cosines) intact; per-dim std
    # would inflate noise dimensions of hand-crafted features.
    var = max(s2 / max(n, 1) - float(mean @ mean), 0.0) / source.d_in
    with torch.no_grad():
        model.x_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        model.x_scale.fill_(math.sqrt(var) + 1e-8)
        sample = model.normalise(torch.as_tensor(sample_rows(source, train_rows, 4096)))
        model.b_dec.copy_(geometric_median(sample))
    return model


def dead_after_samples(cfg: SAEConfig, n_train: int) -> int:
    return cfg.dead_after_samples or max(1, min(n_train, DEAD_CAP_SAMPLES))


def train_sae(
    x: np.ndarray | EmbeddingSource,
    cfg: SAEConfig,
    progress: Callable[[int, int], None] | None = None,
    state_dir: Path | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train on the rows of `x` (array or streamed source); metrics on train and held-out.

    With `state_dir`, training resumes from the state saved there (if any) and saves its
    state when it stops; `stop_after` stops after that many steps in total (for resuming).
    """
    source = ArraySource(x, cfg.chunk_rows) if isinstance(x, np.ndarray) else x
    if source.n_rows < 2 or source.d_in < 1:
        raise ValueError(f"need at least 2 rows of embeddings to train an SAE, got {source.n_rows}")
    dev = resolve_device(cfg.device)
    with cpu_threads(_threads_for(source.d_in, cfg.n_features, dev)):
        return _train(source, cfg, dev, progress, state_dir, stop_after)


def _train(source: EmbeddingSource, cfg: SAEConfig, dev: torch.device,
           progress: Callable[[int, int], None] | None, state_dir: Path | None,
           stop_after: int | None) -> TrainResult:
    held = heldout_mask(source.n_rows, cfg.heldout_frac, cfg.seed)
    train_rows = ~held
    n_train = int(train_rows.sum())
    per_epoch = math.ceil(n_train / cfg.batch_size)
    total = per_epoch * cfg.epochs
    model = init_model(source, train_rows, cfg).to(dev)
    dtype = select_dtype(cfg, dev)
    compiled = cfg.kernels != "torch" and compiled_step_supported(dev, cfg, model.selection)
    kind = CompiledStepper if compiled else Stepper
    stepper = kind(model, cfg, total, dead_after_samples(cfg, n_train), dtype)
    state = TrainState(step=0)
    if state_dir is not None and (state_dir / "train_state.json").is_file():
        state = load_state(state_dir, model, stepper.opt, stepper.since_fired)
    end = total if stop_after is None else min(total, stop_after)
    clock = train_clock(dev)
    t0, seen = clock(), 0
    while state.step < end:
        epoch, skip = divmod(state.step, per_epoch)
        for i, xb in enumerate(iter_batches(source, train_rows, cfg.batch_size, cfg.seed, epoch)):
            if i < skip:
                continue
            stepper.step(model.normalise(torch.from_numpy(xb).to(dev)), state.step)
            state.step, seen = state.step + 1, seen + len(xb)
            if state.step >= end:
                break
        if progress is not None:
            progress(state.step, total)
    rate = seen / max(clock() - t0, 1e-9)
    if state_dir is not None:
        save_state(state_dir, state, model, stepper.opt, stepper.since_fired)
    model.workspace = None
    model.eval()
    metrics = {
        "train": evaluate_batches(model, iter_rows(source, train_rows)),
        "heldout": evaluate_batches(model, iter_rows(source, held)),
    }
    return TrainResult(model.cpu(), {k: v for k, v in metrics.items() if v}, rate, state.step)
