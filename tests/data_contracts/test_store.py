from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from data_contracts.schemas import ACTIVATIONS
from data_contracts.store import ArtifactCorrupt, ArtifactStore, compute_version


def _acts(n: int = 5) -> pd.DataFrame:
    return pd.DataFrame({"study_id": [f"s{i}" for i in range(n)], "feature_id": range(n), "value": [1.0] * n})


def _write(store: ArtifactStore, version: str = "v1", inputs=()):
    with store.writer(
        "activations", version, contract=ACTIVATIONS.key, inputs=list(inputs), params={"a": 1}
    ) as (w, out):
        w.write_table("data", _acts(), ACTIVATIONS)
        w.path("extra/note.txt").write_text("hello")
    return out[0]


def test_write_read_roundtrip_and_manifest(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    ref = _write(store)
    m = store.manifest(ref)
    assert m["kind"] == "activations" and m["contract"] == "activations@1" and m["rows"] == 5
    assert set(m["files"]) == {"data.parquet", "extra/note.txt"}
    assert m["params"] == {"a": 1} and m["code_version"]
    df = store.read_table(ref)
    assert list(df.columns) == ["study_id", "feature_id", "value"]
    assert str(df["feature_id"].dtype) == "int32"
    assert store.lookup("activations", "v1") == ref


def test_checksum_refusal(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    ref = _write(store)
    f = ref.path / "data.parquet"
    data = bytearray(f.read_bytes())
    data[-20] ^= 0xFF  # same size, different bytes
    f.write_bytes(bytes(data))
    with pytest.raises(ArtifactCorrupt, match="checksum"):
        store.read_table(ref)


def test_truncated_file_not_reused(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    ref = _write(store)
    (ref.path / "data.parquet").write_bytes(b"x")
    assert store.lookup("activations", "v1") is None


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with (
        pytest.raises(RuntimeError, match="boom"),
        store.writer("activations", "v2", contract=None, inputs=[], params={}) as (w, _),
    ):
        w.write_table("data", _acts(), ACTIVATIONS)
        raise RuntimeError("boom")
    kind_dir = tmp_path / "artifacts" / "activations"
    assert list(kind_dir.iterdir()) == []
    assert store.lookup("activations", "v2") is None


def test_input_digest_change_invalidates_dependent(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    parent = _write(store, "p1")
    child = _write(store, "c1", inputs=[parent])
    assert store.lookup("activations", "c1", [parent]) == child
    changed = type(parent)(parent.root, parent.kind, parent.version, "different")
    assert store.lookup("activations", "c1", [changed]) is None


def test_rewrite_replaces_whole(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    _write(store)
    ref = _write(store)
    store.verify(ref)
    assert not [p for p in (tmp_path / "artifacts" / "activations").iterdir() if p.name.startswith(".")]


def test_version_is_content_hash() -> None:
    a = compute_version("k", "c@1", [], {"x": 1, "y": [1, 2]})
    assert a == compute_version("k", "c@1", [], {"y": [1, 2], "x": 1})
    assert a != compute_version("k", "c@2", [], {"x": 1, "y": [1, 2]})
    assert a != compute_version("k", "c@1", [], {"x": 2, "y": [1, 2]})


def test_run_record(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    ref = _write(store)
    path = store.record_run("r1", [ref], {"config": "x"})
    rec = json.loads(Path(path).read_text())
    assert rec["artifacts"] == [ref.to_dict()]


def test_stale_temporaries_of_killed_writers_are_swept(tmp_path: Path) -> None:
    import time

    from data_contracts.store import STALE_TEMP_S

    kind_dir = tmp_path / "artifacts" / "activations"
    kind_dir.mkdir(parents=True)
    old = kind_dir / f".tmp-v9-{int(time.time() - STALE_TEMP_S - 60)}-deadbeef"
    young = kind_dir / f".tmp-v8-{int(time.time())}-feedbeef"
    for d in (old, young):
        d.mkdir()
        (d / "data.parquet").write_bytes(b"partial")
    _write(ArtifactStore(tmp_path))
    assert not old.exists() and young.exists()  # a live writer's folder is young: kept


def test_concurrent_writer_of_the_same_version_keeps_the_first(tmp_path: Path) -> None:
    """Two runs doing the same work at once: the second commit finds the version already
    there and keeps it (no error, no mix)."""
    store = ArtifactStore(tmp_path)
    with store.writer("activations", "v1", contract=ACTIVATIONS.key, inputs=[], params={"a": 1}) as (w, out):
        w.write_table("data", _acts(), ACTIVATIONS)
        (w.path("who.txt")).write_text("second")
        first = _write(store)  # another writer commits v1 while this one is still writing
    assert out[0] == first and (first.path / "extra" / "note.txt").is_file()
    assert not (first.path / "who.txt").exists()
    store.verify(first)
    assert not [p for p in (tmp_path / "artifacts" / "activations").iterdir() if p.name.startswith(".")]
