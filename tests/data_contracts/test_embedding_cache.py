"""Embedding cache errors name the cache folder, the month and the batch file to delete."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_contracts.embedding_cache import EmbeddingCache
from data_contracts.errors import ContractError

IDENTITY = {"name": "toy", "weights_sha256": "0" * 64, "dim": 2}


def _cache(tmp_path: Path) -> EmbeddingCache:
    cache = EmbeddingCache(tmp_path, "report", IDENTITY)
    cache.commit("2024-01", ["a", "b"], np.ones((1, 2), np.float32), [0], {1: "empty report"})
    return cache


def test_unreadable_batch_names_cache_month_and_file(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    bad = cache.month_dir("2024-01") / "part-99999999999999999999-deadbeef.parquet"
    bad.write_bytes(b"not parquet")
    for read in (cache.done_ids, cache.read_month):
        with pytest.raises(ContractError) as info:
            read("2024-01")
        msg = str(info.value)
        assert str(bad) in msg and str(cache.dir) in msg and "month 2024-01" in msg
        assert isinstance(info.value.__cause__, pa.ArrowException)


def test_batch_with_other_schema_is_named(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    odd = cache.month_dir("2024-01") / "part-99999999999999999999-deadbeef.parquet"
    pq.write_table(pa.table({"study_id": ["c"], "vector": [[1.0, 2.0]]}), odd)
    with pytest.raises(ContractError, match="schema differs") as info:
        cache.read_month("2024-01")
    assert str(odd) in str(info.value) and str(cache.dir) in str(info.value)
    assert cache.done_ids("2024-01") == {"a", "b", "c"}  # study ids alone still read


def test_commit_without_vector_or_error_names_month(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    with pytest.raises(ValueError, match="month 2024-02: batch has neither a vector nor an error") as info:
        cache.commit("2024-02", ["x", "y"], np.ones((1, 2), np.float32), [0], {})
    assert str(cache.dir) in str(info.value)
    assert cache.read_month("2024-01")["study_id"].tolist() == ["a", "b"]
