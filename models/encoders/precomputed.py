"""Embeddings computed elsewhere: a parquet file of study id + vector, read in record
batches and checked row by row.

Many teams already hold Merlin or Qwen3-Embedding vectors made on another cluster; this
reads them instead of an encoder. The file is never held whole: the id column is read
once (missing, null and repeated ids), then the vectors stream through in batches of
`batch_rows`, each row checked for its length and for non-finite values. A study that
fails a check is not embedded; it goes to the quarantine table with the reason (and the
file row where there is one), and the run goes on with the rest. Ids in the file that the
studies table does not name are ignored (counted). The file's SHA-256 is the encoder's
identity, so a changed file is never mistaken for the old one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data_contracts.config import PrecomputedConfig
from data_contracts.errors import ContractError
from data_contracts.store import sha256_file

QUARANTINE_COLUMNS = ["source", "row", "study_id", "column", "reason"]


@dataclass(frozen=True)
class Layout:
    """Where the vectors are: one list column, or one numeric column per dimension."""

    path: Path
    id_column: str
    vector_column: str | None
    dim_columns: tuple[str, ...]
    dim: int

    @property
    def columns(self) -> list[str]:
        return [self.vector_column] if self.vector_column else list(self.dim_columns)

    @property
    def column_text(self) -> str:
        """The vector columns as errors and quarantine rows name them."""
        cols = self.dim_columns
        return self.vector_column or (f"{cols[0]}..{cols[-1]}" if len(cols) > 1 else cols[0])


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)


def _schema(path: Path) -> pa.Schema:
    if not path.is_file():
        raise ContractError(str(path), None, None, "file not found", "a parquet file of study ids and vectors")
    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowException) as e:
        raise ContractError(str(path), None, None, f"unreadable as parquet ({e})", "a parquet file") from e


def file_layout(cfg: PrecomputedConfig) -> Layout:
    """Check the file's columns against the config; ContractError names what is wrong."""
    path = Path(cfg.path)
    schema = _schema(path)
    names = schema.names
    if cfg.id_column not in names:
        raise ContractError(str(path), None, cfg.id_column, f"no id column; columns are {names[:10]}",
                            "the study id column (set encoder.id_column if it has another name)")
    if not (pa.types.is_string(schema.field(cfg.id_column).type) or pa.types.is_large_string(
            schema.field(cfg.id_column).type) or pa.types.is_integer(schema.field(cfg.id_column).type)):
        raise ContractError(str(path), None, cfg.id_column, f"type {schema.field(cfg.id_column).type}",
                            "study ids as strings or integers")
    vec, dims = _vector_columns(path, schema, cfg)
    found = _declared_dim(path, schema, vec, dims)
    if cfg.dim is not None and found is not None and found != cfg.dim:
        raise ContractError(str(path), None, vec or dims[0], f"vectors of {found} dimensions",
                            f"{cfg.dim} dimensions (encoder.dim)")
    dim = cfg.dim or found or _first_length(path, vec or "")
    return Layout(path, cfg.id_column, vec, dims, dim)


def _vector_columns(path: Path, schema: pa.Schema, cfg: PrecomputedConfig) -> tuple[str | None, tuple[str, ...]]:
    others = [f for f in schema if f.name != cfg.id_column]
    if cfg.vector_column is not None:
        f = next((f for f in others if f.name == cfg.vector_column), None)
        if f is None or not (_is_list(f.type) and _is_number(f.type.value_type)):
            found = "no such column" if f is None else f"type {f.type}"
            raise ContractError(str(path), None, cfg.vector_column, found, "a list column of numbers")
        return f.name, ()
    if cfg.dim_prefix is not None:
        dims = [f for f in others if f.name.startswith(cfg.dim_prefix)]
    else:
        lists = [f for f in others if _is_list(f.type)]
        if len(lists) > 1:
            raise ContractError(str(path), None, None, f"list columns {[f.name for f in lists]}",
                                "one vector column: name it with encoder.vector_column")
        if lists:
            if not _is_number(lists[0].type.value_type):
                raise ContractError(str(path), None, lists[0].name, f"type {lists[0].type}",
                                    "a list column of numbers")
            return lists[0].name, ()
        dims = others
    bad = [f.name for f in dims if not _is_number(f.type)]
    if not dims or bad:
        raise ContractError(str(path), None, bad[0] if bad else None,
                            f"non-numeric column(s) {bad[:5]}" if bad else "no vector columns",
                            "a list column of numbers, or one numeric column per dimension "
                            "(encoder.vector_column / encoder.dim_prefix choose them)")
    return None, tuple(f.name for f in dims)


def _declared_dim(path: Path, schema: pa.Schema, vec: str | None, dims: tuple[str, ...]) -> int | None:
    if vec is None:
        return len(dims)
    t = schema.field(vec).type
    return int(t.list_size) if pa.types.is_fixed_size_list(t) else None


