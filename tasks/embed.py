"""Embed one modality of every study with the configured encoder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.config import ModalityConfig
from data_contracts.schemas import EMBEDDINGS, QUARANTINE
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from data_contracts.validate import quarantine_rows
from models.encoders import build_encoder
from tasks.progress import progress_bar
from tasks.stage import run_stage

_SOURCE_COLUMN = {"report": "report_text", "image": "image_path"}


def embed_fn(store: ArtifactStore, studies: ArtifactRef, modality: ModalityConfig) -> ArtifactRef:
    encoder = build_encoder(modality.encoder)
    column = _SOURCE_COLUMN[modality.modality]
    params = {"modality": modality.modality, "encoder": encoder.identity()}

    def build(w: ArtifactWriter) -> None:
        df = store.read_table(studies, columns=["study_id", column])
        items = [None if pd.isna(v) else str(v) for v in df[column]]
        with progress_bar(len(items), f"embed {modality.modality} ({encoder.name})", "study") as bar:
            res = encoder.encode(items, progress=bar.update)
        ids = df["study_id"].to_numpy()
        vectors = np.asarray(res.vectors, dtype=np.float32).reshape(len(res.ok), -1)
        emb = pa.table({
            "study_id": pa.array(ids[res.ok], pa.string()),
            "embedding": pa.array(list(vectors), pa.list_(pa.float32())),
        })
        bad = np.array(sorted(res.errors), dtype=np.int64)
        q = quarantine_rows(
            f"embed:{modality.modality}:{encoder.name}", bad, "", column, pd.Series(ids[bad])
        )
        q["reason"] = [res.errors[int(i)] for i in bad]
        w.write_table("data", emb, EMBEDDINGS)
        w.write_table("quarantine", q, QUARANTINE)

    return run_stage(store, "embeddings", EMBEDDINGS.key, [studies], params, build)


def load_matrix(store: ArtifactStore, emb: ArtifactRef) -> tuple[np.ndarray, np.ndarray]:
    """(study_ids, float32 matrix) of an embeddings artifact."""
    df = store.read_table(emb)
    if len(df) == 0:
        return df["study_id"].to_numpy(), np.zeros((0, 0), np.float32)
    return df["study_id"].to_numpy(), np.stack(list(df["embedding"])).astype(np.float32)


@task(name="embed", cache_policy=NONE, tags=["embed"])
def embed(store_root: str, studies: ArtifactRef, modality: ModalityConfig) -> ArtifactRef:
    return embed_fn(ArtifactStore(store_root), studies, modality)
