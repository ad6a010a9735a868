"""TopK selection on CPU: fp32 matmul + exact group top-k vs the certified bf16 selection
(bf16 matmul, candidates re-scored in fp32), same rows and weights, one thread.

    .venv/bin/python benchmarks/sae_select.py [--repeats 20]

One JSON line per shape: ms per batch for each path (the bf16 one includes refreshing the
bf16 copy of W_enc, as a training step does), their ratio, re-scored dot products per row,
and whether both selected the same latents. Weights are scaled like a trained encoder's
(unit-norm rows), inputs like normalised embeddings (unit variance per dimension).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.sae.cpu_select import Bf16Selector, amx_bf16_available, select_rows

SHAPES = [(256, 256, 2048, 8), (256, 256, 8192, 20), (256, 256, 8192, 40), (256, 1024, 8192, 40)]


def per_call_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    t0 = time.thread_time()
    for _ in range(repeats):
        fn()
    return (time.thread_time() - t0) / repeats * 1e3


def measure(b: int, d: int, n: int, k: int, rng: np.random.Generator, repeats: int) -> dict[str, object]:
    x = torch.from_numpy(rng.normal(size=(b, d)).astype(np.float32))
    w = rng.normal(size=(n, d)).astype(np.float32)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    bias = (0.1 * rng.normal(size=n)).astype(np.float32)
    wt, bt = torch.from_numpy(w), torch.from_numpy(bias)
    sel = Bf16Selector(n, d)

    def fp32() -> tuple[np.ndarray, np.ndarray]:
        return select_rows(torch.addmm(bt, x, wt.t()).numpy(), k)

    def bf16() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sel.refresh(w)
        return sel.select(x, w, bias, k)

    same = bool((fp32()[0] == bf16()[0]).all())
    t32, t16 = per_call_ms(fp32, repeats), per_call_ms(bf16, repeats)
    return {"b": b, "d": d, "n": n, "k": k, "fp32_ms": round(t32, 3), "bf16_certified_ms": round(t16, 3),
            "speedup": round(t32 / t16, 2), "rescored_per_row": round(sel.scored / sel.rows, 1),
            "same_selection": same, "amx": amx_bf16_available()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        print(json.dumps(measure(*shape, rng, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
