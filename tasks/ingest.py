"""Ingest input files into validated `studies` and `events` artifacts.

The artifact version is a hash of the file bytes (and, for studies, each image's path,
size and modification time), so an edited input is picked up and an unchanged one is not
re-read by later stages.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.schemas import MEDS_EVENTS, QUARANTINE, STUDIES
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter, sha256_file
from data_contracts.validate import (
    check_events,
    check_studies,
    empty_quarantine,
    read_table_file,
    resolve_image_paths,
)
from tasks.stage import run_stage


def _path_stamp(p: Path) -> tuple[int, int]:
    """(bytes, newest mtime) of a file, or summed over a DICOM series folder's files: a
    slice replaced in place changes the folder's stamp, not only adding or removing one."""
    if p.is_dir():
        files = [f.stat() for f in p.iterdir() if f.is_file()]
        return sum(f.st_size for f in files), max((f.st_mtime_ns for f in files), default=0)
    st = p.stat()
    return st.st_size, st.st_mtime_ns


def _image_fingerprint(paths: pd.Series) -> list[tuple[str, int, int]]:
    fp = []
    for p in paths.dropna():
        try:
            fp.append((p, *_path_stamp(Path(p))))
        except OSError:
            fp.append((p, -1, -1))
    return fp


def ingest_studies_fn(store: ArtifactStore, path: Path) -> ArtifactRef:
    """Validate the studies table; bad rows go to the artifact's quarantine table."""
    path = Path(path).resolve()
    raw = read_table_file(path)
    checked = check_studies(raw, str(path))
    data = resolve_image_paths(checked.data, path.parent)
    params = {
        "file": str(path),
        "sha256": sha256_file(path),
        "images": _image_fingerprint(data["image_path"]),
    }

    def build(w: ArtifactWriter) -> None:
        w.write_table("data", data, STUDIES)
        w.write_table("quarantine", checked.quarantine, QUARANTINE)

    return run_stage(store, "studies", STUDIES.key, [], params, build)


def ingest_events_fn(store: ArtifactStore, path: Path) -> ArtifactRef:
    """Validate MEDS events (subject_id int64, time timestamp, code string, numeric_value)."""
    path = Path(path).resolve()
    params = {"file": str(path), "sha256": sha256_file(path)}

    def build(w: ArtifactWriter) -> None:
        checked = check_events(read_table_file(path), str(path))
        w.write_table("data", checked.data, MEDS_EVENTS)
        w.write_table("quarantine", checked.quarantine, QUARANTINE)

    return run_stage(store, "events", MEDS_EVENTS.key, [], params, build)


def quarantine_summary(store: ArtifactStore, refs: list[ArtifactRef]) -> pd.DataFrame:
    """All quarantine rows of the given artifacts, for the CLI summary and the report."""
    frames = []
    for ref in refs:
        if "quarantine" in store.manifest(ref).get("tables", {}):
            q = store.read_table(ref, "quarantine")
            if len(q):
                frames.append(q.assign(artifact=ref.kind))
    if not frames:
        return empty_quarantine().assign(artifact=pd.Series(dtype="string"))
    return pd.concat(frames, ignore_index=True)


@task(name="ingest-studies", cache_policy=NONE)
def ingest_studies(store_root: str, path: str) -> ArtifactRef:
    return ingest_studies_fn(ArtifactStore(store_root), Path(path))


@task(name="ingest-events", cache_policy=NONE)
def ingest_events(store_root: str, path: str) -> ArtifactRef:
    return ingest_events_fn(ArtifactStore(store_root), Path(path))
