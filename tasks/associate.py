"""Feature x outcome associations over every modality's cohorts."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.config import AssociationConfig
from data_contracts.schemas import ASSOCIATIONS
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from models.association import exposure_matrix, rank_pairs, screen_outcome
from tasks.stage import run_stage


def associate_frame(
    stats: pd.DataFrame, cohorts: pd.DataFrame, labels: pd.DataFrame, modality: str, cfg: AssociationConfig
) -> pd.DataFrame:
    """Screen every feature of one modality against every outcome (unranked rows)."""
    n_features = len(stats)
    testable = stats.sort_values("feature_id")["testable"].to_numpy(bool)
    exposed = cohorts[cohorts["role"] == "exposed"]
    # One exposure matrix over every labelled study; each outcome takes its rows from it.
    ids = pd.Index(labels["study_id"].unique())
    X_all = exposure_matrix(exposed, ids.to_numpy(), n_features).tocsr()
    frames = []
    for outcome_id, lab in labels.groupby("outcome_id", sort=True):
        X = X_all[ids.get_indexer(lab["study_id"])]
        res = screen_outcome(X, lab["eligible"].to_numpy(bool), lab["event"].to_numpy(bool), testable, cfg)
        frames.append(res.assign(modality=modality, outcome_id=outcome_id))
    return pd.concat(frames, ignore_index=True)


def associate_fn(
    store: ArtifactStore,
    cohorts: Mapping[str, tuple[ArtifactRef, ArtifactRef, ArtifactRef]],
    labels: ArtifactRef,
    cfg: AssociationConfig,
) -> ArtifactRef:
    inputs = [labels] + [r for pair in cohorts.values() for r in pair]
    params = {"association": cfg.model_dump(), "modalities": sorted(cohorts)}

    def build(w: ArtifactWriter) -> None:
        lab = store.read_table(labels)
        frames = []
        for modality, (emb_ref, stats_ref, cohorts_ref) in sorted(cohorts.items()):
            # A study this modality could not encode (quarantined) is neither exposed nor
            # a control here: counting it as unexposed would bias the comparison.
            encoded = lab["study_id"].isin(encoded_studies(store, emb_ref))
            stats = store.read_table(stats_ref)
            coh = store.read_table(cohorts_ref)
            frames.append(associate_frame(stats, coh, lab[encoded], modality, cfg))
        ranked = rank_pairs(pd.concat(frames, ignore_index=True), cfg)
        ranked = ranked.sort_values(["modality", "outcome_id", "rank", "feature_id"], na_position="last")
        w.write_table("data", ranked.reset_index(drop=True), ASSOCIATIONS)

    return run_stage(store, "associations", ASSOCIATIONS.key, inputs, params, build)


def encoded_studies(store: ArtifactStore, embeddings: ArtifactRef) -> np.ndarray:
    return store.read_table(embeddings, columns=["study_id"])["study_id"].to_numpy()


@task(name="associate", cache_policy=NONE)
def associate(
    store_root: str,
    cohorts: dict[str, tuple[ArtifactRef, ArtifactRef, ArtifactRef]],
    labels: ArtifactRef,
    cfg: AssociationConfig,
) -> ArtifactRef:
    return associate_fn(ArtifactStore(store_root), cohorts, labels, cfg)
