"""The discovery flow end to end on a tiny cohort, under Prefect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import write_tiny_config


def _artifact_dirs(store: Path) -> dict[str, float]:
    return {
        str(p.relative_to(store)): (p / "manifest.json").stat().st_mtime
        for p in (store / "artifacts").glob("*/*")
        if not p.name.startswith(".")
    }


@pytest.mark.prefect
def test_flow_end_to_end_rerun_and_partial_recompute(prefect_harness: None, tiny_cohort: Path, tmp_path: Path) -> None:
    from flows.discovery import discovery

    config = write_tiny_config(tiny_cohort, tmp_path / "run")
    first = discovery(str(config))
    store = Path(first.store)
    index = Path(first.report_index)
    assert index.is_file() and "<html" in index.read_text().lower()
    record = json.loads(Path(first.run_record).read_text())
    kinds = {a["kind"] for a in record["artifacts"]}
    assert {"studies", "events", "embeddings", "sae", "activations", "feature_stats", "cohorts",
            "outcome_labels", "study_split", "associations", "survival", "interpretations", "report"} <= kinds
    before = _artifact_dirs(store)

    second = discovery(str(config))
    assert second.associations == first.associations and second.report == first.report
    assert _artifact_dirs(store) == before  # nothing rewritten

    shutil.rmtree(first.associations.path)
    third = discovery(str(config))
    after = _artifact_dirs(store)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {f"artifacts/associations/{first.associations.version}"}
    assert third.associations == first.associations
