"""SAE tasks on a store: mapped sweep runs, selection artifact, streamed encoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tasks.sae as sae_tasks
from data_contracts.config import SAEConfig, SAESweepConfig
from data_contracts.schemas import EMBEDDINGS
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter
from models.cohorts import sparse_activations
from models.sae.checkpoint import load_sae
from models.sae.encode import encode
from tasks.sae import activations_fn, select_fn, train_fn, trainer_for
from tasks.stage import run_stage


def _embeddings(store: ArtifactStore, x: np.ndarray) -> ArtifactRef:
    def build(w: ArtifactWriter) -> None:
        ids = [f"s{i:04d}" for i in range(len(x))]
        w.write_table("data", pd.DataFrame({"study_id": ids, "embedding": list(x)}), EMBEDDINGS)

    return run_stage(store, "embeddings", EMBEDDINGS.key, [], {"n": len(x)}, build)


def test_sweep_select_and_encode(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 12)).astype(np.float32)
    store = ArtifactStore(tmp_path)
    emb = _embeddings(store, x)
    base = SAEConfig(variant="matryoshka_topk", n_features=24, k=3, epochs=2, batch_size=32, device="cpu",
                     chunk_rows=40)  # several parquet chunks per epoch
    runs = [train_fn(store, emb, c) for c in SAESweepConfig(variants=("topk", "matryoshka_topk"),
                                                             n_features=(24,), k=(3,)).expand(base)]
    assert train_fn(store, emb, base) == runs[1]  # same config: the artifact is reused
    sae, sweep = select_fn(store, emb, runs, base)
    assert sae == runs[1]
    table = store.read_table(sweep)
    assert table["selected"].tolist() == [False, True]
    assert table["variant"].tolist() == ["topk", "matryoshka_topk"]
    assert table["heldout_fvu"].notna().all() and len(table.loc[1, "heldout_prefix_fvu"]) == 2
    metrics = store.read_table(sae, "metrics")
    assert {"fvu", "dead_frac", "freq_log10_0"} <= set(metrics["metric"])

    act = store.read_table(activations_fn(store, emb, sae))
    model, _ = load_sae(sae.path)
    vals, idx = encode(model, x)
    want = sparse_activations(np.array([f"s{i:04d}" for i in range(len(x))]), vals, idx)
    pd.testing.assert_frame_equal(act.reset_index(drop=True), want, check_dtype=False)


def test_trainer_tags_gpu_from_the_configs_without_resolving_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, auto = SAEConfig(device="cpu"), SAEConfig(device="auto")
    monkeypatch.setattr(sae_tasks, "gpu_visible", lambda: False)
    assert "gpu" not in trainer_for([cpu, auto]).tags
    # A sweep asking for CUDA is wired (and tagged) even on an orchestrator without a GPU.
    assert "gpu" in trainer_for([cpu, SAEConfig(device="cuda")]).tags
    monkeypatch.setattr(sae_tasks, "gpu_visible", lambda: True)
    assert "gpu" in trainer_for([auto]).tags
    assert "gpu" not in trainer_for([cpu]).tags


def _encoded(store: ArtifactStore, x: np.ndarray, encoder: dict[str, object]) -> ArtifactRef:
    def build(w: ArtifactWriter) -> None:
        ids = [f"s{i:04d}" for i in range(len(x))]
        w.write_table("data", pd.DataFrame({"study_id": ids, "embedding": list(x)}), EMBEDDINGS)

    params = {"modality": "report", "encoder": encoder, "n": len(x)}
    return run_stage(store, "embeddings", EMBEDDINGS.key, [], params, build)


def test_published_sae_is_reused_only_for_the_same_encoder(tmp_path: Path) -> None:
    from tasks.sae import publish_sae_fn, published_sae_fn

    rng = np.random.default_rng(1)
    store = ArtifactStore(tmp_path)
    old = _encoded(store, rng.normal(size=(40, 6)).astype(np.float32), {"name": "toy", "weights": "a"})
    assert published_sae_fn(store, "report", old) is None  # nothing published yet
    sae = train_fn(store, old, SAEConfig(variant="topk", n_features=8, k=2, epochs=1, device="cpu"))
    publish_sae_fn(store, "report", old, sae, None)
    grown = _encoded(store, rng.normal(size=(50, 6)).astype(np.float32), {"name": "toy", "weights": "a"})
    assert grown != old and published_sae_fn(store, "report", grown) == sae  # new studies, same encoder
    other = _encoded(store, rng.normal(size=(50, 6)).astype(np.float32), {"name": "toy", "weights": "b"})
    assert published_sae_fn(store, "report", other) is None  # other weights: train anew
    assert published_sae_fn(store, "image", grown) is None
    import shutil

    shutil.rmtree(sae.path)
    assert published_sae_fn(store, "report", grown) is None  # published artifact gone: train anew
