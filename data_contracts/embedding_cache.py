"""The incremental embedding cache: per-study vectors partitioned by study month, one
folder per encoder identity, written in atomically committed batches.

Layout under the store root:

    embedding_cache/<modality>/<encoder name>-<identity hash>/
        identity.json                      # encoder, weights checksum, preprocessing
        month=2024-01/part-<time>-<id>.parquet
        month=2024-02/...

A batch is written to a hidden temporary file in the month folder, flushed to disk and
renamed into place (atomic on POSIX), so an interrupted run leaves only whole batches and
at most a stray temporary file, which readers ignore. A study counts as done for an
encoder once any committed batch holds it, with a vector or with the reason it could not
be embedded (unreadable image, empty report), so failures are not retried on every run;
delete the month folder to retry them. Pure I/O helpers: no encoder, no Prefect.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data_contracts.errors import ContractError
from data_contracts.schemas import EMBEDDING_BATCH
from data_contracts.store import atomic_write_bytes
from data_contracts.validate import conform_table

IDENTITY_FILE = "identity.json"
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def check_month(month: str) -> str:
    """'YYYY-MM' or ValueError naming the expected form."""
    if not _MONTH.match(month):
        raise ValueError(f"month '{month}' is not of the form YYYY-MM (e.g. 2024-01)")
    return month


def study_months(times: pd.Series) -> pd.Series:
    """'YYYY-MM' of each study time: the partition a study's embedding is stored in."""
    return pd.to_datetime(times).dt.strftime("%Y-%m")


def identity_key(identity: Mapping[str, Any]) -> str:
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class EmbeddingCache:
    """Committed embeddings of one modality by one encoder identity."""

    def __init__(self, root: str | Path, modality: str, identity: Mapping[str, Any]) -> None:
        name = str(identity.get("name", "encoder"))
        self.identity = dict(identity)
        self.dir = Path(root) / "embedding_cache" / modality / f"{name}-{identity_key(identity)}"

    def _ensure_identity(self) -> None:
        f = self.dir / IDENTITY_FILE
        if not f.is_file():
            self.dir.mkdir(parents=True, exist_ok=True)
            text = json.dumps(self.identity, indent=2, sort_keys=True, default=str)
            atomic_write_bytes(f, text.encode())

    def month_dir(self, month: str) -> Path:
        return self.dir / f"month={check_month(month)}"

    def parts(self, month: str) -> list[Path]:
        """Committed batch files of a month (temporary files excluded), oldest first."""
        d = self.month_dir(month)
        return sorted(d.glob("part-*.parquet")) if d.is_dir() else []

    def _read_part(self, month: str, path: Path, columns: list[str] | None = None) -> pa.Table:
        try:
            return pq.read_table(path, columns=columns)
        except (OSError, ValueError, pa.ArrowException) as e:
            raise ContractError(str(path), None, None,
                                f"unreadable batch in embedding cache {self.dir}, month {month} ({e})",
                                f"a committed parquet batch; delete {path.name} to recompute its studies") from e

    def done_ids(self, month: str) -> set[str]:
        """Studies of a month with a committed vector or error."""
        done: set[str] = set()
        for p in self.parts(month):
            done.update(self._read_part(month, p, ["study_id"]).column(0).to_pylist())
        return done

    def read_month(self, month: str) -> pd.DataFrame:
        """study_id, embedding (None on error), error; one row per study (first commit wins)."""
        parts = self.parts(month)
        tables = [self._read_part(month, p) for p in parts]
        if not tables:
            return conform_table(pa.table({"study_id": pa.array([], pa.string())}), EMBEDDING_BATCH,
                                 "embedding cache").to_pandas()
        try:
            combined = pa.concat_tables(tables)
        except pa.ArrowInvalid as e:
            odd = next((p for p, t in zip(parts, tables, strict=True) if not t.schema.equals(tables[0].schema)),
                       parts[-1])
            raise ContractError(str(odd), None, None,
                                f"schema differs from {parts[0].name} in embedding cache {self.dir}, "
                                f"month {month} ({e})",
                                f"the {EMBEDDING_BATCH.key} columns in every batch; delete {odd.name} "
                                "to recompute its studies") from e
        df = combined.to_pandas()
        return df.drop_duplicates("study_id", keep="first").reset_index(drop=True)

    def commit(self, month: str, study_ids: Sequence[str], vectors: np.ndarray,
               ok: Sequence[int], errors: Mapping[int, str]) -> Path:
        """Write one batch atomically: `vectors[i]` belongs to `study_ids[ok[i]]`;
        `errors` maps positions into `study_ids` to reasons. Returns the committed file."""
        self._ensure_identity()
        n = len(study_ids)
        emb: list[list[float] | None] = [None] * n
        for row, pos in enumerate(ok):
            emb[int(pos)] = np.asarray(vectors[row], dtype=np.float32).tolist()
        err = [errors.get(i) for i in range(n)]
        missing = [study_ids[i] for i in range(n) if emb[i] is None and err[i] is None]
        if missing:
            raise ValueError(f"embedding cache {self.dir}, month {month}: batch has neither a vector nor "
                             f"an error for {missing[:5]}")
        table = conform_table(pa.table({
            "study_id": pa.array([str(s) for s in study_ids], pa.string()),
            "embedding": pa.array(emb, pa.list_(pa.float32())),
            "error": pa.array(err, pa.string()),
        }), EMBEDDING_BATCH, f"embedding batch for {month}")
        d = self.month_dir(month)
        d.mkdir(parents=True, exist_ok=True)
        final = d / f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        atomic_write_bytes(final, sink.getvalue().to_pybytes())
        return final
