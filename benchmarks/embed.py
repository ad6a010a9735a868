"""Embedding throughput: our report-encoder path vs sentence-transformers, and Merlin's CT
preprocessing; optionally (on a GPU) Merlin and a 0.6B-shaped Qwen3 with random weights.

Text: the same 1,000 report-length texts (the demo's report writer), the same packaged
all-MiniLM-L6-v2, dtype and batch size, timed in the same process, alternating our
`MiniLMEncoder.encode` and `SentenceTransformer.encode(normalize_embeddings=True)` over
`--repeats` rounds; the best round of each gives `text_speed_ratio_vs_st` (ours / theirs;
> 1 means we are faster). CT: `--volumes` synthetic NIfTI CTs (512 x 512 x N at
0.7 x 0.7 x 2.5 mm, anisotropic like clinical scans) through load + Merlin preprocessing.

Prints one JSON line per measurement and a final {"summary": ...} line.
Usage: python benchmarks/embed.py [--texts 1000] [--batch-size 64] [--dtype float32]
       [--threads 1] [--repeats 3] [--volumes 4] [--gpu]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def emit(**row: Any) -> None:
    print(json.dumps(row), flush=True)


def report_texts(n: int, seed: int = 0) -> list[str]:
    from models.demo.reports import INCIDENTAL, PLANTED, StudyFacts, write_report

    rng = np.random.default_rng(seed)
    names = [*PLANTED, *INCIDENTAL]
    texts = []
    for _ in range(n):
        found = frozenset(str(x) for x in rng.choice(names, size=int(rng.integers(0, 4)), replace=False))
        facts = StudyFacts.sample(rng, found, bool(rng.random() < 0.1), bool(rng.random() < 0.7), None)
        texts.append(write_report(facts, rng))
    return texts


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_text(args: argparse.Namespace) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    from data_contracts.config import MiniLMConfig
    from models.encoders.text_minilm import MiniLMEncoder

    texts = report_texts(args.texts)
    ours = MiniLMEncoder(MiniLMConfig(device="cpu", dtype=args.dtype, batch_size=args.batch_size, max_length=256))
    st = SentenceTransformer(str(ours.model_dir), device="cpu", model_kwargs={"torch_dtype": ours.dtype})
    st.max_seq_length = 256
    ours.encode(texts[:8]), st.encode(texts[:8])  # warm-up: load, first-call allocations
    t_ours = t_st = float("inf")
    v_ours = v_st = None
    for _ in range(args.repeats):  # alternate, so machine load hits both alike
        t, v_ours = best_of(lambda: ours.encode(texts).vectors, 1)
        t_ours = min(t_ours, t)
        t, v_st = best_of(lambda: st.encode(texts, batch_size=args.batch_size, normalize_embeddings=True,
                                            convert_to_numpy=True), 1)
        t_st = min(t_st, t)
    cos = float(np.min(np.sum(np.asarray(v_ours) * np.asarray(v_st), axis=1)))
    tokens = [len(x) for x in ours._tokenizer(texts)["input_ids"]]
    row = {"bench": "text_minilm", "texts": len(texts), "mean_tokens": round(float(np.mean(tokens)), 1),
           "dtype": args.dtype, "batch_size": args.batch_size, "threads": args.threads,
           "ours_texts_per_s": round(len(texts) / t_ours, 2), "st_texts_per_s": round(len(texts) / t_st, 2),
           "text_speed_ratio_vs_st": round(t_st / t_ours, 3), "min_cosine_ours_vs_st": round(cos, 5)}
    emit(**row)
    return row


def synthetic_ct(path: Path, depth: int, seed: int) -> None:
    import nibabel as nib

    rng = np.random.default_rng(seed)
    hu = rng.normal(40.0, 30.0, size=(512, 512, depth)).astype(np.float32)
    yy, xx = np.mgrid[:512, :512]
    hu[((xx - 256) ** 2 + (yy - 256) ** 2) > 220**2] = -1000.0  # air around the body
    nib.save(nib.Nifti1Image(hu, np.diag([-0.7, -0.7, 2.5, 1.0])), path)  # LPS-like: reoriented


def bench_ct(args: argparse.Namespace) -> dict[str, Any]:
    from models.encoders.ct_preprocess import preprocess_path

    with tempfile.TemporaryDirectory() as d:
        paths = [Path(d) / f"ct{i}.nii.gz" for i in range(args.volumes)]
        for i, p in enumerate(paths):
            synthetic_ct(p, 120 + 10 * i, i)
        preprocess_path(str(paths[0]))  # warm-up: MONAI imports and transform construction
        t0 = time.perf_counter()
        shapes = {str(preprocess_path(str(p))[0].shape) for p in paths}  # type: ignore[union-attr]
        dt = time.perf_counter() - t0
    row = {"bench": "ct_preprocess_merlin", "volumes": args.volumes, "input": "512x512x(120..) NIfTI",
           "output_shapes": sorted(shapes), "threads": args.threads, "volumes_per_s": round(args.volumes / dt, 3)}
    emit(**row)
    return row


def _cuda_seconds(fn: Callable[[], Any], repeats: int = 3) -> float:
    with torch.inference_mode():
        fn()  # warm-up
        torch.cuda.synchronize()
        t, _ = best_of(lambda: (fn(), torch.cuda.synchronize()), repeats)
    return t


def bench_gpu_merlin() -> float:
    """Random-weight Merlin network, bf16, batch 2 of full-size volumes: volumes/s."""
    from models.encoders.merlin_net import I3ResNet

    net = I3ResNet().to("cuda", torch.bfloat16).eval()
    x = torch.rand(2, 1, 224, 224, 160, device="cuda", dtype=torch.bfloat16)
    rate = round(2 / _cuda_seconds(lambda: net(x)), 2)
    emit(bench="merlin_gpu_bf16", batch=2, volumes_per_s=rate)
    return rate


def bench_gpu_qwen3() -> float:
    """Random Qwen3 with Qwen3-Embedding-0.6B's shape, bf16, 32 texts x 256 tokens: texts/s."""
    from transformers import Qwen3Config, Qwen3Model

    cfg = Qwen3Config(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                      num_key_value_heads=8, head_dim=128, vocab_size=151669)
    model = Qwen3Model(cfg).to("cuda", torch.bfloat16).eval()
    ids = torch.randint(0, 150000, (32, 256), device="cuda")
    rate = round(32 / _cuda_seconds(lambda: model(input_ids=ids)), 1)
    emit(bench="qwen3_0.6b_shape_gpu_bf16", batch=32, tokens=256, texts_per_s=rate)
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--volumes", type=int, default=4)
    ap.add_argument("--gpu", action="store_true", help="also time Merlin and Qwen3 on CUDA (bf16)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    text = bench_text(args)
    ct = bench_ct(args)
    summary: dict[str, Any] = {"text_speed_ratio_vs_st": text["text_speed_ratio_vs_st"],
                               "ours_texts_per_s": text["ours_texts_per_s"],
                               "ct_preprocess_volumes_per_s": ct["volumes_per_s"]}
    if args.gpu and torch.cuda.is_available():
        summary.update(merlin_volumes_per_s=bench_gpu_merlin(), qwen3_texts_per_s=bench_gpu_qwen3())
    elif args.gpu:
        emit(bench="gpu", skipped="no CUDA device")
    emit(summary=summary)


if __name__ == "__main__":
    main()
