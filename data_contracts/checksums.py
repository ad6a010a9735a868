"""Content checksums of input files, remembered by file identity so each file is read once.

Input artifacts are versioned by what their files contain, not by where they are or when
they were touched: a copied or re-synced input folder maps to the same artifact versions, an
edited image to a new one. Hashing every CT volume on every nightly run would read the whole
archive, so a checksum is remembered under the file's (path, size, mtime, inode, device):
a later run re-reads only files that are new or changed. The memo is a SQLite file in a
local cache folder (MEDCONCEPTS_CACHE_DIR, else ~/.cache/medconcepts); losing it costs one
re-read, never a wrong answer short of a file rewritten in place with identical size and
mtime (the rule rsync and make rely on too).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from data_contracts.store import sha256_file

MISSING = "missing"


def local_cache_dir() -> Path:
    return Path(os.environ.get("MEDCONCEPTS_CACHE_DIR") or Path.home() / ".cache" / "medconcepts")


class ChecksumMemo:
    """sha256 of files, remembered by (path, size, mtime_ns, inode, device)."""

    def __init__(self, db: Path | None = None) -> None:
        self.db = db or local_cache_dir() / "checksums.sqlite"
        self.hashed = 0  # files actually read by this memo (the rest came from memory)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.db.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.db, timeout=60)
        try:
            con.execute("CREATE TABLE IF NOT EXISTS sums (path TEXT, size INT, mtime INT, ino INT, dev INT, "
                        "sha256 TEXT, PRIMARY KEY (path, size, mtime, ino, dev))")
            with con:
                yield con
        finally:
            con.close()

    def file_sha256(self, paths: Iterable[Path]) -> dict[Path, str]:
        """sha256 of each existing file (absent or unreadable ones are left out)."""
        out: dict[Path, str] = {}
        with self._connect() as con:
            for p in paths:
                try:
                    st = p.stat()
                except OSError:
                    continue
                key = (str(p), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
                row = con.execute("SELECT sha256 FROM sums WHERE path=? AND size=? AND mtime=? AND ino=? AND dev=?",
                                  key).fetchone()
                if row is None:
                    try:
                        digest = sha256_file(p)
                    except OSError:
                        continue
                    self.hashed += 1
                    con.execute("INSERT OR REPLACE INTO sums VALUES (?, ?, ?, ?, ?, ?)", (*key, digest))
                    row = (digest,)
                out[p] = str(row[0])
        return out

    def content_sha256(self, path: Path) -> str:
        """A file's sha256; for a folder (a DICOM series), the sha256 of its files' names and
        checksums; 'missing' when there is nothing to read."""
        if path.is_dir():
            files = sorted(f for f in path.iterdir() if f.is_file())
            sums = self.file_sha256(files)
            listing = "".join(f"{f.name}\0{sums.get(f, MISSING)}\n" for f in files)
            return hashlib.sha256(listing.encode()).hexdigest()
        return self.file_sha256([path]).get(path, MISSING)

    def many(self, paths: Iterable[Path]) -> list[str]:
        """content_sha256 of each path, in order, files hashed in one transaction."""
        paths = list(paths)
        files = self.file_sha256(p for p in paths if not p.is_dir())
        return [self.content_sha256(p) if p.is_dir() else files.get(p, MISSING) for p in paths]
