"""Backfill flow: embed the studies of a month range for every modality of a run config,
without the rest of the pipeline. Already embedded studies are skipped, so re-running a
range (or overlapping ranges) computes nothing twice."""

from __future__ import annotations

from prefect import flow

from data_contracts.config import load_run_config
from flows.embedding import fill_partitions
from tasks.ingest import ingest_studies


@flow(name="medconcepts-backfill")
def backfill(config_path: str, since: str | None = None, until: str | None = None,
             modality: str | None = None) -> dict[str, dict[str, int]]:
    """{modality: {month: studies computed}} for months in [since, until] ('YYYY-MM')."""
    cfg = load_run_config(config_path)
    root = str(cfg.store)
    studies = ingest_studies(root, str(cfg.inputs.studies))
    images_root = str(cfg.inputs.studies.parent)
    return {m.modality: fill_partitions(root, studies, m, images_root, since, until)
            for m in cfg.modalities if modality in (None, m.modality)}
