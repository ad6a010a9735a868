"""Temporaries of killed writers are swept; those of live writers and other hosts are not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from data_contracts.store import ArtifactStore
from data_contracts.tempfiles import abandoned, owner_tag, sweep


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_abandoned_needs_this_host_and_a_gone_writer() -> None:
    host = owner_tag().split("@", 1)[1].rstrip("~")
    dead = _dead_pid()
    assert abandoned(f".tmp-v-1234~{dead}@{host}~")
    assert not abandoned(f".tmp-v-1234{owner_tag()}")  # this process: still writing
    assert not abandoned(f".tmp-v-1234~{dead}@other-host.example~")  # cannot tell: kept
    assert not abandoned(".tmp-v-1234")  # no owner recorded


def test_store_sweep_removes_what_killed_runs_left(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with store.writer("kind", "v1", contract=None, inputs=[], params={}) as (w, _):
        w.write_table("data", pd.DataFrame({"x": [1]}))
    host = owner_tag().split("@", 1)[1].rstrip("~")
    dead = _dead_pid()
    kind = tmp_path / "artifacts" / "kind"
    stale = [kind / f".tmp-v2-abcd~{dead}@{host}~", kind / f".trash-v1-abcd~{dead}@{host}~"]
    for d in stale:
        d.mkdir()
        (d / "data.parquet").write_bytes(b"half")
    month = tmp_path / "embedding_cache" / "report" / "minilm-0" / "month=2020-01"
    month.mkdir(parents=True)
    part = month / f".part-1.parquet.ab~{dead}@{host}~.tmp"
    part.write_bytes(b"half")
    live = kind / f".tmp-v3-abcd{owner_tag()}"
    live.mkdir()
    removed = store.sweep_abandoned()
    assert sorted(removed) == sorted([*stale, part])
    assert live.is_dir() and (kind / "v1" / "manifest.json").is_file()
    assert sweep([tmp_path / "missing"]) == []


def test_store_temp_names_carry_their_writer_and_their_age() -> None:
    import time

    from data_contracts.store import _temp_age, _temp_name

    name = _temp_name("abc123")
    assert owner_tag() in name and not abandoned(name)
    age = _temp_age(name, time.time())
    assert age is not None and 0 <= age < 60
