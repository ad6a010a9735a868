"""Outcome stages: outcome labels per study x outcome from MEDS events, and the study_split
artifact (each labelled study's split and, per modality, whether it was encoded): the one
source association and survival read their analysis population from."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.config import AssociationConfig, OutcomeSettings, load_outcome_definitions
from data_contracts.schemas import OUTCOME_LABELS, STUDY_SPLIT
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from models.outcomes.labels import outcome_labels
from models.outcomes.population import Population, population_arrays, study_population
from models.stats.association import OutcomeMatrices
from tasks.stage import run_stage


def outcomes_fn(
    store: ArtifactStore, studies: ArtifactRef, events: ArtifactRef, outcomes_path: Path, settings: OutcomeSettings
) -> ArtifactRef:
    defs = load_outcome_definitions(outcomes_path)
    params = {"outcomes": defs.model_dump(mode="json"), "settings": settings.model_dump(mode="json")}

    def build(w: ArtifactWriter) -> None:
        st = store.read_table(studies, columns=["study_id", "subject_id", "study_time"])
        ev = store.read_table(events)
        w.write_table("data", outcome_labels(st, ev, defs, settings), OUTCOME_LABELS)

    return run_stage(store, "outcome_labels", OUTCOME_LABELS.key, [studies, events], params, build)


@task(name="outcome-labels", cache_policy=NONE)
def label_outcomes(
    store_root: str, studies: ArtifactRef, events: ArtifactRef, outcomes_path: str, settings: OutcomeSettings
) -> ArtifactRef:
    return outcomes_fn(ArtifactStore(store_root), studies, events, Path(outcomes_path), settings)


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
    return f"{ref.url}/data.parquet"


@task(name="study_split", cache_policy=NONE)
def study_split(store_root: str, labels: ArtifactRef, embeddings: dict[str, ArtifactRef],
                cfg: AssociationConfig) -> ArtifactRef:
    return study_split_fn(ArtifactStore(store_root), labels, embeddings, cfg)
