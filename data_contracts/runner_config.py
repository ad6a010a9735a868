"""Where a run's heavy tasks execute: the flow process (local) or a Dask cluster.

Prefect work pools route whole flow runs; inside a run, the task runner routes tasks. The
heavy stages (embedding partitions, SAE training and encoding) go to the task runner;
on Dask, a stage that needs a GPU carries the resource annotation `GPU: 1`, so it runs only
on a worker that declares that resource (`dask worker ... --resources GPU=1`, one per GPU)
and holds it while it runs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GPUStage = Literal["embed", "sae"]


class RunnerConfig(BaseModel):
    """`kind: local` runs tasks in threads of the flow process (Prefect's default runner);
    `kind: dask` submits them to the Dask scheduler at `address`, or, with no address, to a
    LocalCluster of `n_workers` processes started for the run.

    `gpu_stages`: which stages request a GPU slot. `auto`: the embedding stage of encoders
    that run on a GPU (device cuda, or Merlin/Qwen3 on auto) and SAE stages on device cuda
    (or auto where the flow process sees a GPU). A list names them outright, e.g. to route
    by resource on a cluster whose flow host has no GPU.
    `local_gpus` (LocalCluster only): how many of its workers declare one GPU each (worker i
    sees CUDA device i); None: the number of CUDA devices visible.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["local", "dask"] = "local"
    address: str | None = None  # e.g. tcp://dask-scheduler:8786
    n_workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    local_gpus: int | None = Field(None, ge=0)
    gpu_stages: Literal["auto"] | tuple[GPUStage, ...] = "auto"

    @model_validator(mode="after")
    def _fits_kind(self) -> RunnerConfig:
        if self.kind == "local" and self.address is not None:
            raise ValueError("runner.address is the Dask scheduler: set runner.kind to 'dask'")
        if self.address is not None and self.local_gpus is not None:
            raise ValueError("runner.local_gpus is for the LocalCluster started without runner.address; "
                             "GPU workers of a running cluster declare `--resources GPU=1` themselves")
        if self.local_gpus is not None and self.local_gpus > self.n_workers:
            raise ValueError(f"runner.local_gpus ({self.local_gpus}) exceeds runner.n_workers ({self.n_workers})")
        return self
