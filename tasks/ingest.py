"""Ingest input files into validated `studies` and `events` artifacts.

The artifact version is a hash of what the inputs contain: the table file's bytes and, for
studies, each image's content (data_contracts/checksums.py: each file is read once, then
remembered by path, size and mtime). Not their location or modification times: the same
inputs in another folder give the same versions, an edited input a new one. Image paths are
stored as written (relative ones resolve against the studies file's folder when embedding).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.checksums import ChecksumMemo
from data_contracts.config import OutcomeSettings
from data_contracts.schemas import MEDS_EVENTS, QUARANTINE, STUDIES
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from data_contracts.validate import (
    absolute_image_path,
    check_events,
    check_image_paths,
    check_studies,
    empty_quarantine,
    read_table_file,
)
from tasks.stage import log, run_stage


def images_digest(paths: pd.Series, base: Path, memo: ChecksumMemo) -> str:
    """One hash over the content of every image, in table order ('-' where none)."""
    todo = [(i, Path(a)) for i, p in enumerate(paths) if (a := absolute_image_path(p, base)) is not None]
    sums = dict(zip((i for i, _ in todo), memo.many(p for _, p in todo), strict=True))
    listing = "".join(f"{sums.get(i, '-')}\n" for i in range(len(paths)))
    return hashlib.sha256(listing.encode()).hexdigest()


def ingest_studies_fn(store: ArtifactStore, path: Path, memo: ChecksumMemo | None = None) -> ArtifactRef:
    """Validate the studies table; bad rows go to the artifact's quarantine table."""
    path = Path(path).resolve()
    memo = memo or ChecksumMemo()
    raw = read_table_file(path)
    checked = check_studies(raw, str(path))
    data, outside = check_image_paths(checked, path.parent, str(path))
    if checked.ignored_columns:
        log.warning("studies: %d column(s) not in the contract were not read: %s", len(checked.ignored_columns),
                    checked.ignored_columns)
    params = {
        "sha256": memo.content_sha256(path),
        "images": images_digest(data["image_path"], path.parent, memo),
        "ignored_columns": checked.ignored_columns,
    }

    def build(w: ArtifactWriter) -> None:
        w.write_table("data", data, STUDIES)
        w.write_table("quarantine", pd.concat([checked.quarantine, outside], ignore_index=True), QUARANTINE)

    return run_stage(store, "studies", STUDIES.key, [], params, build)


def ingest_events_fn(store: ArtifactStore, path: Path, settings: OutcomeSettings | None = None,
                     memo: ChecksumMemo | None = None) -> ArtifactRef:
    """Validate MEDS events (subject_id int64, time timestamp, code string, numeric_value);
    repeated rows and rows dated before birth or after death are quarantined (birth and
    death codes from `settings`)."""
    path = Path(path).resolve()
    settings = settings or OutcomeSettings()
    params = {"sha256": (memo or ChecksumMemo()).content_sha256(path),
              "birth_code": settings.birth_code, "death_code": settings.death_code}

    def build(w: ArtifactWriter) -> None:
        checked = check_events(read_table_file(path), str(path), settings.birth_code, settings.death_code)
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
def ingest_events(store_root: str, path: str, settings: OutcomeSettings | None = None) -> ArtifactRef:
    return ingest_events_fn(ArtifactStore(store_root), Path(path), settings)
