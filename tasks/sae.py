"""Train one SAE per modality; encode every study into sparse long-form activations."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from data_contracts.config import SAEConfig
from data_contracts.schemas import ACTIVATIONS, SAE_METRICS
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from models.cohorts import sparse_activations
from models.sae import encode, load_sae, save_sae, train_sae
from tasks.embed import load_matrix
from tasks.progress import progress_bar
from tasks.stage import run_stage


def train_fn(store: ArtifactStore, embeddings: ArtifactRef, cfg: SAEConfig) -> ArtifactRef:
    def build(w: ArtifactWriter) -> None:
        _, x = load_matrix(store, embeddings)
        if len(x) < 2:
            raise ValueError(
                f"embeddings {embeddings.version}: {len(x)} studies could be embedded, too few to "
                f"train an SAE; the reasons are in {embeddings.path}/quarantine.parquet"
            )
        with progress_bar(cfg.epochs, "train SAE", "epoch") as bar:
            result = train_sae(x, cfg, progress=lambda step, total: bar.update(1))
        save_sae(result.model, cfg, w.tmp)
        rows = [
            {"split": split, "metric": name, "value": value}
            for split, metrics in result.metrics.items()
            for name, value in metrics.items()
        ]
        w.write_table("metrics", pd.DataFrame(rows), SAE_METRICS)

    return run_stage(store, "sae", None, [embeddings], {"sae": cfg.model_dump()}, build)


def activations_fn(store: ArtifactStore, embeddings: ArtifactRef, sae: ArtifactRef) -> ArtifactRef:
    def build(w: ArtifactWriter) -> None:
        ids, x = load_matrix(store, embeddings)
        store.verify(sae)
        model, _ = load_sae(sae.path)
        vals, idx = encode(model, x)
        w.write_table("data", sparse_activations(ids, vals, idx), ACTIVATIONS)

    return run_stage(store, "activations", ACTIVATIONS.key, [embeddings, sae], {}, build)


def sae_size(store: ArtifactStore, sae: ArtifactRef) -> int:
    return int(store.manifest(sae)["params"]["sae"]["n_features"])


@task(name="train-sae", cache_policy=NONE, tags=["train"])
def train(store_root: str, embeddings: ArtifactRef, cfg: SAEConfig) -> ArtifactRef:
    return train_fn(ArtifactStore(store_root), embeddings, cfg)


@task(name="encode-activations", cache_policy=NONE)
def activations(store_root: str, embeddings: ArtifactRef, sae: ArtifactRef) -> ArtifactRef:
    return activations_fn(ArtifactStore(store_root), embeddings, sae)
