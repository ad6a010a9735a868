"""Precomputed embeddings: file layouts, every row check (quarantine with a reason), the
file checksum as identity, and the errors that name file and column."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from data_contracts.config import PrecomputedConfig
from data_contracts.errors import ContractError
from models.encoders.precomputed import file_layout, identity, iter_vectors, scan_ids

DIM = 4
SOURCE = "embed:image:precomputed"


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _fixed(path: Path, ids: list, x: np.ndarray) -> Path:
    flat = pa.array(x.reshape(-1), pa.float32())
    pq.write_table(pa.table({"study_id": ids, "embedding": pa.FixedSizeListArray.from_arrays(flat, x.shape[1])}),
                   path)
    return path


def _read(cfg: PrecomputedConfig, wanted: list[str], batch_rows: int = 2) -> tuple[dict, pd.DataFrame, int]:
    """{study_id: vector}, the quarantine rows, ignored file rows."""
    layout = file_layout(cfg)
    scan = scan_ids(layout, wanted, SOURCE)
    got, qs = {}, [scan.quarantine]
    for ids, x, q in iter_vectors(layout, scan.keep, SOURCE, batch_rows):
        got.update(zip(ids, x, strict=True))
        qs.append(q)
    return got, pd.concat(qs, ignore_index=True), scan.n_ignored


def _reason(q: pd.DataFrame, study_id: str) -> str:
    return str(q.loc[q["study_id"] == study_id, "reason"].iloc[0])


def test_fixed_size_list_read_exactly_and_extra_ids_ignored(tmp_path: Path) -> None:
    x = _vectors(5)
    path = _fixed(tmp_path / "e.parquet", [f"s{i}" for i in range(5)], x)
    got, q, ignored = _read(PrecomputedConfig(path=path), ["s0", "s1", "s3", "s4"])
    assert sorted(got) == ["s0", "s1", "s3", "s4"] and len(q) == 0 and ignored == 1
    for i in (0, 1, 3, 4):
        np.testing.assert_array_equal(got[f"s{i}"], x[i])


def test_one_column_per_dimension_auto_and_by_prefix(tmp_path: Path) -> None:
    x = _vectors(3)
    df = pd.DataFrame({"study_id": ["a", "b", "c"], **{f"d{j}": x[:, j].astype(np.float64) for j in range(DIM)}})
    df.to_parquet(tmp_path / "wide.parquet")
    got, q, _ = _read(PrecomputedConfig(path=tmp_path / "wide.parquet"), ["a", "b", "c"])
    assert len(q) == 0
    np.testing.assert_array_equal(np.stack([got[s] for s in "abc"]), x)
    df.assign(site=["x", "y", "z"]).to_parquet(tmp_path / "wide2.parquet")  # a text column besides
    with pytest.raises(ContractError, match=r"non-numeric column.*site"):
        file_layout(PrecomputedConfig(path=tmp_path / "wide2.parquet"))
    got2, _, _ = _read(PrecomputedConfig(path=tmp_path / "wide2.parquet", dim_prefix="d"), ["a", "b", "c"])
    np.testing.assert_array_equal(got2["b"], x[1])


def test_every_row_check_quarantines_with_reason(tmp_path: Path) -> None:
    vecs = [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0], None, [1.0, float("nan"), 3.0, float("inf")],
            [5.0, 6.0, 7.0, 8.0], [0.5, 0.5, 0.5, 0.5], [9.0, 9.0, 9.0, 9.0], [1.0, None, 1.0, 1.0],
            [2.0, 2.0, 2.0, 2.0]]
    ids = ["ok", "short", "null_vec", "nonfinite", "dup", "dup", None, "null_elem", "ok2"]
    path = tmp_path / "var.parquet"
    pq.write_table(pa.table({"study_id": ids, "embedding": pa.array(vecs, pa.list_(pa.float64()))}), path)
    wanted = ["ok", "short", "null_vec", "nonfinite", "dup", "absent", "null_elem", "ok2"]
    got, q, _ = _read(PrecomputedConfig(path=path), wanted, batch_rows=3)
    assert sorted(got) == ["ok", "ok2"]
    np.testing.assert_array_equal(got["ok2"], np.float32([2, 2, 2, 2]))
    assert _reason(q, "short") == "vector has 3 dimensions, expected 4"
    assert _reason(q, "null_vec") == "missing vector (null)"
    assert _reason(q, "nonfinite") == "non-finite or missing values in 2 of 4 dimensions"
    assert _reason(q, "null_elem") == "non-finite or missing values in 1 of 4 dimensions"
    assert _reason(q, "absent") == "no vector in var.parquet"
    dup = q[q["study_id"] == "dup"]
    assert dup["row"].tolist() == [4, 5] and "repeated in the file (rows 4, 5)" in dup["reason"].iloc[0]
    null_id = q[q["study_id"].isna()]
    assert null_id["row"].tolist() == [6] and "null study_id" in null_id["reason"].iloc[0]
    assert q.loc[q["study_id"] == "short", "row"].tolist() == [1]  # the file row
    assert set(q["source"]) == {SOURCE}
    # every wanted study is either embedded or quarantined, once
    assert sorted([*got, *q["study_id"].dropna().drop_duplicates()]) == sorted(wanted)


def test_dimension_from_config_and_first_vector(tmp_path: Path) -> None:
    path = _fixed(tmp_path / "e.parquet", ["a", "b"], _vectors(2))
    assert file_layout(PrecomputedConfig(path=path)).dim == DIM
    with pytest.raises(ContractError, match=r"e\.parquet, column 'embedding': vectors of 4 dimensions.*5"):
        file_layout(PrecomputedConfig(path=path, dim=5))
    var = tmp_path / "var.parquet"
    pq.write_table(pa.table({"study_id": ["a", "b"], "v": pa.array([None, [1.0, 2.0]])}), var)
    assert file_layout(PrecomputedConfig(path=var)).dim == 2
    got, q, _ = _read(PrecomputedConfig(path=var, dim=3), ["a", "b"])
    assert not got and _reason(q, "b") == "vector has 2 dimensions, expected 3"


def test_integer_ids_match_string_study_ids(tmp_path: Path) -> None:
    x = _vectors(2)
    path = _fixed(tmp_path / "e.parquet", pa.array([101, 102], pa.int64()), x)
    got, q, _ = _read(PrecomputedConfig(path=path), ["101", "102"])
    assert len(q) == 0
    np.testing.assert_array_equal(got["102"], x[1])


def test_identity_is_the_file_checksum(tmp_path: Path) -> None:
    path = _fixed(tmp_path / "e.parquet", ["a", "b"], _vectors(2))
    cfg = PrecomputedConfig(path=path)
    ident = identity(cfg, file_layout(cfg))
    assert ident["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and ident["dim"] == DIM
    moved = tmp_path / "sub"
    moved.mkdir()
    cfg2 = PrecomputedConfig(path=path.rename(moved / "e.parquet"))
    assert identity(cfg2, file_layout(cfg2)) == ident  # the path is not part of it
    _fixed(moved / "e.parquet", ["a", "b"], _vectors(2, seed=1))
    assert identity(cfg2, file_layout(cfg2))["sha256"] != ident["sha256"]


def test_bad_files_name_file_and_column(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"nope\.parquet: file not found"):
        file_layout(PrecomputedConfig(path=tmp_path / "nope.parquet"))
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(ContractError, match=r"junk\.parquet: unreadable as parquet"):
        file_layout(PrecomputedConfig(path=tmp_path / "junk.parquet"))
    path = _fixed(tmp_path / "e.parquet", ["a"], _vectors(1))
    with pytest.raises(ContractError, match=r"column 'sid': no id column"):
        file_layout(PrecomputedConfig(path=path, id_column="sid"))
    with pytest.raises(ContractError, match=r"column 'vec': no such column"):
        file_layout(PrecomputedConfig(path=path, vector_column="vec"))
    two = tmp_path / "two.parquet"
    pq.write_table(pa.table({"study_id": ["a"], "u": [[1.0]], "v": [[2.0]]}), two)
    with pytest.raises(ContractError, match=r"list columns \['u', 'v'\].*vector_column"):
        file_layout(PrecomputedConfig(path=two))
    words = tmp_path / "words.parquet"
    pq.write_table(pa.table({"study_id": ["a"], "v": [["x"]]}), words)
    with pytest.raises(ContractError, match=r"column 'v': type list<.*string.*a list column of numbers"):
        file_layout(PrecomputedConfig(path=words))


def test_config_one_layout_only() -> None:
    with pytest.raises(ValidationError, match=r"vector_column.*or dim_prefix"):
        PrecomputedConfig(path=Path("e.parquet"), vector_column="v", dim_prefix="d")
