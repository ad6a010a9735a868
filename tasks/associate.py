"""Feature x outcome associations over every modality's cohorts, in both splits."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.config import AssociationConfig
from data_contracts.schemas import ASSOCIATIONS
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from models.activation_sd import activation_matrix
from models.association import associate_splits, exposure_matrix, outcome_matrices
from models.split import study_splits
from tasks.stage import run_stage


def associate_frame(
    feature_stats: Mapping[str, pd.DataFrame], cohorts: Mapping[str, pd.DataFrame],
    encoded: Mapping[str, np.ndarray], labels: pd.DataFrame, cfg: AssociationConfig,
    activations: Mapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """ASSOCIATIONS rows of every modality, sorted by split, modality, outcome and rank.
    `activations` (ACTIVATIONS rows per modality) only with cfg.or_per_sd."""
    om = outcome_matrices(labels)
    study_split = study_splits(labels, om.study_ids, cfg.split_frac, cfg.split_seed)
    exposures = {}
    for modality, stats in feature_stats.items():
        # A study this modality could not encode (quarantined) is neither exposed nor a
        # control: it leaves this modality's analyses only.
        coh = cohorts[modality]
        E = exposure_matrix(coh[coh["role"] == "exposed"], om.study_ids, len(stats))
        testable = stats.sort_values("feature_id")["testable"].to_numpy(bool)
        exposures[modality] = (E, testable, np.isin(om.study_ids, encoded[modality]))
    acts = None if activations is None else {
        m: activation_matrix(a, om.study_ids, len(feature_stats[m])) for m, a in activations.items()}
    out = associate_splits(exposures, om, study_split, cfg, acts)
    return out.sort_values(["split", "modality", "outcome_id", "rank", "feature_id"],
                           na_position="last").reset_index(drop=True)


def associate_fn(
    store: ArtifactStore,
    cohorts: Mapping[str, tuple[ArtifactRef, ArtifactRef, ArtifactRef]],
    labels: ArtifactRef,
    cfg: AssociationConfig,
    activations: Mapping[str, ArtifactRef] | None = None,
) -> ArtifactRef:
    """`activations` (per modality) are read only with cfg.or_per_sd, and then required."""
    if cfg.or_per_sd and (activations is None or set(activations) != set(cohorts)):
        raise ValueError("association.or_per_sd needs the activations artifact of every modality")
    acts_in = dict(activations or {}) if cfg.or_per_sd else {}
    inputs = [labels] + [r for pair in cohorts.values() for r in pair] + [acts_in[m] for m in sorted(acts_in)]
    params = {"association": cfg.model_dump(), "modalities": sorted(cohorts)}

    def build(w: ArtifactWriter) -> None:
        lab = store.read_table(labels)
        stats = {m: store.read_table(s) for m, (_, s, _) in cohorts.items()}
        coh = {m: store.read_table(c) for m, (_, _, c) in cohorts.items()}
        enc = {m: encoded_studies(store, e) for m, (e, _, _) in cohorts.items()}
        acts = {m: store.read_table(r) for m, r in acts_in.items()} if acts_in else None
        w.write_table("data", associate_frame(stats, coh, enc, lab, cfg, acts), ASSOCIATIONS)

    return run_stage(store, "associations", ASSOCIATIONS.key, inputs, params, build)


def encoded_studies(store: ArtifactStore, embeddings: ArtifactRef) -> np.ndarray:
    return store.read_table(embeddings, columns=["study_id"])["study_id"].to_numpy()


@task(name="associate", cache_policy=NONE)
def associate(
    store_root: str,
    cohorts: dict[str, tuple[ArtifactRef, ArtifactRef, ArtifactRef]],
    labels: ArtifactRef,
    cfg: AssociationConfig,
    activations: dict[str, ArtifactRef] | None = None,
) -> ArtifactRef:
    return associate_fn(ArtifactStore(store_root), cohorts, labels, cfg, activations)
