"""SAE tasks: train one SAE per sweep run (mapped), pick the one used downstream, encode
every study into sparse long-form activations. Embeddings are streamed from parquet."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from prefect import Task, task
from prefect.cache_policies import NONE
from prefect.futures import PrefectFutureList

from data_contracts.config import SAEConfig
from data_contracts.schemas import ACTIVATIONS, SAE_METRICS, SAE_SWEEP
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from models.cohorts import sparse_activations
from models.sae.checkpoint import load_sae, read_meta, save_sae
from models.sae.data import ParquetSource
from models.sae.encode import iter_encoded
from models.sae.sweep import sweep_row, sweep_table
from models.sae.train import train_sae
from tasks.progress import progress_bar
from tasks.stage import log, run_stage


def _embedding_source(store: ArtifactStore, embeddings: ArtifactRef, chunk_rows: int) -> ParquetSource:
    m = store.manifest(embeddings)
    return ParquetSource(store.file_path(embeddings, m["tables"]["data"]["file"]), "embedding", chunk_rows)


def train_fn(store: ArtifactStore, embeddings: ArtifactRef, cfg: SAEConfig) -> ArtifactRef:
    def build(w: ArtifactWriter) -> None:
        source = _embedding_source(store, embeddings, cfg.chunk_rows)
        if source.n_rows < 2:
            raise ValueError(
                f"embeddings {embeddings.version}: {source.n_rows} studies could be embedded, too few to "
                f"train an SAE; the reasons are in {embeddings.url}/quarantine.parquet"
            )
        with progress_bar(cfg.epochs, f"train SAE {cfg.variant} N={cfg.n_features} k={cfg.k}", "epoch") as bar:
            result = train_sae(source, cfg, progress=lambda step, total: bar.update(1))
        metrics = {k: dict(v) for k, v in result.metrics.items()}
        # Speed is logged, not stored: an artifact holds what the inputs determine, so two
        # runs of the same work are byte-identical (benchmarks/ measures speed).
        metrics.setdefault("train", {}).update(steps=float(result.steps))
        log.info("sae %s N=%d k=%d: %d steps, %.0f samples/s", cfg.variant, cfg.n_features, cfg.k, result.steps,
                 result.samples_per_s)
        save_sae(result.model, cfg, w.tmp, metrics)
        rows = [{"split": s, "metric": n, "value": v} for s, vals in metrics.items() for n, v in vals.items()]
        w.write_table("metrics", pd.DataFrame(rows), SAE_METRICS)

    return run_stage(store, "sae", None, [embeddings], {"sae": cfg.model_dump()}, build)


def select_fn(store: ArtifactStore, embeddings: ArtifactRef, runs: Sequence[ArtifactRef], base: SAEConfig
              ) -> tuple[ArtifactRef, ArtifactRef]:
    """Write the sweep-results table; return (selected SAE, sweep artifact)."""
    rows = []
    for ref in runs:
        # Every run is checked whole (a damaged run fails the sweep, as before); ranking
        # then reads only its JSON, not the weights.
        meta = read_meta(store.local_dir(ref))
        rows.append(sweep_row(ref.version, SAEConfig.model_validate(meta["config"]), meta["prefixes"],
                              meta.get("metrics", {})))
    table, chosen = sweep_table(rows, base)

    def build(w: ArtifactWriter) -> None:
        w.write_table("data", table, SAE_SWEEP)

    sweep = run_stage(store, "sae_sweep", SAE_SWEEP.key, [embeddings, *runs], {"base": base.model_dump()}, build)
    return runs[chosen], sweep


def activations_fn(store: ArtifactStore, embeddings: ArtifactRef, sae: ArtifactRef) -> ArtifactRef:
    def build(w: ArtifactWriter) -> None:
        model, cfg = load_sae(store.local_dir(sae))
        source = _embedding_source(store, embeddings, cfg.chunk_rows)
        ids = pq.read_table(source.path, columns=["study_id"]).column(0).to_numpy(zero_copy_only=False)
        parts, start = [], 0
        for vals, idx in iter_encoded(model, (x for _, x in source.chunks())):
            parts.append(sparse_activations(ids[start : start + len(vals)], vals, idx))
            start += len(vals)
        if not parts:
            parts = [sparse_activations(ids[:0], np.zeros((0, model.k), np.float32), np.zeros((0, model.k), np.int64))]
        data = pd.concat(parts, ignore_index=True)
        w.write_table("data", data.sort_values(["study_id", "feature_id"], ignore_index=True), ACTIVATIONS)

    return run_stage(store, "activations", ACTIVATIONS.key, [embeddings, sae], {}, build)


def sae_size(store: ArtifactStore, sae: ArtifactRef) -> int:
    return int(store.manifest(sae)["params"]["sae"]["n_features"])


@task(name="train-sae", cache_policy=NONE, tags=["train"])
def train(store_root: str, embeddings: ArtifactRef, cfg: SAEConfig) -> ArtifactRef:
    return train_fn(ArtifactStore(store_root), embeddings, cfg)


def sae_on_gpu(runs: Sequence[SAEConfig]) -> bool:
    """A run asks for CUDA, or for 'auto' where this process sees a GPU. Decided from the
    configs without resolving 'cuda' here: resolving raises on a machine without a GPU."""
    return any(c.device == "cuda" or (c.device == "auto" and gpu_visible()) for c in runs)


def trainer_for(runs: Sequence[SAEConfig]) -> Task:
    """The train task, tagged "gpu" when `sae_on_gpu` (the runs train in the flow's task
    runner), so a `gpu` tag concurrency limit caps how many share it."""
    return train.with_options(tags=["train", "gpu"]) if sae_on_gpu(runs) else train


def gpu_visible() -> bool:
    return torch.cuda.is_available()


@task(name="select-sae", cache_policy=NONE)
def select(store_root: str, embeddings: ArtifactRef, runs: Sequence[ArtifactRef] | PrefectFutureList[Any],
           base: SAEConfig) -> tuple[ArtifactRef, ArtifactRef]:
    # Prefect resolves mapped futures to their refs before the call.
    return select_fn(ArtifactStore(store_root), embeddings, cast(Sequence[ArtifactRef], runs), base)


@task(name="encode-activations", cache_policy=NONE)
def activations(store_root: str, embeddings: ArtifactRef, sae: ArtifactRef) -> ArtifactRef:
    return activations_fn(ArtifactStore(store_root), embeddings, sae)


# ---------------------------------------------------------------- the published SAE
def _pointer(modality: str) -> str:
    return f"published/sae/{modality}.json"


def publish_sae_fn(store: ArtifactStore, modality: str, embeddings: ArtifactRef, sae: ArtifactRef,
                   sweep: ArtifactRef | None) -> str:
    """Make `sae` the one later runs with sae_policy 'reuse' encode with (one small file,
    replaced atomically), recording the encoder identity it was trained on."""
    record = {
        "modality": modality,
        "sae": sae.to_dict(),
        "sae_sweep": sweep.to_dict() if sweep is not None else None,
        "trained_on": embeddings.to_dict(),
        "encoder": store.manifest(embeddings)["params"].get("encoder"),
        "published": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    store.storage.write_atomic(_pointer(modality), json.dumps(record, indent=2, default=str).encode())
    return store.storage.url_of(_pointer(modality))


def published_sae_fn(store: ArtifactStore, modality: str, embeddings: ArtifactRef) -> ArtifactRef | None:
    """The published SAE of `modality` if it exists whole and was trained on embeddings of
    the same encoder identity as `embeddings` (else None: train a new one)."""
    try:
        record = json.loads(store.storage.read_bytes(_pointer(modality)))
    except (FileNotFoundError, ValueError):
        return None
    if record.get("encoder") != store.manifest(embeddings)["params"].get("encoder"):
        log.info("published SAE of %s was trained on another encoder: training a new one", modality)
        return None
    return store.lookup("sae", record["sae"]["version"])


@task(name="published-sae", cache_policy=NONE)
def published_sae(store_root: str, modality: str, embeddings: ArtifactRef) -> ArtifactRef | None:
    return published_sae_fn(ArtifactStore(store_root), modality, embeddings)


@task(name="publish-sae", cache_policy=NONE)
def publish_sae(store_root: str, modality: str, embeddings: ArtifactRef, sae: ArtifactRef,
                sweep: ArtifactRef | None) -> str:
    return publish_sae_fn(ArtifactStore(store_root), modality, embeddings, sae, sweep)