def _first_length(path: Path, column: str) -> int:
    """Length of the first non-null vector of a variable-length list column."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096, columns=[column]):
        arr = batch.column(0)
        lengths = arr.value_lengths().to_numpy(zero_copy_only=False)
        ok = np.flatnonzero(~np.asarray(arr.is_null().to_numpy(zero_copy_only=False)) & (lengths > 0))
        if len(ok):
            return int(lengths[ok[0]])
    raise ContractError(str(path), None, column, "no vectors", "at least one non-empty vector (or set encoder.dim)")


@lru_cache(maxsize=8)
def _checksum(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


def identity(cfg: PrecomputedConfig, layout: Layout) -> dict[str, object]:
    """The file's checksum and how it is read: what determines the vectors. The path is
    left out, so a moved file keeps its embeddings."""
    st = layout.path.stat()
    return {"name": "precomputed", "sha256": _checksum(str(layout.path), st.st_size, st.st_mtime_ns),
            "id_column": cfg.id_column, "vector_column": cfg.vector_column, "dim_prefix": cfg.dim_prefix,
            "dim": layout.dim}


def _quarantine(source: str, rows: Sequence[int | None], ids: Sequence[str | None], column: str | None,
                reasons: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({"source": source, "row": pd.array(list(rows), dtype="Int64"),
                         "study_id": pd.array(list(ids), dtype="string"), "column": column,
                         "reason": list(reasons)}, columns=QUARANTINE_COLUMNS)


@dataclass(frozen=True)
class IdScan:
    keep: np.ndarray  # per file row: its vector is wanted (id named once, by a study to embed)
    quarantine: pd.DataFrame
    n_ignored: int  # rows whose id no study names


def scan_ids(layout: Layout, wanted: Sequence[str], source: str) -> IdScan:
    """Match the file's ids with the studies to embed: a repeated id (which vector is
    right is unknown), a null id, or a study the file has no row for is quarantined."""
    ids = pd.Series(pq.read_table(layout.path, columns=[layout.id_column]).column(0).to_pandas())
    null = ids.isna().to_numpy()
    ids = ids.astype("string").str.strip()
    want = pd.Index(pd.Series(list(wanted), dtype="string"))
    named = ids.isin(want).to_numpy() & ~null
    dup = (ids.duplicated(keep=False).to_numpy() & ~null) & named
    rows_of = pd.Series(np.arange(len(ids)))[dup].groupby(ids[dup].to_numpy()).agg(list)
    dup_rows = np.flatnonzero(dup)
    q = [_quarantine(source, dup_rows.tolist(), ids.iloc[dup_rows].tolist(), layout.id_column,
                     [f"study_id repeated in the file (rows {_rows_text(rows_of[i])}): which vector is right "
                      "is unknown; keep one row per study" for i in ids.iloc[dup_rows]]),
         _quarantine(source, np.flatnonzero(null).tolist(), [None] * int(null.sum()), layout.id_column,
                     ["null study_id: the vector belongs to no study"] * int(null.sum()))]
    absent = want[~want.isin(ids[~null])]
    q.append(_quarantine(source, [None] * len(absent), absent.tolist(), layout.id_column,
                         [f"no vector in {layout.path.name}"] * len(absent)))
    frames = [f for f in q if len(f)]
    quarantine = pd.concat(frames, ignore_index=True) if frames else _quarantine(source, [], [], None, [])
    return IdScan(named & ~dup, quarantine, int((~named & ~null).sum()))


def _rows_text(rows: list[int]) -> str:
    return ", ".join(str(r) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")


def _list_matrix(arr: pa.Array, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, dim) float32 matrix of a list column (rows that fail are zero), the per-row
    vector length (-1 where null) and the number of non-finite or missing values per row."""
    n = len(arr)
    null = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), bool)
    lengths = np.where(null, -1, np.asarray(arr.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)))
    flat = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)  # non-null rows only
    good = lengths == dim
    x = np.zeros((n, dim), np.float32)
    if good.all():
        x[:] = flat.reshape(n, dim)
    elif good.any():
        x[good] = flat[np.repeat(good[~null], lengths[~null])].reshape(-1, dim)
    bad = np.where(good, (~np.isfinite(x)).sum(axis=1), 0)
    return x, lengths, bad


def _columns_matrix(batch: pa.RecordBatch, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.empty((batch.num_rows, len(names)), np.float32)
    for j, name in enumerate(names):
        x[:, j] = np.asarray(batch.column(name).to_numpy(zero_copy_only=False), dtype=np.float32)
    bad = (~np.isfinite(x)).sum(axis=1)
    return x, np.full(batch.num_rows, len(names)), bad


def _row_reasons(lengths: np.ndarray, bad: np.ndarray, dim: int) -> list[str | None]:
    out: list[str | None] = []
    for n, b in zip(lengths.tolist(), bad.tolist(), strict=True):
        if n < 0:
            out.append("missing vector (null)")
        elif n != dim:
            out.append(f"vector has {n} dimensions, expected {dim}")
        elif b:
            out.append(f"non-finite or missing values in {b} of {dim} dimensions")
        else:
            out.append(None)
    return out


def iter_vectors(layout: Layout, keep: np.ndarray, source: str, batch_rows: int
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, pd.DataFrame]]:
    """(study ids, float32 vectors, quarantine rows) of the kept file rows, batch by
    batch in file order; a kept row whose vector fails a check is quarantined instead."""
    start = 0
    reader = pq.ParquetFile(layout.path).iter_batches(batch_size=batch_rows,
                                                       columns=[layout.id_column, *layout.columns])
    for batch in reader:
        rows = np.arange(start, start + batch.num_rows)
        start += batch.num_rows
        sel = keep[rows]
        if not sel.any():
            continue
        if layout.vector_column is not None:
            col = batch.column(layout.vector_column)
            x, lengths, bad = _list_matrix(col.filter(pa.array(sel)), layout.dim)
        else:
            x, lengths, bad = _columns_matrix(batch.filter(pa.array(sel)), layout.dim_columns)
        ids = np.asarray(batch.column(0).filter(pa.array(sel)).cast(pa.string()).to_pylist(), dtype=object)
        ids = np.array([i.strip() for i in ids], dtype=object)
        ok = (lengths == layout.dim) & (bad == 0)
        reasons = _row_reasons(lengths[~ok], bad[~ok], layout.dim)
        q = _quarantine(source, rows[sel][~ok].tolist(), ids[~ok].tolist(), layout.column_text,
                        [r or "" for r in reasons])
        yield ids[ok], x[ok], q
