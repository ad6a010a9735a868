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


def test_same_content_elsewhere_gives_same_studies_artifact(tmp_path: Path) -> None:
    """Versions and table bytes follow what the inputs contain, not where they are or when
    they were touched: a copied input folder maps to the same artifact."""
    import shutil

    from data_contracts.checksums import ChecksumMemo

    a = tmp_path / "a"
    (a / "img").mkdir(parents=True)
    (a / "img" / "x.nii.gz").write_bytes(b"volume bytes")
    pd.DataFrame({"study_id": ["s1", "s2"], "subject_id": [1, 2],
                  "study_time": [pd.Timestamp("2024-01-05"), pd.Timestamp("2024-02-05")],
                  "image_path": ["img/x.nii.gz", None]}).to_parquet(a / "studies.parquet")
    shutil.copytree(a, tmp_path / "b")
    os.utime(tmp_path / "b" / "img" / "x.nii.gz", ns=(0, 0))
    memo = ChecksumMemo(tmp_path / "memo.sqlite")
    refs = [ingest_studies_fn(ArtifactStore(tmp_path / f"store_{k}"), tmp_path / k / "studies.parquet", memo)
            for k in ("a", "b")]
    assert refs[0].version == refs[1].version and refs[0].digest == refs[1].digest
    (tmp_path / "b" / "img" / "x.nii.gz").write_bytes(b"other bytes")
    assert ingest_studies_fn(ArtifactStore(tmp_path / "store_b"), tmp_path / "b" / "studies.parquet",
                             memo).version != refs[1].version
