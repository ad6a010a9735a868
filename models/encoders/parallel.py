"""Per-item work (load + preprocess one CT) over a process pool, results in input order."""

from __future__ import annotations

import math
import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def is_missing(item: object) -> bool:
    """None, NaN or blank: no input for this study."""
    return item is None or (isinstance(item, float) and math.isnan(item)) or not str(item).strip()


def _init_worker() -> None:
    """One torch thread per worker: the pool provides the parallelism."""
    import torch

    torch.set_num_threads(1)


def _pool_context() -> mp.context.BaseContext:
    # Not fork: forking a parent that already ran torch/OpenMP code can deadlock the child.
    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def map_items(fn: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[R]:
    """`map(fn, items)`, in `workers` processes when > 1 (fn must be picklable)."""
    workers = min(workers, len(items))
    if workers <= 1:
        yield from (fn(it) for it in items)
        return
    chunk = max(1, min(32, len(items) // (4 * workers)))
    with ProcessPoolExecutor(workers, mp_context=_pool_context(), initializer=_init_worker) as ex:
        yield from ex.map(fn, items, chunksize=chunk)
