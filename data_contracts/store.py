"""The artifact store: content-addressed, self-describing, atomically written artifacts.

Layout: `<root>/artifacts/<kind>/<version>/` holds parquet tables (`<name>.parquet`), any
other files (safetensors weights, HTML pages) and `manifest.json`. The version is a hash of
kind + contract + input versions + parameters + the digest of the stage's code, so the
same work maps to the same directory and a re-run finds it instead of recomputing. An
artifact is reused only if its files still match their recorded checksums and the inputs
it was made from still have the content it saw (input digests), so deleting or corrupting
an artifact recomputes exactly what changed.

The root is a local path or an fsspec URL (`s3://bucket/prefix`, `gs://...`); all I/O goes
through `data_contracts/storage.py`. Commit is atomic on both: locally the finished
temporary directory is renamed into place; on object stores (no rename) the parts and the
manifest are uploaded under a temporary prefix, copied to the final prefix, and the
manifest (with every part's checksum) is written last at its final key. An artifact exists
only once its manifest does, and is used only while its files match it, so a writer killed
between parts leaves nothing that counts. Remote files are read through a local copy that
was checked against the manifest (`storage.cache_dir()`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data_contracts.schemas import Contract
from data_contracts.storage import Storage, cache_dir, is_url
from data_contracts.tempfiles import owner_tag, sweep
from data_contracts.validate import conform_table

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


class ArtifactCorrupt(RuntimeError):
    """An artifact on disk does not match its manifest (damaged, truncated or edited)."""


@dataclass(frozen=True)
class ArtifactRef:
    """A small, serialisable pointer to an artifact: what travels through Prefect state."""

    root: str
    kind: str
    version: str
    digest: str

    @property
    def path(self) -> Path:
        """The artifact's folder in a local store (remote stores: use `url` and the store)."""
        if is_url(self.root):
            raise ValueError(f"{self.url} is in a remote store; read it through ArtifactStore")
        return Path(self.root) / "artifacts" / self.kind / self.version

    @property
    def url(self) -> str:
        return f"{self.root}/artifacts/{self.kind}/{self.version}"

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "version": self.version, "digest": self.digest}


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit when run from a checkout (recorded, not hashed)."""
    try:
        pkg = version("medconcepts")
    except PackageNotFoundError:  # run from a checkout that was never pip-installed
        pkg = "unknown"
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{pkg}+{sha}" if sha else pkg


def compute_version(
    kind: str, contract: str | None, inputs: Sequence[ArtifactRef], params: Mapping[str, Any],
    code: str | None = None,
) -> str:
    """Content hash of what determines an artifact: kind, contract, input versions,
    parameters and `code`, the digest of the code that builds it
    (data_contracts/stage_code.py): a fix to a statistic recomputes what it feeds, while
    commits that do not touch a stage's code reuse its finished work."""
    payload = {
        "kind": kind,
        "contract": contract,
        "inputs": sorted((r.kind, r.version) for r in inputs),
        "params": params,
    }
    if code is not None:
        payload["code"] = code
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()[:20]


