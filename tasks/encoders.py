"""Embed one modality of every study with the configured encoder, incrementally.

Per-study vectors live in the embedding cache (`data_contracts/embedding_cache.py`),
partitioned by study month and keyed by the encoder's identity (name, weights checksum,
preprocessing): only studies without a committed vector for this identity are computed,
in batches of `commit_every` that are committed atomically, so an interrupted run or a
backfill recomputes nothing already done. The `embeddings` artifact (contract
`embeddings@1`: study_id, embedding) is then assembled from the cache for the studies
table at hand, with a quarantine table of the studies that could not be embedded.

Flows map month partitions over `workers` tasks and then call `embed`, which finds
everything cached and only assembles. The tasks run on the flow run's task runner: threads
of the flow process by default, or a Dask cluster (`runner.kind: dask`, flows/runner.py),
where tasks of GPU stages request the resource `GPU: 1`. A Prefect work pool routes whole
flow runs, not tasks. Each process builds an encoder once (`shared_encoder`), so a worker
loads a model once for all the partitions it runs. Tasks of GPU encoders also carry the tag
`gpu`, so a tag concurrency limit can cap how many run at once on the thread runner.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.checksums import MISSING, ChecksumMemo
from data_contracts.config import ModalityConfig, PrecomputedConfig
from data_contracts.embedding_cache import EmbeddingCache, check_month, study_months
from data_contracts.schemas import EMBEDDINGS, QUARANTINE
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from data_contracts.validate import absolute_image_path, quarantine_rows
from models.encoders import Encoder, EncodeResult, build_encoder, precomputed, shared_encoder
from tasks.progress import progress_bar
from tasks.stage import log, run_stage

_SOURCE_COLUMN = {"report": "report_text", "image": "image_path"}
_GPU_ENCODERS = {"merlin", "qwen3_embedding"}


def studies_frame(store: ArtifactStore, studies: ArtifactRef, modality: ModalityConfig,
                  images_root: str | None = None) -> pd.DataFrame:
    """study_id, item (report text / absolute image path, None when missing), month, key
    (checksum of the text or of the image's content: what the cached vector must match).
    Relative image paths resolve against `images_root`, the studies file's folder."""
    column = _SOURCE_COLUMN[modality.modality]
    return frame_of(store.read_table(studies, columns=["study_id", "study_time", column]), modality, images_root)


def frame_of(df: pd.DataFrame, modality: ModalityConfig, images_root: str | None = None) -> pd.DataFrame:
    """study_id, item, month, key of a (validated) studies table (see `studies_frame`)."""
    column = _SOURCE_COLUMN[modality.modality]
    if modality.modality == "image":
        root = Path(images_root) if images_root else None
        items = [absolute_image_path(v, root) for v in df[column]]
        sums = iter(ChecksumMemo().many(Path(p) for p in items if p is not None))
        keys = [next(sums) if p is not None else MISSING for p in items]
    else:
        items = [None if pd.isna(v) else str(v) for v in df[column]]
        keys = [hashlib.sha256(t.encode()).hexdigest() if t is not None else MISSING for t in items]
    return pd.DataFrame({"study_id": df["study_id"].astype(str), "item": items,
                         "month": study_months(df["study_time"]), "key": keys})


def select_months(months: Iterable[str], since: str | None = None, until: str | None = None) -> list[str]:
    """Sorted distinct months within [since, until] (inclusive, 'YYYY-MM')."""
    lo = check_month(since) if since else "0000-01"
    hi = check_month(until) if until else "9999-12"
    if lo > hi:
        raise ValueError(f"--since {since} is after --until {until}")
    return sorted({m for m in months if lo <= m <= hi})


def _not_done(frame: pd.DataFrame, months: Iterable[str],
              done: Callable[[str], Iterable[tuple[str, str]]]) -> pd.DataFrame:
    """Rows of `frame` in `months` whose (study_id, key) is not in `done(month)`."""
    rows = frame[frame["month"].isin(list(months))]
    parts = []
    for m, g in rows.groupby("month", sort=True):
        have = set(done(str(m)))
        parts.append(g[[(s, k) not in have for s, k in zip(g["study_id"], g["key"], strict=True)]])
    return pd.concat(parts) if parts else frame.iloc[:0]


def pending(cache: EmbeddingCache, frame: pd.DataFrame, months: Sequence[str]) -> pd.DataFrame:
    """Rows of `frame` in `months` without a committed vector or error for their content."""
    return _not_done(frame, months, cache.done_keys)


def fill_cache(cache: EmbeddingCache, encoder: Encoder, todo: pd.DataFrame, commit_every: int) -> dict[str, int]:
    """Embed `todo` in batches of `commit_every` studies (month order, so a batch spans
    few months), committing each batch's months atomically as soon as it is done.
    Returns the number of studies computed per month."""
    counts: dict[str, int] = {}
    todo = todo.sort_values("month", kind="stable")
    with progress_bar(len(todo), f"embed {encoder.modality} ({encoder.name})", "study") as bar:
        for start in range(0, len(todo), commit_every):
            chunk = todo.iloc[start : start + commit_every]
            res = encoder.encode(chunk["item"].tolist(), progress=bar.update)
            _commit_by_month(cache, chunk, res)
            for month, n in chunk["month"].value_counts().items():
                counts[str(month)] = counts.get(str(month), 0) + int(n)
    return counts


def _commit_by_month(cache: EmbeddingCache, chunk: pd.DataFrame, res: EncodeResult) -> None:
    months = chunk["month"].to_numpy()
    ids, keys = chunk["study_id"].tolist(), chunk["key"].tolist()
    for month in sorted(set(months)):
        pos = np.flatnonzero(months == month)  # positions of this month in the chunk
        local = {int(p): i for i, p in enumerate(pos)}
        keep = [r for r, p in enumerate(res.ok) if int(p) in local]
        cache.commit(str(month), [ids[p] for p in pos], res.vectors[keep],
                     [local[int(res.ok[r])] for r in keep],
                     {local[p]: e for p, e in res.errors.items() if p in local}, [keys[p] for p in pos])


def _encoder(modality: ModalityConfig) -> Encoder:
    """Built once per process: every partition task a worker runs reuses its loaded model."""
    return shared_encoder(modality.encoder, build_encoder)


def _cache(store: ArtifactStore, modality: ModalityConfig, encoder: Encoder) -> EmbeddingCache:
    return EmbeddingCache(store.root, modality.modality, encoder.identity())


def plan_fn(store: ArtifactStore, studies: ArtifactRef, modality: ModalityConfig,
            since: str | None = None, until: str | None = None, images_root: str | None = None) -> list[str]:
    """Months in [since, until] that still have studies to embed (none for precomputed
    embeddings: the file is their cache)."""
    if isinstance(modality.encoder, PrecomputedConfig):
        return []
    encoder = _encoder(modality)
    frame = studies_frame(store, studies, modality, images_root)
    todo = pending(_cache(store, modality, encoder), frame, select_months(frame["month"], since, until))
    return sorted(todo["month"].unique().tolist())


def pending_counts(store: ArtifactStore, studies: pd.DataFrame, modality: ModalityConfig,
                   since: str | None = None, until: str | None = None,
                   images_root: str | None = None) -> dict[str, int]:
    """{month: studies without a committed vector or error for their content} within
    [since, until] (none for precomputed embeddings)."""
    if isinstance(modality.encoder, PrecomputedConfig):
        return {}
    frame = frame_of(studies, modality, images_root)
    todo = pending(_cache(store, modality, _encoder(modality)), frame, select_months(frame["month"], since, until))
    return {str(m): int(n) for m, n in todo["month"].value_counts().sort_index().items()}


def fill_fn(store: ArtifactStore, studies: ArtifactRef, modality: ModalityConfig,
            months: Sequence[str], images_root: str | None = None) -> dict[str, int]:
    """Embed the missing studies of `months`; {month: studies computed}."""
    if not months:
        return {}
    encoder = _encoder(modality)
    cache = _cache(store, modality, encoder)
    frame = studies_frame(store, studies, modality, images_root)
    counts = fill_cache(cache, encoder, pending(cache, frame, list(months)), modality.commit_every)
    log.info("embed %s (%s): computed %d studies in %d month(s)", modality.modality, encoder.name,
             sum(counts.values()), len(counts))
    return counts


def _cached_rows(cache: EmbeddingCache, encoder: Encoder, frame: pd.DataFrame, commit_every: int) -> pd.DataFrame:
    """Cache rows of every month of `frame`, each month read once. Studies with no row
    (normally none: the flow's partition tasks filled the cache) are embedded first and
    only their months read again."""
    months = sorted(frame["month"].unique())
    cached = {m: cache.read_month(m) for m in months}
    todo = _not_done(frame, months, lambda m: zip(cached[m]["study_id"], cached[m]["item_sha256"], strict=True))
    if len(todo):
        fill_cache(cache, encoder, todo, commit_every)
        cached.update({m: cache.read_month(m) for m in sorted(todo["month"].unique())})
    return pd.concat([cached[m] for m in months]) if months else cache.read_month("0001-01")


def _assemble(cache: EmbeddingCache, cached: pd.DataFrame, frame: pd.DataFrame, w: ArtifactWriter,
              source: str, column: str) -> None:
    got = frame[["study_id", "key"]].merge(cached.rename(columns={"item_sha256": "key"}), on=["study_id", "key"],
                                           how="left")  # studies-table order, vectors of today's content
    lost = got.loc[got["embedding"].isna() & got["error"].isna(), "study_id"].tolist()
    if lost:
        raise RuntimeError(f"{cache.location}: {len(lost)} studies missing from the cache, e.g. {lost[:3]}")
    ok = got["embedding"].notna().to_numpy()
    vectors = [np.asarray(v, dtype=np.float32) for v in got.loc[ok, "embedding"]]
    w.write_table("data", pa.table({
        "study_id": pa.array(got.loc[ok, "study_id"].tolist(), pa.string()),
        "embedding": pa.array(vectors, pa.list_(pa.float32())),
    }), EMBEDDINGS)
    bad = np.flatnonzero(~ok)
    q = quarantine_rows(source, bad, "", column, got["study_id"].iloc[bad].reset_index(drop=True))
    q["reason"] = got["error"].iloc[bad].fillna("not embedded").tolist()
    w.write_table("quarantine", q, QUARANTINE)


def embed_fn(store: ArtifactStore, studies: ArtifactRef, modality: ModalityConfig,
             images_root: str | None = None) -> ArtifactRef:
    """The `embeddings` artifact for every study; computes only what the cache lacks.
    `images_root`: the studies file's folder (relative image paths); not a parameter of
    the artifact, which depends on the images' content (in the studies version)."""
    if isinstance(modality.encoder, PrecomputedConfig):
        return precomputed_fn(store, studies, modality, modality.encoder)
    encoder = _encoder(modality)
    identity = encoder.identity()
    params = {"modality": modality.modality, "encoder": identity}

    def build(w: ArtifactWriter) -> None:
        cache = EmbeddingCache(store.root, modality.modality, identity)
        frame = studies_frame(store, studies, modality, images_root)
        cached = _cached_rows(cache, encoder, frame, modality.commit_every)
        _assemble(cache, cached, frame, w, f"embed:{modality.modality}:{encoder.name}",
                  _SOURCE_COLUMN[modality.modality])

    return run_stage(store, "embeddings", EMBEDDINGS.key, [studies], params, build)


def precomputed_fn(store: ArtifactStore, studies: ArtifactRef, modality: ModalityConfig,
                   cfg: PrecomputedConfig) -> ArtifactRef:
    """The `embeddings` artifact read from a precomputed file, checked, in file order,
    streamed batch by batch; studies that fail a check go to its quarantine table."""
    layout = precomputed.file_layout(cfg)
    params = {"modality": modality.modality, "encoder": precomputed.identity(cfg, layout)}
    source = f"embed:{modality.modality}:precomputed:{layout.path}"

    def build(w: ArtifactWriter) -> None:
        wanted = store.read_table(studies, columns=["study_id"])["study_id"].astype(str).tolist()
        scan = precomputed.scan_ids(layout, wanted, source)
        quarantine = [scan.quarantine]
        with w.table_writer("data", EMBEDDINGS) as write:
            step = max(1, (2**31 - 1) // max(1, layout.dim))  # list<float32> offsets are int32
            for ids, x, q in precomputed.iter_vectors(layout, scan.keep, source, cfg.batch_rows):
                for s in range(0, len(x), step):
                    write(pa.table({"study_id": pa.array(ids[s:s + step], pa.string()),
                                    "embedding": list_array(x[s:s + step])}))
                quarantine.append(q)
        q_all = pd.concat([q for q in quarantine if len(q)] or [scan.quarantine], ignore_index=True)
        w.write_table("quarantine", q_all, QUARANTINE)
        log.info("embed %s (precomputed): %d studies quarantined, %d file rows name no study (ignored)",
                 modality.modality, len(q_all), scan.n_ignored)

    return run_stage(store, "embeddings", EMBEDDINGS.key, [studies], params, build)


def list_array(x: np.ndarray) -> pa.ListArray:
    """An (n, d) matrix as a list<float32> column without a per-row Python loop."""
    n, d = x.shape
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32) if n else np.zeros(1, np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(x, np.float32).reshape(-1)))


