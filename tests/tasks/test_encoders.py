"""Incremental embedding: month partitions, nothing recomputed, atomic batches survive an
interruption, backfill over a date range, and the `embeddings` artifact SAE reads."""

from __future__ import annotations

import shutil
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_contracts.config import MiniLMConfig, ModalityConfig
from data_contracts.embedding_cache import EmbeddingCache
from data_contracts.store import ArtifactStore
from models.encoders.base import EncodeResult, Modality, ProgressFn
from tasks import encoders as embed_mod
from tasks.encoders import embed_fn, fill_fn, load_matrix, pending_counts, plan_fn, split_partitions
from tasks.ingest import ingest_studies_fn

DIM = 6


def text_vector(text: str) -> np.ndarray:
    """Deterministic stand-in for a model: a seeded vector per text."""
    return np.random.default_rng(zlib.crc32(text.encode())).standard_normal(DIM).astype(np.float32)


class CountingEncoder:
    """Records every item it embeds; `fail_after` batches raise (a killed run)."""

    name = "counting"
    modality: Modality = "report"
    dim = DIM

    def __init__(self, fail_after: int | None = None) -> None:
        self.seen: list[str] = []
        self.calls = 0
        self.fail_after = fail_after

    def identity(self) -> dict[str, object]:
        return {"name": self.name, "weights_sha256": "0" * 64, "dim": DIM}

    def encode(self, items: Sequence[str | None], progress: ProgressFn | None = None) -> EncodeResult:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("worker killed")
        self.calls += 1
        ok = [i for i, t in enumerate(items) if t]
        self.seen.extend(str(items[i]) for i in ok)
        vecs = np.stack([text_vector(str(items[i])) for i in ok]) if ok else np.zeros((0, DIM), np.float32)
        errors = {i: "empty report" for i, t in enumerate(items) if not t}
        return EncodeResult(vecs, np.asarray(ok, dtype=np.int64), errors)


MODALITY = ModalityConfig(modality="report", encoder=MiniLMConfig(), commit_every=4)


def _studies(tmp_path: Path, months: Sequence[str], per_month: int = 5, name: str = "studies.parquet") -> Path:
    rows = []
    for m in months:
        for i in range(per_month):
            sid = f"{m}-{i}"
            rows.append({"study_id": sid, "subject_id": len(rows), "study_time": pd.Timestamp(f"{m}-1{i}"),
                         "report_text": "" if i == 4 else f"report of {sid}"})
    path = tmp_path / name
    pd.DataFrame(rows).to_parquet(path)
    return path


@pytest.fixture
def encoder(monkeypatch: pytest.MonkeyPatch) -> CountingEncoder:
    enc = CountingEncoder()
    monkeypatch.setattr(embed_mod, "build_encoder", lambda cfg: enc)
    return enc


def test_second_extraction_computes_nothing(tmp_path: Path, encoder: CountingEncoder) -> None:
    store = ArtifactStore(tmp_path / "store")
    studies = ingest_studies_fn(store, _studies(tmp_path, ["2024-01", "2024-02"]))
    first = embed_fn(store, studies, MODALITY)
    assert len(encoder.seen) == 8  # 2 months x 4 non-empty reports
    ids, X = load_matrix(store, first)
    np.testing.assert_array_equal(X, np.stack([text_vector(f"report of {s}") for s in ids]))
    q = store.read_table(first, "quarantine")
    assert sorted(q["study_id"]) == ["2024-01-4", "2024-02-4"] and set(q["reason"]) == {"empty report"}
    assert set(q["column"]) == {"report_text"}
    # The artifact deleted: rebuilt from the cache alone, identical.
    before = store.read_table(first)
    shutil.rmtree(first.path)
    again = embed_fn(store, studies, MODALITY)
    assert len(encoder.seen) == 8 and encoder.calls == 3  # 10 studies in batches of 4, once
    pd.testing.assert_frame_equal(store.read_table(again), before)


def test_adding_a_month_computes_only_that_month(tmp_path: Path, encoder: CountingEncoder) -> None:
    store = ArtifactStore(tmp_path / "store")
    embed_fn(store, ingest_studies_fn(store, _studies(tmp_path, ["2024-01", "2024-02"])), MODALITY)
    encoder.seen.clear()
    bigger = ingest_studies_fn(store, _studies(tmp_path, ["2024-01", "2024-02", "2024-03"], name="s2.parquet"))
    emb = embed_fn(store, bigger, MODALITY)
    assert sorted(encoder.seen) == [f"report of 2024-03-{i}" for i in range(4)]
    assert len(store.read_table(emb)) == 12


def test_interrupted_run_keeps_finished_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ArtifactStore(tmp_path / "store")
    studies = ingest_studies_fn(store, _studies(tmp_path, ["2024-01", "2024-02", "2024-03"]))
    dying = CountingEncoder(fail_after=3)  # 15 studies in month order, batches of 4
    monkeypatch.setattr(embed_mod, "build_encoder", lambda cfg: dying)
    with pytest.raises(KeyboardInterrupt):
        embed_fn(store, studies, MODALITY)
    cache = EmbeddingCache(store.root, "report", dying.identity())
    assert cache.done_ids("2024-01") == {f"2024-01-{i}" for i in range(5)}
    assert len(cache.done_ids("2024-02")) == 5
    assert cache.done_ids("2024-03") == {"2024-03-0", "2024-03-1"}  # third batch committed, fourth never ran
    assert not list(cache.dir.rglob("*.tmp")) and (cache.dir / "identity.json").is_file()
    resumed = CountingEncoder()
    monkeypatch.setattr(embed_mod, "build_encoder", lambda cfg: resumed)
    emb = embed_fn(store, studies, MODALITY)
    assert sorted(resumed.seen) == ["report of 2024-03-2", "report of 2024-03-3"]  # 2024-03-4 is empty
    assert len(store.read_table(emb)) == 12 and len(store.read_table(emb, "quarantine")) == 3


