"""The study_split artifact: each labelled study's split and, per modality, whether it was
encoded. The one source association and survival read their analysis population from."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.config import AssociationConfig
from data_contracts.schemas import STUDY_SPLIT
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from models.association import OutcomeMatrices
from models.population import Population, population_arrays, study_population
from tasks.stage import run_stage

LABEL_COLUMNS = ["study_id", "subject_id", "outcome_id", "eligible", "event"]


def study_split_fn(store: ArtifactStore, labels: ArtifactRef, embeddings: Mapping[str, ArtifactRef],
                   cfg: AssociationConfig) -> ArtifactRef:
    """Only the split settings of `cfg` are parameters: other association settings leave
    the artifact (and so survival) unchanged."""
    inputs = [labels, *(embeddings[m] for m in sorted(embeddings))]
    params = {"split_frac": cfg.split_frac, "split_seed": cfg.split_seed, "modalities": sorted(embeddings)}

    def build(w: ArtifactWriter) -> None:
        lab = store.read_table(labels, columns=LABEL_COLUMNS)
        enc = {m: encoded_studies(store, r) for m, r in embeddings.items()}
        w.write_table("data", study_population(lab, enc, cfg.split_frac, cfg.split_seed), STUDY_SPLIT)

    return run_stage(store, "study_split", STUDY_SPLIT.key, inputs, params, build)


def encoded_studies(store: ArtifactStore, embeddings: ArtifactRef) -> np.ndarray:
    return store.read_table(embeddings, columns=["study_id"])["study_id"].to_numpy()


def read_population(store: ArtifactStore, ref: ArtifactRef, om: OutcomeMatrices,
                    modalities: list[str]) -> Population:
    """The study_split artifact aligned with om.study_ids, checked."""
    return population_arrays(store.read_table(ref), om.study_ids, om.subject_ids, modalities, table_source(ref))


def table_source(ref: ArtifactRef) -> str:
    """How errors name the artifact's table file."""
    return str(ref.path / "data.parquet")


@task(name="study_split", cache_policy=NONE)
def study_split(store_root: str, labels: ArtifactRef, embeddings: dict[str, ArtifactRef],
                cfg: AssociationConfig) -> ArtifactRef:
    return study_split_fn(ArtifactStore(store_root), labels, embeddings, cfg)
