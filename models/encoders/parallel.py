"""Per-item work (load + preprocess one CT) over a process pool, results in input order."""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

from data_contracts.tempfiles import process_running

T = TypeVar("T")
R = TypeVar("R")


def _init_worker(owner: int) -> None:
    """One torch thread per worker: the pool provides the parallelism. Workers leave when
    the process that owns the pool is gone: a pool's forkserver and workers otherwise
    outlive an owner killed outright (SIGKILL, the OOM killer), holding memory (and a GPU's)."""
    import torch

    torch.set_num_threads(1)
    threading.Thread(target=_exit_with, args=(owner,), name="owner-watchdog", daemon=True).start()


def _exit_with(owner: int) -> None:
    while process_running(owner):
        time.sleep(0.5)
    os._exit(1)


def _pool_context() -> mp.context.BaseContext:
    # Not fork: forking a parent that already ran torch/OpenMP code can deadlock the child.
    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def map_items(fn: Callable[[T], R], items: Sequence[T], workers: int, ahead: int = 2) -> Iterator[R]:
    """`map(fn, items)` in order, in `workers` processes when > 1 (fn must be picklable).

    At most `ahead` items per worker are in flight or waiting to be consumed: a
    preprocessed CT is ~32 MB, so an unbounded `Executor.map` over a batch of hundreds
    would hold gigabytes whenever the consumer (the GPU) is slower than the workers."""
    workers = min(workers, len(items))
    if workers <= 1:
        yield from (fn(it) for it in items)
        return
    with ProcessPoolExecutor(workers, mp_context=_pool_context(), initializer=_init_worker,
                             initargs=(os.getpid(),)) as ex:
        pending: deque[Future[R]] = deque()
        it = iter(items)
        for item in itertools.islice(it, workers * ahead):
            pending.append(ex.submit(fn, item))
        while pending:
            result = pending.popleft().result()
            for item in itertools.islice(it, 1):
                pending.append(ex.submit(fn, item))
            yield result