def test_backfill_range_and_plan(tmp_path: Path, encoder: CountingEncoder) -> None:
    store = ArtifactStore(tmp_path / "store")
    studies = ingest_studies_fn(store, _studies(tmp_path, ["2023-12", "2024-01", "2024-02", "2024-03"]))
    assert plan_fn(store, studies, MODALITY, "2024-01", "2024-02") == ["2024-01", "2024-02"]
    counts = fill_fn(store, studies, MODALITY, plan_fn(store, studies, MODALITY, "2024-01", "2024-02"))
    assert counts == {"2024-01": 5, "2024-02": 5}
    assert {s.split("-")[1] for s in encoder.seen} == {"01", "02"}
    assert plan_fn(store, studies, MODALITY, "2024-01", "2024-02") == []  # backfill again: nothing
    assert fill_fn(store, studies, MODALITY, []) == {}
    assert plan_fn(store, studies, MODALITY) == ["2023-12", "2024-03"]
    with pytest.raises(ValueError, match="YYYY-MM"):
        plan_fn(store, studies, MODALITY, "2024-1")


def test_new_encoder_identity_gets_its_own_cache(tmp_path: Path, encoder: CountingEncoder,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    store = ArtifactStore(tmp_path / "store")
    studies = ingest_studies_fn(store, _studies(tmp_path, ["2024-01"]))
    embed_fn(store, studies, MODALITY)
    monkeypatch.setattr(encoder, "identity", lambda: {"name": "counting", "weights_sha256": "1" * 64})
    encoder.seen.clear()
    embed_fn(store, studies, MODALITY)
    assert len(encoder.seen) == 4  # new weights: everything recomputed


def test_split_partitions() -> None:
    months = ["2024-01", "2024-02", "2024-03"]
    assert split_partitions(months, 2) == [["2024-01", "2024-03"], ["2024-02"]]
    assert split_partitions(months, 5) == [[m] for m in months]
    assert split_partitions([], 3) == []



def test_precomputed_file_becomes_the_embeddings_artifact(tmp_path: Path) -> None:
    from data_contracts.config import PrecomputedConfig
    from tests.models.encoders.test_precomputed import _fixed

    store = ArtifactStore(tmp_path / "store")
    st = ingest_studies_fn(store, _studies(tmp_path, ["2024-01"], per_month=4))
    x = np.random.default_rng(0).standard_normal((4, DIM)).astype(np.float32)
    x[2, 1] = np.nan
    ids = ["2024-01-3", "2024-01-0", "2024-01-2", "elsewhere-9"]  # 2024-01-1 has no row
    path = _fixed(tmp_path / "emb.parquet", ids, x)
    m = ModalityConfig(modality="image", encoder=PrecomputedConfig(path=path, batch_rows=2))
    assert plan_fn(store, st, m) == [] and fill_fn(store, st, m, plan_fn(store, st, m)) == {}
    assert pending_counts(store, store.read_table(st), m) == {}  # backfill --dry-run: nothing to embed
    ref = embed_fn(store, st, m)
    got_ids, mat = load_matrix(store, ref)
    assert got_ids.tolist() == ["2024-01-3", "2024-01-0"]  # file order, checked rows only
    np.testing.assert_array_equal(mat, x[:2])
    q = store.read_table(ref, "quarantine").set_index("study_id")["reason"]
    assert q.to_dict() == {"2024-01-1": "no vector in emb.parquet",
                           "2024-01-2": f"non-finite or missing values in 1 of {DIM} dimensions"}
    manifest = store.manifest(ref)
    assert manifest["params"]["encoder"]["name"] == "precomputed" and manifest["rows"] == 2
    assert embed_fn(store, st, m) == ref  # same file: reused
    _fixed(path, ids, x + 1)
    assert embed_fn(store, st, m).version != ref.version  # another file content: new embeddings


def test_precomputed_path_resolves_against_the_config(tmp_path: Path) -> None:
    import yaml

    from data_contracts.config import load_run_config

    (tmp_path / "cfg").mkdir()
    raw = {"store": "store", "inputs": {"studies": "s.parquet", "events": "e.parquet", "outcomes": "o.yaml"},
           "modalities": [{"modality": "report", "encoder": {"name": "precomputed", "path": "vec/q.parquet"}}]}
    (tmp_path / "cfg" / "run.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_run_config(tmp_path / "cfg" / "run.yaml")
    assert cfg.modalities[0].encoder.path == (tmp_path / "cfg" / "vec" / "q.parquet").resolve()  # type: ignore[union-attr]


def test_corrected_report_under_the_same_study_id_is_embedded_again(tmp_path: Path,
                                                                    encoder: CountingEncoder) -> None:
    """The cache keys vectors by what was embedded: a corrected report gets a new vector;
    the unchanged ones are not computed again."""
    store = ArtifactStore(tmp_path / "store")
    path = _studies(tmp_path, ["2024-01"])
    embed_fn(store, ingest_studies_fn(store, path), MODALITY)
    df = pd.read_parquet(path)
    df.loc[2, "report_text"] = "corrected: no lesion"
    df.to_parquet(path)
    encoder.seen.clear()
    emb = embed_fn(store, ingest_studies_fn(store, path), MODALITY)
    assert encoder.seen == ["corrected: no lesion"]
    ids, X = load_matrix(store, emb)
    row = list(ids).index(df.loc[2, "study_id"])
    np.testing.assert_array_equal(X[row], text_vector("corrected: no lesion"))
