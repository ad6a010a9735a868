"""Ingest of image paths that are DICOM series folders."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from data_contracts.store import ArtifactStore
from tasks.ingest import ingest_studies_fn


def test_dicom_folder_change_gives_new_studies_version(tmp_path: Path) -> None:
    """A slice rewritten inside a series folder changes the studies artifact version."""
    series = tmp_path / "series"
    series.mkdir()
    (series / "a.dcm").write_bytes(b"x" * 10)
    df = pd.DataFrame({"study_id": ["s1"], "subject_id": [1], "study_time": [pd.Timestamp("2024-01-05")],
                       "image_path": ["series"]})
    df.to_parquet(tmp_path / "studies.parquet")
    store = ArtifactStore(tmp_path / "store")
    first = ingest_studies_fn(store, tmp_path / "studies.parquet")
    st = os.stat(series)
    (series / "a.dcm").write_bytes(b"y" * 12)
    os.utime(series, ns=(st.st_atime_ns, st.st_mtime_ns))  # folder mtime unchanged
    assert ingest_studies_fn(store, tmp_path / "studies.parquet").version != first.version
