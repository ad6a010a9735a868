"""Name each feature from its top-activating reports versus controls, and score the name on
held-out reports of other patients."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.config import InterpretConfig
from data_contracts.schemas import INTERPRETATIONS
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from models.interpret.features import interpret_features
from models.interpret.llm import prompt_digest
from tasks.stage import run_stage

LLM_CACHE = "llm_cache"  # under the store root: replies by hash of (model, prompt, parameters)


def report_texts(store: ArtifactStore, studies: ArtifactRef) -> pd.Series:
    df = store.read_table(studies, columns=["study_id", "report_text"])
    return df.set_index("study_id")["report_text"]


def study_subjects(store: ArtifactStore, studies: ArtifactRef) -> pd.Series:
    df = store.read_table(studies, columns=["study_id", "subject_id"])
    return df.set_index("study_id")["subject_id"]


def interpret_params(cfg: InterpretConfig, modality: str) -> dict[str, object]:
    """Artifact parameters: the config (no secret is in it: only the key's variable name)
    and, for the LLM, the prompt files' digest, so a changed prompt is new work."""
    params: dict[str, object] = {"interpretation": cfg.model_dump(), "modality": modality,
                                 "labeler": "log-odds-dirichlet-phrases-v3"}
    if cfg.llm_in_use() is not None:
        params["prompts"] = prompt_digest()
    return params


def interpret_fn(
    store: ArtifactStore, studies: ArtifactRef, cohorts: ArtifactRef, modality: str, cfg: InterpretConfig
) -> ArtifactRef:
    def build(w: ArtifactWriter) -> None:
        coh = store.read_table(cohorts)
        out = interpret_features(coh, report_texts(store, studies), cfg, modality,
                                 study_subjects(store, studies), f"{store.root}/{LLM_CACHE}")
        w.write_table("data", out, INTERPRETATIONS)

    return run_stage(store, "interpretations", INTERPRETATIONS.key, [studies, cohorts],
                     interpret_params(cfg, modality), build)


@task(name="interpret", cache_policy=NONE)
def interpret(
    store_root: str, studies: ArtifactRef, cohorts: ArtifactRef, modality: str, cfg: InterpretConfig
) -> ArtifactRef:
    return interpret_fn(ArtifactStore(store_root), studies, cohorts, modality, cfg)
