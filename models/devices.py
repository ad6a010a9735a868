"""Device and dtype resolution shared by every torch component (encoders, SAE training).

The run config says "auto" for both by default, so the same YAML runs on a laptop, a CPU
worker and a GPU node. The rules live here, in one place, so every encoder resolves them
the same way and `identity()` can record what was actually used (the dtype changes the
vectors slightly, so it is part of an embeddings artifact's version).

dtype "auto" rule:
- CUDA: bfloat16 when the GPU supports it (Ampere and later), else float32.
- CPU: bfloat16 only when the CPU has *native* bf16 instructions (AVX512-BF16 or AMX
  tiles, as reported by torch's own CPU feature probe). Without them PyTorch emulates
  bf16 matmuls, which is slower than float32, so float32 is the faster and exact choice.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def resolve_device(device: str) -> torch.device:
    """"auto" -> cuda when available, else cpu. An explicit "cuda" without a GPU is an
    error rather than a silent fallback: a GPU worker without a GPU is a deployment bug."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA device")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device '{device}'; expected 'auto', 'cpu' or 'cuda'")
    return torch.device(device)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bf16 natively (AVX512-BF16 or AMX).

    Uses torch's CPU feature probe (cpuinfo, the same one the inductor uses); falls back to
    the /proc/cpuinfo flags on torch builds that lack the private helpers.
    """
    probe = getattr(torch, "cpu", None)
    names = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    checks = [getattr(probe, n, None) for n in names]
    if all(callable(c) for c in checks):
        return any(bool(c()) for c in checks)  # type: ignore[misc]
    return _cpuinfo_flags() & {"avx512_bf16", "amx_bf16"} != set()


def _cpuinfo_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap reliable probe, so assume no native bf16
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """Map a config dtype ("auto" or an explicit name) to a torch dtype for `device`."""
    if dtype != "auto":
        if dtype not in _DTYPES:
            known = ", ".join(sorted(_DTYPES))
            raise ValueError(f"unknown dtype '{dtype}'; expected 'auto' or one of {known}")
        return _DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """"float32" for torch.float32: the stable spelling recorded in `identity()`."""
    return str(dtype).removeprefix("torch.")
