"""Name each feature from its top-activating reports versus controls."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.config import InterpretConfig
from data_contracts.schemas import INTERPRETATIONS
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from models.interpret.keywords import interpret_features
from tasks.stage import run_stage


def report_texts(store: ArtifactStore, studies: ArtifactRef) -> pd.Series:
    df = store.read_table(studies, columns=["study_id", "report_text"])
    return df.set_index("study_id")["report_text"]


def interpret_fn(
    store: ArtifactStore, studies: ArtifactRef, cohorts: ArtifactRef, modality: str, cfg: InterpretConfig
) -> ArtifactRef:
    params = {"interpretation": cfg.model_dump(), "modality": modality, "labeler": "log-odds-dirichlet"}

    def build(w: ArtifactWriter) -> None:
        coh = store.read_table(cohorts)
        out = interpret_features(coh, report_texts(store, studies), cfg, modality)
        w.write_table("data", out, INTERPRETATIONS)

    return run_stage(store, "interpretations", INTERPRETATIONS.key, [studies, cohorts], params, build)


@task(name="interpret", cache_policy=NONE)
def interpret(
    store_root: str, studies: ArtifactRef, cohorts: ArtifactRef, modality: str, cfg: InterpretConfig
) -> ArtifactRef:
    return interpret_fn(ArtifactStore(store_root), studies, cohorts, modality, cfg)
