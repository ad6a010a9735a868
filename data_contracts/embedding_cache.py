"""The incremental embedding cache: per-study vectors partitioned by study month, one
folder per encoder identity, written in atomically committed batches.

Layout under the store root:

    embedding_cache/<modality>/<encoder name>-<identity hash>/
        identity.json                      # encoder, weights checksum, preprocessing
        month=2024-01/part-<time>-<id>.parquet
        month=2024-02/...

The root is a local path or an fsspec URL (`data_contracts/storage.py`). A batch is one
file written atomically: locally a hidden temporary file in the month folder, flushed and
renamed into place; on an object store a single object upload, which appears whole or not
at all. An interrupted run leaves only whole batches (and at most a stray temporary file,
which readers ignore). A study counts as done for an
encoder once any committed batch holds it, with a vector or with the reason it could not
be embedded (unreadable image, empty report), so failures are not retried on every run;
delete the month folder to retry them. Rows carry the checksum of what was embedded (report
text, image content): a corrected report or replaced image under the same study id is not
done, and is embedded again. Pure I/O helpers: no encoder, no Prefect.
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
from data_contracts.storage import Storage
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


# Batches before format 2 had no item checksum; a new folder keeps them apart.
CACHE_FORMAT = 2


class EmbeddingCache:
    """Committed embeddings of one modality by one encoder identity."""

    def __init__(self, root: str | Path, modality: str, identity: Mapping[str, Any]) -> None:
        name = str(identity.get("name", "encoder"))
        self.identity = {**identity, "cache_format": CACHE_FORMAT}
        self.storage = Storage(root)
        self.rel = f"embedding_cache/{modality}/{name}-{identity_key(self.identity)}"
        self.location = self.storage.url_of(self.rel)

    @property
    def dir(self) -> Path:
        """The cache folder of a local store."""
        return self.storage.local_path(self.rel)

    def _ensure_identity(self) -> None:
        rel = f"{self.rel}/{IDENTITY_FILE}"
        if not self.storage.isfile(rel):
            text = json.dumps(self.identity, indent=2, sort_keys=True, default=str)
            self.storage.write_atomic(rel, text.encode())

    def _month_rel(self, month: str) -> str:
        return f"{self.rel}/month={check_month(month)}"

    def month_dir(self, month: str) -> Path:
        return self.storage.local_path(self._month_rel(month))

    def parts(self, month: str) -> list[str]:
        """Committed batch files of a month (temporary files excluded), oldest first,
        as locations (paths or URLs)."""
        d = self._month_rel(month)
        return [self.storage.url_of(d, n) for n in self.storage.walk_files(d, "part-*.parquet")]

    def _read_part(self, month: str, location: str, columns: list[str] | None = None) -> pa.Table:
        rel = location[len(self.storage.url) + 1:]
        try:
            with self.storage.open(rel) as f:
                return pq.read_table(f, columns=columns)
        except (OSError, ValueError, pa.ArrowException) as e:
            name = location.rsplit("/", 1)[-1]
            raise ContractError(location, None, None,
                                f"unreadable batch in embedding cache {self.location}, month {month} ({e})",
                                f"a committed parquet batch; delete {name} to recompute its studies") from e

    def done_ids(self, month: str) -> set[str]:
        """Studies of a month with a committed vector or error."""
        done: set[str] = set()
        for p in self.parts(month):
            done.update(self._read_part(month, p, ["study_id"]).column(0).to_pylist())
        return done

    def done_keys(self, month: str) -> set[tuple[str, str]]:
        """(study_id, item checksum) pairs of a month with a committed vector or error."""
        done: set[tuple[str, str]] = set()
        for p in self.parts(month):
            t = self._read_part(month, p, ["study_id", "item_sha256"])
            done.update(zip(t.column(0).to_pylist(), t.column(1).to_pylist(), strict=True))
        return done

    def read_month(self, month: str) -> pd.DataFrame:
        """study_id, embedding (None on error), error, item_sha256; one row per study and
        item checksum (first commit wins)."""
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
            first, odd_name = parts[0].rsplit("/", 1)[-1], odd.rsplit("/", 1)[-1]
            raise ContractError(odd, None, None,
                                f"schema differs from {first} in embedding cache {self.location}, "
                                f"month {month} ({e})",
                                f"the {EMBEDDING_BATCH.key} columns in every batch; delete {odd_name} "
                                "to recompute its studies") from e
        df = combined.to_pandas()
        return df.drop_duplicates(["study_id", "item_sha256"], keep="first").reset_index(drop=True)

    def commit(self, month: str, study_ids: Sequence[str], vectors: np.ndarray,
               ok: Sequence[int], errors: Mapping[int, str], keys: Sequence[str] | None = None) -> str:
        """Write one batch atomically: `vectors[i]` belongs to `study_ids[ok[i]]`;
        `errors` maps positions into `study_ids` to reasons; `keys` are the checksums of
        what was embedded per study ('' when unknown). Returns the committed file."""
        self._ensure_identity()
        n = len(study_ids)
        emb: list[list[float] | None] = [None] * n
        for row, pos in enumerate(ok):
            emb[int(pos)] = np.asarray(vectors[row], dtype=np.float32).tolist()
        err = [errors.get(i) for i in range(n)]
        missing = [study_ids[i] for i in range(n) if emb[i] is None and err[i] is None]
        if missing:
            raise ValueError(f"embedding cache {self.location}, month {month}: batch has neither a vector nor "
                             f"an error for {missing[:5]}")
        table = conform_table(pa.table({
            "study_id": pa.array([str(s) for s in study_ids], pa.string()),
            "embedding": pa.array(emb, pa.list_(pa.float32())),
            "error": pa.array(err, pa.string()),
            "item_sha256": pa.array(list(keys) if keys is not None else [""] * n, pa.string()),
        }), EMBEDDING_BATCH, f"embedding batch for {month}")
        rel = f"{self._month_rel(month)}/part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        self.storage.write_atomic(rel, sink.getvalue().to_pybytes())
        return self.storage.url_of(rel)
