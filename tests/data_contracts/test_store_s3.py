"""The artifact store, embedding cache and run records on a real S3 API (moto's server on
loopback): same behaviour as a local folder, and an atomic commit without rename."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import s3fs

from data_contracts.embedding_cache import EmbeddingCache
from data_contracts.schemas import ACTIVATIONS
from data_contracts.store import ArtifactCorrupt, ArtifactStore
from tests.data_contracts.s3_writer import table, write

REPO = Path(__file__).resolve().parents[2]


def _root() -> str:
    return f"s3://medconcepts/{uuid.uuid4().hex[:8]}"


def _fs() -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)


def test_roundtrip_manifest_and_lineage_on_s3(s3_endpoint: str) -> None:
    root = _root()
    write(root, "v1")
    store = ArtifactStore(root)
    ref = store.lookup("activations", "v1")
    assert ref is not None and ref.root == root and ref.url == f"{root}/artifacts/activations/v1"
    m = store.manifest(ref)
    assert m["rows"] == 50 and set(m["files"]) == {"data.parquet", "second.parquet"}
    pd.testing.assert_frame_equal(store.read_table(ref, "second"), table(40, 100), check_dtype=False)
    listed = _fs().find(root.removeprefix("s3://"))
    assert sorted(p.rsplit("/", 1)[-1] for p in listed) == ["data.parquet", "manifest.json", "second.parquet"]
    assert not any("/.tmp-" in p for p in listed)  # the temporary prefix is gone after commit
    local = store.local_dir(ref)
    assert (local / "data.parquet").is_file() and (local / "second.parquet").is_file()
    rec = store.record_run("r1", [ref], {"config": "x"})
    assert rec == f"{root}/runs/r1.json"
    assert json.loads(_fs().cat_file(rec))["artifacts"] == [ref.to_dict()]


def test_damaged_part_is_refused_and_truncated_not_reused(s3_endpoint: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDCONCEPTS_CACHE_DIR", str(tmp_path))  # no checked copy from earlier reads
    root = _root()
    write(root, "v1")
    key = f"{root}/artifacts/activations/v1/data.parquet"
    data = bytearray(_fs().cat_file(key))
    data[-20] ^= 0xFF  # same size, different bytes
    _fs().pipe_file(key, bytes(data))
    store = ArtifactStore(root)
    ref = store.lookup("activations", "v1")
    assert ref is not None  # sizes match: found, but refused when read
    with pytest.raises(ArtifactCorrupt, match="checksum"):
        store.read_table(ref)
    _fs().pipe_file(key, b"x")
    assert store.lookup("activations", "v1") is None


def test_embedding_cache_on_s3(s3_endpoint: str) -> None:
    root = _root()
    cache = EmbeddingCache(root, "report", {"name": "toy", "dim": 2})
    first = cache.commit("2024-01", ["a", "b"], np.ones((1, 2), np.float32), [0], {1: "empty report"})
    cache.commit("2024-01", ["c"], np.full((1, 2), 2, np.float32), [0], {})
    assert first.startswith(f"{root}/embedding_cache/report/toy-") and len(cache.parts("2024-01")) == 2
    got = cache.read_month("2024-01")
    assert got["study_id"].tolist() == ["a", "b", "c"] and got["error"].tolist() == [None, "empty report", None]
    assert np.allclose(np.stack(got["embedding"].iloc[[0, 2]]), [[1, 1], [2, 2]])
    assert cache.done_ids("2024-02") == set()
    assert _fs().isfile(f"{cache.location}/identity.json")


@pytest.mark.parametrize("stage", [("put", 1), ("copy", 1)], ids=["between-uploads", "between-copies"])
def test_writer_killed_between_parts_leaves_nothing_then_rerun_commits(s3_endpoint: str, tmp_path: Path,
                                                                        stage: tuple[str, int]) -> None:
    """SIGKILL a real writer process after its first part (uploaded to the temporary
    prefix, or already copied to the final key): no artifact counts; a rerun commits."""
    root = _root()
    marker = tmp_path / "stalled"
    proc = subprocess.Popen([sys.executable, "-m", "tests.data_contracts.s3_writer", root, "v1",
                             "--stall-after", stage[0], str(stage[1]), "--marker", str(marker)],
                            cwd=REPO, env={**os.environ}, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert marker.exists(), f"writer never reached the kill point (exit {proc.poll()})"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    left = _fs().find(root.removeprefix("s3://"))
    assert any(p.endswith(".parquet") for p in left), "the kill should land after a part was written"
    assert not any(p.endswith("v1/manifest.json") for p in left)
    store = ArtifactStore(root)
    assert store.lookup("activations", "v1") is None
    write(root, "v1")  # the rerun
    ref = store.lookup("activations", "v1")
    assert ref is not None
    pd.testing.assert_frame_equal(store.read_table(ref), table(50, 0), check_dtype=False)
    with store.writer("activations", "v2", contract=ACTIVATIONS.key, inputs=[], params={}) as (w, _):
        w.write_table("data", table(3, 0), ACTIVATIONS)
    assert store.lookup("activations", "v2") is not None