def load_matrix(store: ArtifactStore, emb: ArtifactRef) -> tuple[np.ndarray, np.ndarray]:
    """(study_ids, float32 matrix) of an embeddings artifact."""
    df = store.read_table(emb)
    if len(df) == 0:
        return df["study_id"].to_numpy(), np.zeros((0, 0), np.float32)
    return df["study_id"].to_numpy(), np.stack(list(df["embedding"])).astype(np.float32)


def split_partitions(months: Sequence[str], workers: int) -> list[list[str]]:
    """Months dealt round-robin to at most `workers` groups (none empty)."""
    groups = [list(months[i::workers]) for i in range(max(1, workers))]
    return [g for g in groups if g]


def encoder_tags(modality: ModalityConfig) -> list[str]:
    """Task tags: `gpu` for encoders that run on a GPU (explicit cuda, or a foundation
    model on 'auto'), so a tag concurrency limit can cap how many run at once."""
    device = getattr(modality.encoder, "device", "cpu")
    gpu = device == "cuda" or (device == "auto" and modality.encoder.name in _GPU_ENCODERS)
    return ["embed", "gpu"] if gpu else ["embed"]


@task(name="plan-embedding", cache_policy=NONE, tags=["embed"])
def plan_embedding(store_root: str, studies: ArtifactRef, modality: ModalityConfig,
                   since: str | None = None, until: str | None = None, images_root: str | None = None) -> list[str]:
    return plan_fn(ArtifactStore(store_root), studies, modality, since, until, images_root)


@task(name="embed-partitions", cache_policy=NONE, tags=["embed"])
def embed_partitions(store_root: str, studies: ArtifactRef, modality: ModalityConfig,
                     months: list[str], images_root: str | None = None) -> dict[str, int]:
    return fill_fn(ArtifactStore(store_root), studies, modality, months, images_root)


@task(name="embed", cache_policy=NONE, tags=["embed"])
def embed(store_root: str, studies: ArtifactRef, modality: ModalityConfig,
          images_root: str | None = None) -> ArtifactRef:
    return embed_fn(ArtifactStore(store_root), studies, modality, images_root)
