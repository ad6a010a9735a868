"""The one filesystem layer under the artifact store, the embedding cache and run records.

A store root is a local path or any fsspec URL (`s3://bucket/prefix`, `gs://...`,
`memory://...`). Everything that touches the store goes through `Storage`, so the same
code runs on a laptop folder and on an object store. Two kinds of backend differ in one
way that matters for atomic commits:

- local paths have rename: a file or directory is written beside its final name and
  renamed into place (readers see the old whole thing or the new whole thing);
- object stores have no rename, but a single object write (PUT, multipart included) is
  atomic: the object is absent until the upload completes, then whole. Multi-file commits
  (artifacts) are built on that in `data_contracts/store.py`: parts first, a manifest
  with their checksums written last.

Credentials and endpoints come from the backend's usual settings (for S3: `AWS_*`
variables, `AWS_ENDPOINT_URL`, or fsspec's `FSSPEC_S3_ENDPOINT_URL`), so workers on a
cluster need nothing but their environment. Listings are never cached: another process
may have committed since.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from data_contracts.tempfiles import owner_tag

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://")
_CHUNK = 1 << 20


def is_url(root: str | Path) -> bool:
    """True for 'proto://...' roots other than file://, which are remote stores."""
    s = str(root)
    return bool(_URL.match(s)) and not s.startswith("file://")


def normalise_root(root: str | Path) -> str:
    """A canonical root string: an absolute local path, or the URL without a trailing '/'."""
    s = str(root)
    if s.startswith("file://"):
        s = s[len("file://"):]
    if is_url(s):
        return s.rstrip("/")
    return str(Path(s).expanduser().resolve())


def cache_dir() -> Path:
    """Local folder for files fetched from remote stores (MEDCONCEPTS_CACHE_DIR, else
    ~/.cache/medconcepts). Files there were verified against their checksums."""
    return Path(os.environ.get("MEDCONCEPTS_CACHE_DIR") or Path.home() / ".cache" / "medconcepts")


class Storage:
    """An fsspec filesystem rooted at a local path or URL; paths are '/'-joined keys
    relative to the root."""

    def __init__(self, root: str | Path) -> None:
        self.url = normalise_root(root)
        if is_url(self.url):
            fs, base = url_to_fs(self.url, use_listings_cache=False)
        else:
            fs, base = LocalFileSystem(), self.url
        self.fs: AbstractFileSystem = fs
        self.base = base.rstrip("/")
        self.local = isinstance(fs, LocalFileSystem)

    # ------------------------------------------------------------ names
    def key(self, *parts: str) -> str:
        """The backend path of `parts` below the root."""
        rel = "/".join(p.strip("/") for p in parts if p)
        return f"{self.base}/{rel}" if rel else self.base

    def url_of(self, *parts: str) -> str:
        """The user-facing location of `parts` (for messages and references)."""
        rel = "/".join(p.strip("/") for p in parts if p)
        return f"{self.url}/{rel}" if rel else self.url

    def local_path(self, *parts: str) -> Path:
        if not self.local:
            raise ValueError(f"{self.url_of(*parts)} is in a remote store; read it through the store")
        return Path(self.key(*parts))

    # ------------------------------------------------------------ queries
    def exists(self, *parts: str) -> bool:
        return bool(self.fs.exists(self.key(*parts)))

    def isfile(self, *parts: str) -> bool:
        return bool(self.fs.isfile(self.key(*parts)))

    def size(self, *parts: str) -> int:
        return int(self.fs.size(self.key(*parts)))

    def files(self, *parts: str) -> dict[str, int]:
        """Every file below `parts` (recursively): relative name -> size in bytes."""
        top = self.key(*parts)
        try:
            found = self.fs.find(top, detail=True)
        except FileNotFoundError:
            return {}
        assert isinstance(found, dict)
        prefix = top.rstrip("/") + "/"
        return {p[len(prefix):]: int(info.get("size") or 0) for p, info in found.items()
                if p.startswith(prefix) and info.get("type") != "directory"}

    def children(self, *parts: str) -> list[str]:
        """Names directly below `parts` (files and folders); [] when there is none."""
        top = self.key(*parts)
        try:
            entries = self.fs.ls(top, detail=False)
        except FileNotFoundError:
            return []
        prefix = top.rstrip("/") + "/"
        return sorted({str(e)[len(prefix):].strip("/") for e in entries if str(e).startswith(prefix)} - {""})

    # ------------------------------------------------------------ reading
    def read_bytes(self, *parts: str) -> bytes:
        return bytes(self.fs.cat_file(self.key(*parts)))

    def open(self, *parts: str) -> IO[bytes]:
        f: IO[bytes] = self.fs.open(self.key(*parts), "rb")
        return f

    def sha256(self, *parts: str) -> str:
        h = hashlib.sha256()
        with self.open(*parts) as f:
            for block in iter(lambda: f.read(_CHUNK), b""):
                h.update(block)
        return h.hexdigest()

    def fetch(self, rel: str, dest: Path, sha256: str | None = None) -> Path:
        """Copy a file to local `dest` (hashing on the way when `sha256` is given; a
        mismatch raises ValueError and leaves nothing at `dest`)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        h = hashlib.sha256()
        try:
            with self.open(rel) as src, open(tmp, "wb") as out:
                for block in iter(lambda: src.read(_CHUNK), b""):
                    h.update(block)
                    out.write(block)
            if sha256 is not None and h.hexdigest() != sha256:
                raise ValueError(f"{self.url_of(rel)}: checksum {h.hexdigest()[:12]}… does not match "
                                 f"{sha256[:12]}…")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    # ------------------------------------------------------------ writing
    def write_atomic(self, rel: str, data: bytes) -> None:
        """Readers see no file or the whole file: local files are written beside their
        name, flushed and renamed; object stores write one object, which is atomic."""
        if not self.local:
            self.fs.pipe_file(self.key(rel), data)
            return
        path = Path(self.key(rel))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}{owner_tag()}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def put(self, local: Path, rel: str) -> None:
        """Upload a local file (one object; atomic on object stores)."""
        self.fs.put_file(str(local), self.key(rel))

    def copy(self, src: str, dst: str) -> None:
        """Copy within the store (server-side on object stores)."""
        self.fs.copy(self.key(src), self.key(dst))

    def remove(self, rel: str, recursive: bool = False) -> None:
        """Delete a file or (recursive) a folder; absent is fine."""
        key = self.key(rel)
        try:
            if self.fs.exists(key):
                self.fs.rm(key, recursive=recursive)
        except FileNotFoundError:
            pass

    def makedirs(self, rel: str) -> None:
        if self.local:
            Path(self.key(rel)).mkdir(parents=True, exist_ok=True)

    def walk_files(self, rel: str, pattern: str) -> Iterator[str]:
        """Relative names of files below `rel` matching a glob `pattern` (one level)."""
        top = self.key(rel).rstrip("/")
        for p in sorted(self.fs.glob(f"{top}/{pattern}")):
            yield str(p)[len(top) + 1:]
