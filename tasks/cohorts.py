"""Feature statistics and exposed/control cohorts from activations: one row set per
feature and one per feature family (`unit`)."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.config import CohortConfig
from data_contracts.schemas import COHORTS, FEATURE_STATS
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from models.cohorts import feature_stats_and_cohorts, unit_stats_and_cohorts
from tasks.sae import sae_size
from tasks.stage import run_stage


def stats_and_cohorts(activations: pd.DataFrame, families: pd.DataFrame, family_acts: pd.DataFrame,
                      study_ids: np.ndarray, n_features: int, cfg: CohortConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """FEATURE_STATS and COHORTS rows of every feature, then of every family (FAMILIES
    rows); a feature's stats name its family."""
    fs, fc = feature_stats_and_cohorts(activations, study_ids, n_features, cfg)
    family_of = {int(m): int(f) for f, ms in zip(families["family_id"], families["members"], strict=True) for m in ms}
    fs["family_id"] = fs["feature_id"].map(family_of).astype("Int32")
    acts = family_acts.rename(columns={"family_id": "feature_id"})
    ys, yc = unit_stats_and_cohorts(acts, study_ids, families["family_id"].to_numpy(), cfg, "family")
    ys["family_id"] = ys["feature_id"].astype("Int32")
    if ys.empty:  # families off, or none found: the feature rows alone
        return fs, fc
    return pd.concat([fs, ys], ignore_index=True), pd.concat([fc, yc], ignore_index=True)


def cohorts_fn(
    store: ArtifactStore, embeddings: ArtifactRef, sae: ArtifactRef, activations: ArtifactRef,
    families: ArtifactRef, cfg: CohortConfig,
) -> tuple[ArtifactRef, ArtifactRef]:
    """Write `feature_stats` and `cohorts` (both derived from the same computation)."""
    params = {"cohort": cfg.model_dump()}
    inputs = [embeddings, sae, activations, families]

    @functools.cache
    def result() -> tuple[pd.DataFrame, pd.DataFrame]:
        ids = store.read_table(embeddings, columns=["study_id"])["study_id"].to_numpy()
        return stats_and_cohorts(store.read_table(activations), store.read_table(families),
                                 store.read_table(families, "activations"), ids, sae_size(store, sae), cfg)

    def build_stats(w: ArtifactWriter) -> None:
        w.write_table("data", result()[0], FEATURE_STATS)

    def build_cohorts(w: ArtifactWriter) -> None:
        w.write_table("data", result()[1], COHORTS)

    stats = run_stage(store, "feature_stats", FEATURE_STATS.key, inputs, params, build_stats)
    cohorts = run_stage(store, "cohorts", COHORTS.key, inputs, params, build_cohorts)
    return stats, cohorts


@task(name="cohorts", cache_policy=NONE)
def cohorts(
    store_root: str, embeddings: ArtifactRef, sae: ArtifactRef, activations: ArtifactRef, families: ArtifactRef,
    cfg: CohortConfig,
) -> tuple[ArtifactRef, ArtifactRef]:
    return cohorts_fn(ArtifactStore(store_root), embeddings, sae, activations, families, cfg)
