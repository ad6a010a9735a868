"""Time-to-event confirmation of each outcome's top ranked pairs (both splits)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.config import SurvivalConfig, load_outcome_definitions
from data_contracts.errors import ContractError
from data_contracts.schemas import KM_CURVES, SURVIVAL
from data_contracts.store import MANIFEST, ArtifactRef, ArtifactStore, ArtifactWriter
from models.association import outcome_matrices
from models.survival import YEAR_DAYS, survival_hits, top_hits
from tasks.split import read_population
from tasks.stage import run_stage


def survival_fn(
    store: ArtifactStore, labels: ArtifactRef, assoc: ArtifactRef, split: ArtifactRef,
    cohorts: Mapping[str, ArtifactRef], outcomes_path: Path, cfg: SurvivalConfig,
) -> ArtifactRef:
    """split: the study_split artifact the associations were computed from (checked), so
    both stages analyse the same studies in the same splits."""
    _check_same_split(store, assoc, split)
    defs = load_outcome_definitions(outcomes_path)
    windows = {o.id: o.window_years * YEAR_DAYS for o in defs.outcomes}
    params = {"survival": cfg.model_dump(), "windows": windows}

    def build(w: ArtifactWriter) -> None:
        hits = top_hits(store.read_table(assoc), cfg.top_per_outcome)
        om = outcome_matrices(store.read_table(labels))
        pop = read_population(store, split, om, sorted(cohorts))
        exposed = {m: _exposed_masks(store, ref, om.study_ids, hits[hits["modality"] == m])
                   for m, ref in cohorts.items()}
        summary, curves = survival_hits(hits, exposed, om, pop, windows, cfg.min_events)
        # No ranked pair means no rows: still a self-describing, empty table.
        summary = summary if len(summary) else pd.DataFrame(columns=SURVIVAL.schema.names)
        curves = curves if len(curves) else pd.DataFrame(columns=KM_CURVES.schema.names)
        w.write_table("data", summary, SURVIVAL)
        w.write_table("km_curves", curves, KM_CURVES)

    inputs = [labels, assoc, split, *cohorts.values()]
    return run_stage(store, "survival", SURVIVAL.key, inputs, params, build)


def _exposed_masks(store: ArtifactStore, ref: ArtifactRef, study_ids: np.ndarray,
                   hits: pd.DataFrame) -> dict[int, np.ndarray]:
    c = store.read_table(ref, columns=["feature_id", "study_id", "role"])
    c = c[(c["role"] == "exposed")]
    by_feature = dict(tuple(c.groupby("feature_id")))
    empty = c.iloc[0:0]
    return {int(f): np.isin(study_ids, by_feature.get(f, empty)["study_id"].to_numpy())
            for f in hits["feature_id"].unique()}


def _check_same_split(store: ArtifactStore, assoc: ArtifactRef, split: ArtifactRef) -> None:
    used = [i for i in store.manifest(assoc).get("inputs", []) if i.get("kind") == split.kind]
    if [(i.get("version"), i.get("digest")) for i in used] != [(split.version, split.digest)]:
        raise ContractError(str(assoc.path / MANIFEST), None, "inputs",
                            f"associations computed from study_split {[i.get('version') for i in used]}, "
                            f"survival given {split.version}",
                            "the study_split artifact the associations were computed from")


@task(name="survival", cache_policy=NONE)
def survival(
    store_root: str, labels: ArtifactRef, assoc: ArtifactRef, split: ArtifactRef, cohorts: dict[str, ArtifactRef],
    outcomes_path: str, cfg: SurvivalConfig,
) -> ArtifactRef:
    return survival_fn(ArtifactStore(store_root), labels, assoc, split, cohorts, Path(outcomes_path), cfg)
