"""Content fingerprints of a store's artifacts, for checking that two runs (threads vs a
Dask cluster, 1 vs 2 workers, local vs S3) produced the same results.

Every artifact file is hashed byte for byte except what records the run rather than the
result: each manifest (its created time and code version; its checksums are covered by
hashing the files themselves) and the SAE's measured training throughput
(`samples_per_s`, in the SAE checkpoint metadata, its metrics table and the sweep table),
which are hashed with that value removed.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data_contracts.storage import Storage

TIMING = "samples_per_s"


def _without_timing_json(data: bytes) -> bytes:
    meta: dict[str, Any] = json.loads(data)
    for split in meta.get("metrics", {}).values():
        if isinstance(split, dict):
            split.pop(TIMING, None)
    return json.dumps(meta, sort_keys=True).encode()


def _without_timing_table(data: bytes) -> bytes:
    table = pq.read_table(io.BytesIO(data))
    if TIMING in table.column_names:
        table = table.drop_columns([TIMING])
    if "metric" in table.column_names:
        table = table.filter(pc.not_equal(table["metric"], TIMING))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def fingerprint_bytes(name: str, data: bytes) -> str:
    if name.endswith("sae_config.json"):
        data = _without_timing_json(data)
    elif name.endswith(".parquet") and (name.startswith("sae/") or name.startswith("sae_sweep/")):
        data = _without_timing_table(data)
    return hashlib.sha256(data).hexdigest()


def store_fingerprint(root: str) -> dict[str, str]:
    """'<kind>/<version>/<file>' -> content hash, for every committed artifact file."""
    storage = Storage(root)
    out: dict[str, str] = {}
    for rel in sorted(storage.files("artifacts")):
        _kind, version, *rest = rel.split("/")
        if version.startswith(".") or not rest or rest == ["manifest.json"]:
            continue
        out[rel] = fingerprint_bytes(rel, storage.read_bytes("artifacts", rel))
    return out
