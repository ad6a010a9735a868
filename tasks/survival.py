"""Time-to-event confirmation of each outcome's top ranked pairs (both splits)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.config import AssociationConfig, SurvivalConfig, load_outcome_definitions
from data_contracts.schemas import KM_CURVES, SURVIVAL
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from models.association import outcome_matrices
from models.split import study_splits
from models.survival import YEAR_DAYS, survival_hits, top_hits
from tasks.stage import run_stage


def survival_fn(
    store: ArtifactStore, labels: ArtifactRef, assoc: ArtifactRef, cohorts: Mapping[str, ArtifactRef],
    outcomes_path: Path, cfg: SurvivalConfig, assoc_cfg: AssociationConfig,
) -> ArtifactRef:
    defs = load_outcome_definitions(outcomes_path)
    windows = {o.id: o.window_years * YEAR_DAYS for o in defs.outcomes}
    params = {"survival": cfg.model_dump(), "windows": windows,
              "split": [assoc_cfg.split_frac, assoc_cfg.split_seed]}

    def build(w: ArtifactWriter) -> None:
        hits = top_hits(store.read_table(assoc), cfg.top_per_outcome)
        lab = store.read_table(labels)
        om = outcome_matrices(lab)
        split = study_splits(lab, om.study_ids, assoc_cfg.split_frac, assoc_cfg.split_seed)
        exposed = {m: _exposed_masks(store, ref, om.study_ids, hits[hits["modality"] == m])
                   for m, ref in cohorts.items()}
        summary, curves = survival_hits(hits, exposed, om, split, windows, cfg.min_events)
        # No ranked pair means no rows: still a self-describing, empty table.
        summary = summary if len(summary) else pd.DataFrame(columns=SURVIVAL.schema.names)
        curves = curves if len(curves) else pd.DataFrame(columns=KM_CURVES.schema.names)
        w.write_table("data", summary, SURVIVAL)
        w.write_table("km_curves", curves, KM_CURVES)

    inputs = [labels, assoc, *cohorts.values()]
    return run_stage(store, "survival", SURVIVAL.key, inputs, params, build)


def _exposed_masks(store: ArtifactStore, ref: ArtifactRef, study_ids: np.ndarray,
                   hits: pd.DataFrame) -> dict[int, np.ndarray]:
    c = store.read_table(ref, columns=["feature_id", "study_id", "role"])
    c = c[(c["role"] == "exposed")]
    by_feature = dict(tuple(c.groupby("feature_id")))
    empty = c.iloc[0:0]
    return {int(f): np.isin(study_ids, by_feature.get(f, empty)["study_id"].to_numpy())
            for f in hits["feature_id"].unique()}


@task(name="survival", cache_policy=NONE)
def survival(
    store_root: str, labels: ArtifactRef, assoc: ArtifactRef, cohorts: dict[str, ArtifactRef],
    outcomes_path: str, cfg: SurvivalConfig, assoc_cfg: AssociationConfig,
) -> ArtifactRef:
    return survival_fn(ArtifactStore(store_root), labels, assoc, cohorts, Path(outcomes_path), cfg, assoc_cfg)
