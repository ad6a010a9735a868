"""Backfill flow: embed the studies of a month range for every modality of a run config,
without the rest of the pipeline. Already embedded studies are skipped, so re-running a
range (or overlapping ranges) computes nothing twice. `medconcepts backfill` against a
Prefect server starts one run of this flow per month (`since == until`) through the
`backfill-month` deployment (flows/backfill_runs.py)."""

from __future__ import annotations

from prefect import flow

from data_contracts.config import RunConfig
from data_contracts.overrides import RunOverrides, load_config
from flows.embedding import fill_partitions
from flows.runner import api_for_workers, stage_needs_gpu, task_runner
from tasks.ingest import ingest_studies

Counts = dict[str, dict[str, int]]


@flow(name="medconcepts-backfill")
def backfill(config_path: str, since: str | None = None, until: str | None = None,
             modality: str | None = None, overrides: RunOverrides | None = None) -> Counts:
    """{modality: {month: studies computed}} for months in [since, until] ('YYYY-MM')."""
    cfg = load_config(config_path, overrides)
    runner = task_runner(cfg.runner)
    if runner is None:
        return _backfill(cfg, since, until, modality)
    with api_for_workers():
        return backfill_stages.with_options(task_runner=runner)(config_path, since, until, modality, overrides)


@flow(name="medconcepts-backfill-stages")
def backfill_stages(config_path: str, since: str | None = None, until: str | None = None,
                    modality: str | None = None, overrides: RunOverrides | None = None) -> Counts:
    """The backfill on the task runner the caller chose (Dask)."""
    return _backfill(load_config(config_path, overrides), since, until, modality)


def _backfill(cfg: RunConfig, since: str | None, until: str | None, modality: str | None) -> Counts:
    root = str(cfg.store)
    studies = ingest_studies(root, str(cfg.inputs.studies))
    images_root = str(cfg.inputs.studies.parent)
    return {m.modality: fill_partitions(root, studies, m, images_root, stage_needs_gpu(cfg, "embed", m), since, until)
            for m in cfg.modalities if modality in (None, m.modality)}
