"""The artifact store: content-addressed, self-describing, atomically written artifacts.

Layout: `<root>/artifacts/<kind>/<version>/` holds parquet tables (`<name>.parquet`), any
other files (safetensors weights, HTML pages) and `manifest.json`. The version is a hash of
kind + contract + input versions + parameters, so the same work maps to the same directory
and a re-run finds it instead of recomputing. An artifact is reused only if its files still
match their recorded checksums and the inputs it was made from still have the content it
saw (input digests), so deleting or corrupting an artifact recomputes exactly what changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
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
        return Path(self.root) / "artifacts" / self.kind / self.version

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "version": self.version, "digest": self.digest}


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to a uniquely named hidden temporary file beside `path`, flush it to disk
    and rename it into place, so readers see the old file or the whole new one."""
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
    kind: str, contract: str | None, inputs: Sequence[ArtifactRef], params: Mapping[str, Any]
) -> str:
    """Content hash of what determines an artifact: not its code version, so unrelated
    commits do not invalidate finished work (bump a contract version to force that)."""
    payload = {
        "kind": kind,
        "contract": contract,
        "inputs": sorted((r.kind, r.version) for r in inputs),
        "params": params,
    }
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()[:20]


class ArtifactWriter:
    """Collects an artifact's files in a temporary directory; `ArtifactStore.writer`
    renames it into place only after everything is written and checksummed."""

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


class ArtifactStore:
    """A directory of versioned artifacts (local path)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def artifact_dir(self, kind: str, version: str) -> Path:
        return self.root / "artifacts" / kind / version

    # ------------------------------------------------------------ lookup
    def manifest(self, ref: ArtifactRef) -> dict[str, Any]:
        path = ref.path / MANIFEST
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ArtifactCorrupt(f"{path}: cannot read manifest: {e}") from e

    def lookup(self, kind: str, version: str, inputs: Sequence[ArtifactRef] = ()) -> ArtifactRef | None:
        """The artifact if it exists whole and was made from inputs with today's content."""
        d = self.artifact_dir(kind, version)
        if not (d / MANIFEST).is_file():
            return None
        try:
            m = json.loads((d / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        for rel, info in m.get("files", {}).items():
            f = d / rel
            if not f.is_file() or f.stat().st_size != info["bytes"]:
                return None
        seen = {(i["kind"], i["version"]): i["digest"] for i in m.get("inputs", [])}
        for r in inputs:
            if seen.get((r.kind, r.version)) != r.digest:
                return None
        return ArtifactRef(str(self.root), kind, version, m["digest"])

    def verify(self, ref: ArtifactRef, names: Sequence[str] | None = None) -> None:
        """Re-hash files (all, or those named) and refuse the artifact if any differs."""
        m = self.manifest(ref)
        files: dict[str, dict[str, Any]] = m.get("files", {})
        for rel in names if names is not None else sorted(files):
            info = files.get(rel)
            if info is None:
                raise ArtifactCorrupt(f"{ref.path}: no file '{rel}' in manifest")
            f = ref.path / rel
            if not f.is_file():
                raise ArtifactCorrupt(f"{f}: missing; delete {ref.path} to recompute it")
            got = sha256_file(f)
            if got != info["sha256"]:
                raise ArtifactCorrupt(
                    f"{f}: checksum {got[:12]}… does not match manifest {info['sha256'][:12]}…; "
                    f"the artifact is damaged — delete {ref.path} to recompute it"
                )

    # ------------------------------------------------------------ reading
    def read_table(
        self, ref: ArtifactRef, name: str = "data", columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        m = self.manifest(ref)
        if name not in m.get("tables", {}):
            raise KeyError(f"{ref.path}: no table '{name}' (has {sorted(m.get('tables', {}))})")
        file = m["tables"][name]["file"]
        self.verify(ref, [file])
        return pq.read_table(ref.path / file, columns=list(columns) if columns else None).to_pandas()

    def file_path(self, ref: ArtifactRef, name: str) -> Path:
        self.verify(ref, [name])
        return ref.path / name

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
    ) -> Iterator[tuple[ArtifactWriter, list[ArtifactRef]]]:
        """Yield a writer; on clean exit the artifact appears atomically and its ref is
        appended to the yielded list. On error the temporary directory is removed."""
        base = self.root / "artifacts" / kind
        base.mkdir(parents=True, exist_ok=True)
        tmp = base / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        out: list[ArtifactRef] = []
        try:
            w = ArtifactWriter(tmp)
            yield w, out
            digest = self._write_manifest(w, kind, version, contract, inputs, params)
            self._publish(tmp, base / version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        out.append(ArtifactRef(str(self.root), kind, version, digest))

    def _write_manifest(
        self,
        w: ArtifactWriter,
        kind: str,
        version: str,
        contract: str | None,
        inputs: Sequence[ArtifactRef],
        params: Mapping[str, Any],
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
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (w.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        return str(manifest["digest"])

    @staticmethod
    def _publish(tmp: Path, final: Path) -> None:
        """Rename into place; an existing (stale or damaged) version is moved aside first so
        readers see either the old whole artifact or the new whole one, never a mix."""
        if final.exists():
            trash = final.with_name(f".trash-{final.name}-{uuid.uuid4().hex[:8]}")
            os.rename(final, trash)
            os.rename(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, final)

    # ------------------------------------------------------------ lineage
    def record_run(self, run_id: str, refs: Sequence[ArtifactRef], info: Mapping[str, Any]) -> Path:
        runs = self.root / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        record = {
            "run_id": run_id,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "code_version": code_version(),
            "info": dict(info),
            "artifacts": [r.to_dict() for r in refs],
        }
        final = runs / f"{run_id}.json"
        atomic_write_bytes(final, json.dumps(record, indent=2, default=str).encode())
        return final
