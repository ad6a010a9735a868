"""Feature statistics and exposed/control cohorts from activations."""

from __future__ import annotations

import functools

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.config import CohortConfig
from data_contracts.schemas import COHORTS, FEATURE_STATS
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from models.cohorts import feature_stats_and_cohorts
from tasks.sae import sae_size
from tasks.stage import run_stage


def cohorts_fn(
    store: ArtifactStore, embeddings: ArtifactRef, sae: ArtifactRef, activations: ArtifactRef, cfg: CohortConfig
) -> tuple[ArtifactRef, ArtifactRef]:
    """Write `feature_stats` and `cohorts` (both derived from the same computation)."""
    params = {"cohort": cfg.model_dump()}
    inputs = [embeddings, sae, activations]

    @functools.cache
    def result() -> tuple[pd.DataFrame, pd.DataFrame]:
        ids = store.read_table(embeddings, columns=["study_id"])["study_id"].to_numpy()
        return feature_stats_and_cohorts(store.read_table(activations), ids, sae_size(store, sae), cfg)

    def build_stats(w: ArtifactWriter) -> None:
        w.write_table("data", result()[0], FEATURE_STATS)

    def build_cohorts(w: ArtifactWriter) -> None:
        w.write_table("data", result()[1], COHORTS)

    stats = run_stage(store, "feature_stats", FEATURE_STATS.key, inputs, params, build_stats)
    cohorts = run_stage(store, "cohorts", COHORTS.key, inputs, params, build_cohorts)
    return stats, cohorts


@task(name="cohorts", cache_policy=NONE)
def cohorts(
    store_root: str, embeddings: ArtifactRef, sae: ArtifactRef, activations: ArtifactRef, cfg: CohortConfig
) -> tuple[ArtifactRef, ArtifactRef]:
    return cohorts_fn(ArtifactStore(store_root), embeddings, sae, activations, cfg)
