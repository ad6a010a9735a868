"""Feature x outcome associations over every modality's cohorts, in both splits."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.config import AssociationConfig
from data_contracts.schemas import ASSOCIATIONS
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from models.activation_sd import activation_matrix
from models.association import associate_splits, exposure_matrix, outcome_matrices
from models.population import population_arrays
from tasks.split import table_source
from tasks.stage import run_stage


def associate_frame(
    feature_stats: Mapping[str, pd.DataFrame], cohorts: Mapping[str, pd.DataFrame],
    population: pd.DataFrame, labels: pd.DataFrame, cfg: AssociationConfig,
    activations: Mapping[str, pd.DataFrame] | None = None, source: str = "study_split",
) -> pd.DataFrame:
    """ASSOCIATIONS rows of every modality, sorted by split, modality, outcome and rank.
    population: STUDY_SPLIT rows (read from `source`); `activations` (ACTIVATIONS rows per
    modality) only with cfg.or_per_sd."""
    om = outcome_matrices(labels)
    pop = population_arrays(population, om.study_ids, om.subject_ids, list(feature_stats), source)
    exposures = {}
    for modality, stats in feature_stats.items():
        # A study this modality could not encode (quarantined) is neither exposed nor a
        # control: it leaves this modality's analyses only.
        coh = cohorts[modality]
        E = exposure_matrix(coh[coh["role"] == "exposed"], om.study_ids, len(stats))
        testable = stats.sort_values("feature_id")["testable"].to_numpy(bool)
        exposures[modality] = (E, testable, pop.encoded[modality])
    acts = None if activations is None else {
        m: activation_matrix(a, om.study_ids, len(feature_stats[m])) for m, a in activations.items()}
    out = associate_splits(exposures, om, pop.split, cfg, acts)
    return out.sort_values(["split", "modality", "outcome_id", "rank", "feature_id"],
                           na_position="last").reset_index(drop=True)


def associate_fn(
    store: ArtifactStore,
    cohorts: Mapping[str, tuple[ArtifactRef, ArtifactRef]],
    labels: ArtifactRef,
    split: ArtifactRef,
    cfg: AssociationConfig,
    activations: Mapping[str, ArtifactRef] | None = None,
) -> ArtifactRef:
    """cohorts: modality -> (feature_stats, cohorts); split: the study_split artifact
    (split and encoded studies). `activations` (per modality) are read only with
    cfg.or_per_sd, and then required."""
    if cfg.or_per_sd and (activations is None or set(activations) != set(cohorts)):
        raise ValueError("association.or_per_sd needs the activations artifact of every modality")
    acts_in = dict(activations or {}) if cfg.or_per_sd else {}
    inputs = [labels, split] + [r for pair in cohorts.values() for r in pair] + [acts_in[m] for m in sorted(acts_in)]
    params = {"association": cfg.model_dump(), "modalities": sorted(cohorts)}

    def build(w: ArtifactWriter) -> None:
        lab = store.read_table(labels)
        stats = {m: store.read_table(s) for m, (s, _) in cohorts.items()}
        coh = {m: store.read_table(c) for m, (_, c) in cohorts.items()}
        pop = store.read_table(split)
        acts = {m: store.read_table(r) for m, r in acts_in.items()} if acts_in else None
        frame = associate_frame(stats, coh, pop, lab, cfg, acts, table_source(split))
        w.write_table("data", frame, ASSOCIATIONS)

    return run_stage(store, "associations", ASSOCIATIONS.key, inputs, params, build)


@task(name="associate", cache_policy=NONE)
def associate(
    store_root: str,
    cohorts: dict[str, tuple[ArtifactRef, ArtifactRef]],
    labels: ArtifactRef,
    split: ArtifactRef,
    cfg: AssociationConfig,
    activations: dict[str, ArtifactRef] | None = None,
) -> ArtifactRef:
    return associate_fn(ArtifactStore(store_root), cohorts, labels, split, cfg, activations)
