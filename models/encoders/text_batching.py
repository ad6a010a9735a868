"""What the transformer report encoders (MiniLM, Qwen3-Embedding) share: which reports can
be embedded, and batched inference over token-length-sorted batches.

Sorting by token length keeps padding (wasted compute) small; the longest batch runs
first so an out-of-memory error shows up at once rather than an hour in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.devices import resolve_device, resolve_dtype
from models.encoders.base import EncodeResult, ProgressFn, is_missing, is_null

EMPTY_REPORT = "empty report"
# (last_hidden_state, attention_mask) -> (batch, dim) float32 unit vectors
PoolFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def resolve_text_model(model_dir: Path, device: str, dtype: str) -> tuple[torch.device, torch.dtype, int]:
    """(device, dtype, hidden size): the configured device and dtype resolved, the width
    read from the model folder's config.json, so no weights load before `encode`."""
    from transformers import AutoConfig

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    return dev, dt, int(AutoConfig.from_pretrained(model_dir, local_files_only=True).hidden_size)


def _dtype_kwarg(dtype: torch.dtype) -> dict[str, Any]:
    """transformers renamed `torch_dtype` to `dtype` in 4.56 (the old name warns in 5.x)."""
    import transformers
    from packaging.version import Version

    new = Version(transformers.__version__) >= Version("4.56")
    return {"dtype" if new else "torch_dtype": dtype}


def load_text_model(model_dir: Path, device: torch.device, dtype: torch.dtype, *, load_in_dtype: bool,
                    **tokenizer_kwargs: Any) -> tuple[Any, Any]:
    """(tokenizer, model in eval mode on `device`). `load_in_dtype` loads the weights
    straight into `dtype` (a large model in float32 may not fit in RAM); otherwise the
    model loads at its default dtype and is then cast to `dtype`."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, **tokenizer_kwargs)
    if load_in_dtype:
        model = AutoModel.from_pretrained(model_dir, local_files_only=True, **_dtype_kwarg(dtype)).to(device)
    else:
        model = AutoModel.from_pretrained(model_dir, local_files_only=True).to(device=device, dtype=dtype)
    return tok, model.eval()


def report_error(item: object) -> str | None:
    """Why a report cannot be embedded, or None when it can. Missing values arrive as
    None or float NaN from pandas; both count as an empty report."""
    if not (isinstance(item, str) or is_null(item)):
        return f"report is not text (got {type(item).__name__})"
    return EMPTY_REPORT if is_missing(item) else None


def split_reports(items: Sequence[object]) -> tuple[list[int], list[str], dict[int, str]]:
    """(positions of usable reports, their texts, {position: reason} for the rest)."""
    ok: list[int] = []
    texts: list[str] = []
    errors: dict[int, str] = {}
    for i, item in enumerate(items):
        reason = report_error(item)
        if reason is None:
            ok.append(i)
            texts.append(str(item))
        else:
            errors[i] = reason
    return ok, texts, errors


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Positions grouped into batches of similar length, longest first."""
    order = sorted(range(len(lengths)), key=lambda j: -lengths[j])
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def embed_token_ids(
    ids: list[list[int]],
    tokenizer: Any,
    model: Any,
    pool: PoolFn,
    out: np.ndarray,
    *,
    batch_size: int,
    device: torch.device,
    progress: ProgressFn | None = None,
) -> None:
    """Fill `out[j]` with the pooled vector of `ids[j]`. The tokenizer's padding side
    decides left/right padding; `pool` must handle either."""
    with torch.inference_mode():
        for idx in length_sorted_batches([len(x) for x in ids], batch_size):
            batch = tokenizer.pad({"input_ids": [ids[j] for j in idx]}, return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items()}
            hidden = model(**batch).last_hidden_state
            out[idx] = pool(hidden, batch["attention_mask"]).float().cpu().numpy()
            if progress is not None:
                progress(len(idx))


def encode_reports(
    items: Sequence[object], dim: int, embed: Callable[[list[str], np.ndarray], None]
) -> EncodeResult:
    """Run `embed(texts, out)` on the usable reports; the rest become per-item errors."""
    ok, texts, errors = split_reports(items)
    vectors = np.zeros((len(texts), dim), dtype=np.float32)
    if texts:
        embed(texts, vectors)
    return EncodeResult(vectors=vectors, ok=np.asarray(ok, dtype=np.int64), errors=errors)