class ArtifactWriter:
    """Collects an artifact's files in a local temporary directory; `ArtifactStore.writer`
    commits it only after everything is written and checksummed."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.tables: dict[str, dict[str, Any]] = {}

    def path(self, name: str) -> Path:
        """Where to write an extra file (weights, HTML); parent folders are created."""
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_table(
        self, name: str, data: pd.DataFrame | pa.Table, contract: Contract | None = None
    ) -> int:
        table = conform_table(data, contract, f"artifact table '{name}'") if contract else (
            data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        )
        file = f"{name}.parquet"
        pq.write_table(table, self.tmp / file, compression="zstd")
        self.tables[name] = {
            "file": file,
            "rows": table.num_rows,
            "contract": contract.key if contract else None,
        }
        return table.num_rows

    @contextlib.contextmanager
    def table_writer(self, name: str, contract: Contract) -> Iterator[Callable[[pd.DataFrame | pa.Table], int]]:
        """Write a table in parts (one row group or more each) so that a large artifact is
        never held whole: yields `write(part)`, which conforms the part to the contract."""
        file = f"{name}.parquet"
        rows = 0
        with pq.ParquetWriter(self.tmp / file, contract.schema, compression="zstd") as out:

            def write(part: pd.DataFrame | pa.Table) -> int:
                nonlocal rows
                table = conform_table(part, contract, f"artifact table '{name}'")
                out.write_table(table)
                rows += table.num_rows
                return table.num_rows

            yield write
        self.tables[name] = {"file": file, "rows": rows, "contract": contract.key}


# Temporary artifact folders/prefixes left by killed writers are removed by later commits of
# the same kind once this old (a live writer's are younger: builds stage locally first). In a
# local store they go sooner: a name carries its writer (`~pid@host~`, tempfiles.py), and
# `sweep_abandoned` removes those whose writer is gone.
STALE_TEMP_S = 24 * 3600


def _temp_name(version: str) -> str:
    return f".tmp-{version}{owner_tag()}-{int(time.time())}-{uuid.uuid4().hex[:8]}"


def _temp_age(name: str, now: float) -> float | None:
    """Seconds since a temporary name was made, None for other names."""
    parts = name.split("-")
    if not name.startswith(".tmp-") or len(parts) < 4 or not parts[-2].isdigit():
        return None
    return now - int(parts[-2])


class ArtifactStore:
    """Versioned artifacts under a local path or an fsspec URL."""

    def __init__(self, root: str | Path) -> None:
        self.storage = Storage(root)
        self.root = self.storage.url

    @staticmethod
    def _rel(kind: str, version: str, name: str = "") -> str:
        return f"artifacts/{kind}/{version}/{name}" if name else f"artifacts/{kind}/{version}"

    def artifact_dir(self, kind: str, version: str) -> Path:
        return self.storage.local_path(self._rel(kind, version))

    # ------------------------------------------------------------ lookup
    def manifest(self, ref: ArtifactRef) -> dict[str, Any]:
        try:
            return dict(json.loads(self.storage.read_bytes(self._rel(ref.kind, ref.version, MANIFEST))))
        except (OSError, ValueError) as e:
            raise ArtifactCorrupt(f"{ref.url}/{MANIFEST}: cannot read manifest: {e}") from e

    def lookup(self, kind: str, version: str, inputs: Sequence[ArtifactRef] = ()) -> ArtifactRef | None:
        """The artifact if its manifest exists, every file it lists is there with its size,
        and it was made from inputs with today's content."""
        rel = self._rel(kind, version)
        try:
            m = json.loads(self.storage.read_bytes(f"{rel}/{MANIFEST}"))
        except (OSError, ValueError):
            return None
        sizes = self.storage.files(rel)
        for name, info in m.get("files", {}).items():
            if sizes.get(name) != info["bytes"]:
                return None
        seen = {(i["kind"], i["version"]): i["digest"] for i in m.get("inputs", [])}
        for r in inputs:
            if seen.get((r.kind, r.version)) != r.digest:
                return None
        return ArtifactRef(self.root, kind, version, m["digest"])

    def _file_info(self, ref: ArtifactRef, m: Mapping[str, Any], name: str) -> dict[str, Any]:
        info = m.get("files", {}).get(name)
        if info is None:
            raise ArtifactCorrupt(f"{ref.url}: no file '{name}' in manifest")
        return dict(info)

    def _local_file(self, ref: ArtifactRef, m: Mapping[str, Any], name: str) -> Path:
        """A local file with the content the manifest records: the file itself in a local
        store (re-hashed), a checked copy of it for a remote one."""
        info = self._file_info(ref, m, name)
        rel = self._rel(ref.kind, ref.version, name)
        if self.storage.local:
            f = self.storage.local_path(rel)
            if not f.is_file():
                raise ArtifactCorrupt(f"{f}: missing; delete {ref.path} to recompute it")
            got = sha256_file(f)
            if got != info["sha256"]:
                raise ArtifactCorrupt(
                    f"{f}: checksum {got[:12]}… does not match manifest {info['sha256'][:12]}…; "
                    f"the artifact is damaged — delete {ref.path} to recompute it"
                )
            return f
        local = self._copy_dir(ref, m) / name
        if local.is_file() and local.stat().st_size == info["bytes"]:
            return local  # checked against the manifest when it was fetched
        try:
            return self.storage.fetch(rel, local, info["sha256"])
        except FileNotFoundError as e:
            raise ArtifactCorrupt(f"{ref.url}/{name}: missing; delete {ref.url} to recompute it") from e
        except ValueError as e:
            raise ArtifactCorrupt(f"{e}; the artifact is damaged — delete {ref.url} to recompute it") from e

    def _copy_dir(self, ref: ArtifactRef, m: Mapping[str, Any]) -> Path:
        """Where checked copies of a remote artifact's files live (per store, version, digest)."""
        store_key = hashlib.sha256(self.root.encode()).hexdigest()[:12]
        return cache_dir() / "artifacts" / store_key / ref.kind / f"{ref.version}-{m['digest']}"

    def verify(self, ref: ArtifactRef, names: Sequence[str] | None = None) -> None:
        """Re-hash files (all, or those named) and refuse the artifact if any differs."""
        m = self.manifest(ref)
        for name in names if names is not None else sorted(m.get("files", {})):
            self._local_file(ref, m, name)

    def local_dir(self, ref: ArtifactRef) -> Path:
        """A local folder holding every file of the artifact, checked against its manifest
        (the artifact's own folder in a local store)."""
        m = self.manifest(ref)
        for name in sorted(m.get("files", {})):
            self._local_file(ref, m, name)
        if self.storage.local:
            return ref.path
        d = self._copy_dir(ref, m)
        d.mkdir(parents=True, exist_ok=True)
        return d

    # ------------------------------------------------------------ reading
    def read_table(
        self, ref: ArtifactRef, name: str = "data", columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        m = self.manifest(ref)
        if name not in m.get("tables", {}):
            raise KeyError(f"{ref.url}: no table '{name}' (has {sorted(m.get('tables', {}))})")
        path = self._local_file(ref, m, m["tables"][name]["file"])
        return pq.read_table(path, columns=list(columns) if columns else None).to_pandas()

    def file_path(self, ref: ArtifactRef, name: str) -> Path:
        return self._local_file(ref, self.manifest(ref), name)

    # ------------------------------------------------------------ writing
    @contextlib.contextmanager
    def writer(
        self,
        kind: str,
        version: str,
        *,
        contract: str | None,
        inputs: Sequence[ArtifactRef],
        params: Mapping[str, Any],
        code: str | None = None,
    ) -> Iterator[tuple[ArtifactWriter, list[ArtifactRef]]]:
        """Yield a writer; on clean exit the artifact appears atomically and its ref is
        appended to the yielded list. On error the temporary files are removed."""
        if self.storage.local:
            base = self.storage.local_path(f"artifacts/{kind}")
            base.mkdir(parents=True, exist_ok=True)
            stale = (base / version / MANIFEST).is_file()
            tmp = base / _temp_name(version)
            tmp.mkdir()
        else:  # staged locally, uploaded at commit
            tmp = Path(tempfile.mkdtemp(prefix=f"{kind}-{version}-", dir=_staging_dir()))
        out: list[ArtifactRef] = []
        try:
            w = ArtifactWriter(tmp)
            yield w, out
            digest = self._write_manifest(w, kind, version, contract, inputs, params, code)
            if self.storage.local:
                digest = self._publish(tmp, base / version, stale)
            else:
                self._publish_remote(tmp, kind, version)
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._sweep_temporaries(kind)
        out.append(ArtifactRef(self.root, kind, version, digest))

    def _write_manifest(
        self,
        w: ArtifactWriter,
        kind: str,
        version: str,
        contract: str | None,
        inputs: Sequence[ArtifactRef],
        params: Mapping[str, Any],
        code: str | None = None,
    ) -> str:
        files = {}
        for f in sorted(p for p in w.tmp.rglob("*") if p.is_file()):
            rel = f.relative_to(w.tmp).as_posix()
            files[rel] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
        digest = hashlib.sha256(_canonical({k: v["sha256"] for k, v in files.items()}).encode())
        manifest = {
            "kind": kind,
            "version": version,
            "contract": contract,
            "inputs": [r.to_dict() for r in inputs],
            "params": json.loads(_canonical(params)),
            "tables": w.tables,
            "rows": w.tables["data"]["rows"] if "data" in w.tables else None,
            "files": files,
            "digest": digest.hexdigest()[:20],
            "code_version": code_version(),
            "code_digest": code,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (w.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        return str(manifest["digest"])

    @staticmethod
    def _publish(tmp: Path, final: Path, stale: bool) -> str:
        """Rename into place; an existing (`stale`: there when writing began, damaged or
        made from other inputs) version is moved aside first so readers see either the old
        whole artifact or the new whole one, never a mix. If another writer commits the
        same version meanwhile (two runs doing the same work at once), its artifact is kept
        and ours dropped. Returns the digest now at `final`."""
        try:
            if (final / MANIFEST).is_file() and not stale:
                raise FileExistsError(final)
            if final.exists():
                trash = final.with_name(f".trash-{final.name}-{uuid.uuid4().hex[:8]}{owner_tag()}")
                os.rename(final, trash)
                os.rename(tmp, final)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.rename(tmp, final)
        except OSError:
            if not (final / MANIFEST).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        return str(json.loads((final / MANIFEST).read_text())["digest"])

    def _publish_remote(self, staged: Path, kind: str, version: str) -> None:
        """Commit on a store without rename. Parts and manifest go under a temporary
        prefix; then the old version (if any) stops counting (its manifest is deleted
        first), the parts are copied to the final prefix and the manifest is copied last:
        until that single object exists, nothing at the final key counts."""
        names = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
        parts = [n for n in names if n != MANIFEST]
        tmp = f"artifacts/{kind}/{_temp_name(version)}"
        for name in [*parts, MANIFEST]:
            self.storage.put(staged / name, f"{tmp}/{name}")
        final = self._rel(kind, version)
        self.storage.remove(f"{final}/{MANIFEST}")
        self.storage.remove(final, recursive=True)
        for name in parts:
            self.storage.copy(f"{tmp}/{name}", f"{final}/{name}")
        self.storage.copy(f"{tmp}/{MANIFEST}", f"{final}/{MANIFEST}")
        self.storage.remove(tmp, recursive=True)

    def _sweep_temporaries(self, kind: str) -> None:
        """Remove temporary folders of killed writers (older than STALE_TEMP_S)."""
        now = time.time()
        for name in self.storage.children(f"artifacts/{kind}"):
            age = _temp_age(name, now)
            if age is not None and age > STALE_TEMP_S:
                self.storage.remove(f"artifacts/{kind}/{name}", recursive=True)

    def sweep_abandoned(self) -> list[Path]:
        """Remove the temporaries that killed processes of this host left in a local store
        (half-written artifacts, embedding batches, run records): see tempfiles.py. Remote
        stores keep the age rule of `_sweep_temporaries`."""
        if not self.storage.local:
            return []
        root = Path(self.storage.base)
        folders = [root / "runs", *(root / "artifacts").glob("*"), *(root / "embedding_cache").glob("*/*/month=*")]
        return sweep(p for p in folders if p.is_dir())

    # ------------------------------------------------------------ lineage
    def record_run(self, run_id: str, refs: Sequence[ArtifactRef], info: Mapping[str, Any]) -> str:
        """Write `<root>/runs/<run_id>.json`; returns its location (path or URL)."""
        record = {
            "run_id": run_id,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "code_version": code_version(),
            "info": dict(info),
            "artifacts": [r.to_dict() for r in refs],
        }
        rel = f"runs/{run_id}.json"
        self.storage.write_atomic(rel, json.dumps(record, indent=2, default=str).encode())
        return self.storage.url_of(rel)


def _staging_dir() -> Path:
    d = cache_dir() / "staging"
    d.mkdir(parents=True, exist_ok=True)
    return d
