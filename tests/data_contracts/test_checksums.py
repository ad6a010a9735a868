"""Content checksums: each file read once, then remembered by its identity."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from data_contracts.checksums import MISSING, ChecksumMemo


def test_memo_reads_each_file_once_and_sees_edits(tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"alpha")
    b.write_bytes(b"beta")
    memo = ChecksumMemo(tmp_path / "memo.sqlite")
    assert memo.many([a, b, tmp_path / "absent"]) == [hashlib.sha256(b"alpha").hexdigest(),
                                                      hashlib.sha256(b"beta").hexdigest(), MISSING]
    again = ChecksumMemo(tmp_path / "memo.sqlite")
    assert again.many([a, b]) == memo.many([a, b]) and again.hashed == 0  # remembered
    st = a.stat()
    a.write_bytes(b"alphb")  # same size; a new mtime is what tells the memo (as it tells rsync)
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert again.content_sha256(a) == hashlib.sha256(b"alphb").hexdigest() and again.hashed == 1


def test_folder_digest_covers_names_and_contents(tmp_path: Path) -> None:
    d = tmp_path / "series"
    d.mkdir()
    (d / "1.dcm").write_bytes(b"x")
    memo = ChecksumMemo(tmp_path / "memo.sqlite")
    first = memo.content_sha256(d)
    (d / "2.dcm").write_bytes(b"y")
    second = memo.content_sha256(d)
    (d / "2.dcm").rename(d / "3.dcm")
    assert len({first, second, memo.content_sha256(d)}) == 3
