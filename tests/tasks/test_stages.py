"""Each task's function on a tiny generated cohort, without Prefect's server."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from data_contracts.config import CTRadiomicsConfig, MiniLMConfig, ModalityConfig
from data_contracts.errors import ContractError
from data_contracts.store import ArtifactStore
from tasks.encoders import embed_fn
from tasks.ingest import ingest_events_fn, ingest_studies_fn


@pytest.fixture
def cohort(tiny_cohort: Path) -> Path:
    """The session's tiny generated cohort; tests copy it before changing anything."""
    return tiny_cohort


def _broken_copy(cohort: Path, dest: Path) -> Path:
    shutil.copytree(cohort, dest)
    s = pd.read_parquet(dest / "studies.parquet")
    s.loc[1, "study_id"] = s.loc[0, "study_id"]  # duplicate id
    s.loc[2, "report_text"] = "   "  # empty report
    (dest / s.loc[3, "image_path"]).write_bytes(b"not a nifti")  # unreadable volume
    s.to_parquet(dest / "studies.parquet")
    return dest


def test_bad_inputs_quarantined_and_run_goes_on(cohort: Path, tmp_path: Path) -> None:
    d = _broken_copy(cohort, tmp_path / "bad")
    store = ArtifactStore(tmp_path / "store")
    studies = ingest_studies_fn(store, d / "studies.parquet")
    q = store.read_table(studies, "quarantine")
    assert len(q) == 2 and q["reason"].str.contains("duplicate study_id").all()
    n = len(store.read_table(studies))
    image = embed_fn(store, studies, ModalityConfig(modality="image", encoder=CTRadiomicsConfig()), str(d))
    qi = store.read_table(image, "quarantine")
    assert len(qi) == 1 and "unreadable" in qi.iloc[0]["reason"]
    assert len(store.read_table(image)) == n - 1
    report = embed_fn(store, studies, ModalityConfig(modality="report", encoder=MiniLMConfig(batch_size=16)))
    qr = store.read_table(report, "quarantine")
    assert qr["reason"].tolist() == ["empty report"]
    assert len(store.read_table(report)) == n - 1
    leftovers = [p for p in (tmp_path / "store" / "artifacts").rglob(".tmp-*")]
    assert leftovers == []


def test_meds_wrong_type_is_clear_error_and_leaves_no_artifact(cohort: Path, tmp_path: Path) -> None:
    ev = pd.read_parquet(cohort / "events.parquet")
    ev["subject_id"] = "patient-" + ev["subject_id"].astype(str)
    ev.to_parquet(tmp_path / "events.parquet")
    store = ArtifactStore(tmp_path / "store")
    with pytest.raises(ContractError, match="subject_id"):
        ingest_events_fn(store, tmp_path / "events.parquet")
    assert not list((tmp_path / "store" / "artifacts" / "events").iterdir())


def test_ingest_is_reused_and_input_edits_are_seen(cohort: Path, tmp_path: Path) -> None:
    d = tmp_path / "copy"
    shutil.copytree(cohort, d)
    store = ArtifactStore(tmp_path / "store")
    a = ingest_studies_fn(store, d / "studies.parquet")
    assert ingest_studies_fn(store, d / "studies.parquet") == a
    img = nib.load(d / pd.read_parquet(d / "studies.parquet").loc[0, "image_path"])
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj) + 1, img.affine), img.get_filename())
    assert ingest_studies_fn(store, d / "studies.parquet").version != a.version
    ev = ingest_events_fn(store, d / "events.parquet")
    assert len(store.read_table(ev)) == len(pd.read_parquet(d / "events.parquet"))
