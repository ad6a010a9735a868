"""The task runner a run config asks for, and the Dask resource annotation of GPU stages.

`runner.kind: local` keeps Prefect's default (threads of the flow process). `dask` uses
prefect-dask's DaskTaskRunner: on the scheduler at `runner.address`, or on a LocalCluster
started for the run. Tasks submitted inside `gpu_slot(True)` carry the Dask annotation
`resources={"GPU": 1}`: the scheduler runs them only on workers that declare a GPU
resource, one such task per declared GPU at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect.context import FlowRunContext
from prefect.task_runners import TaskRunner

from data_contracts.config import ModalityConfig, RunConfig
from data_contracts.runner_config import GPUStage, RunnerConfig
from tasks.encoders import encoder_tags
from tasks.sae import sae_on_gpu

GPU_RESOURCE = "GPU"


def task_runner(cfg: RunnerConfig) -> TaskRunner[Any] | None:
    """The DaskTaskRunner for `kind: dask`; None keeps the flow's default runner."""
    if cfg.kind == "local":
        return None
    from prefect_dask import DaskTaskRunner

    if cfg.address:
        return DaskTaskRunner(address=cfg.address)
    return DaskTaskRunner(cluster_class="flows.runner.local_cluster", cluster_kwargs={
        "n_workers": cfg.n_workers, "threads_per_worker": cfg.threads_per_worker, "gpus": cfg.local_gpus})


def local_cluster(n_workers: int, threads_per_worker: int, gpus: int | None = None) -> Any:
    """A LocalCluster-like cluster of worker processes on loopback in which the first
    `gpus` workers (None: one per visible CUDA device) each declare one GPU resource and
    see only their own device."""
    from distributed import Nanny, Scheduler, SpecCluster

    if gpus is None:
        import torch

        gpus = min(n_workers, torch.cuda.device_count())
    workers = {}
    for i in range(n_workers):
        options: dict[str, Any] = {"nthreads": threads_per_worker, "host": "127.0.0.1"}
        if i < gpus:
            options |= {"resources": {GPU_RESOURCE: 1}, "env": {"CUDA_VISIBLE_DEVICES": str(i)}}
        workers[f"worker-{i}"] = {"cls": Nanny, "options": options}
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": ":0"}}
    return SpecCluster(workers=workers, scheduler=scheduler, name="medconcepts-local")


def stage_needs_gpu(cfg: RunConfig, stage: GPUStage, modality: ModalityConfig | None = None) -> bool:
    """Does this stage ask for a GPU slot (runner.gpu_stages, or 'auto' from the devices)?"""
    chosen = cfg.runner.gpu_stages
    if chosen != "auto":
        return stage in chosen
    if stage == "embed":
        return modality is not None and "gpu" in encoder_tags(modality)
    return sae_on_gpu(cfg.sae_runs())


@contextmanager
def gpu_slot(needed: bool) -> Iterator[None]:
    """Tasks submitted inside request one GPU from the Dask scheduler, when the current
    flow run uses a DaskTaskRunner and `needed`; otherwise nothing changes."""
    ctx = FlowRunContext.get()
    runner = ctx.task_runner if ctx is not None else None
    if not needed or type(runner).__name__ != "DaskTaskRunner":
        yield
        return
    import dask

    with dask.annotate(resources={GPU_RESOURCE: 1}):
        yield


@contextmanager
def api_for_workers() -> Iterator[None]:
    """Task runs on Dask workers report to the Prefect API. With a server configured they
    find it already; under the CLI's embedded server they get its address (worker
    processes of a LocalCluster inherit it from the environment)."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    server = SubprocessASGIServer()
    server.start()  # a no-op when this process's embedded server already runs
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
