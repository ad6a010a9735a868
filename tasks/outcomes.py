"""Outcome labels per study x outcome from MEDS events."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from data_contracts.config import OutcomeSettings, load_outcome_definitions
from data_contracts.schemas import OUTCOME_LABELS
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from models.outcomes import outcome_labels
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
