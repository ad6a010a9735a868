"""A writer process for the kill tests: writes a two-table artifact to a store; with
`--stall-after put|copy N`, it signals (creates `--marker`) after its N-th upload or
server-side copy and then blocks, so the test can SIGKILL it at exactly that point."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pandas as pd

from data_contracts.schemas import ACTIVATIONS
from data_contracts.storage import Storage
from data_contracts.store import ArtifactStore


def table(n: int, offset: int) -> pd.DataFrame:
    return pd.DataFrame({"study_id": [f"s{i}" for i in range(n)], "feature_id": range(offset, offset + n),
                         "value": [float(i) for i in range(n)]})


def write(root: str, version: str) -> None:
    store = ArtifactStore(root)
    with store.writer("activations", version, contract=ACTIVATIONS.key, inputs=[], params={"n": 2}) as (w, _):
        w.write_table("data", table(50, 0), ACTIVATIONS)
        w.write_table("second", table(40, 100), ACTIVATIONS)


def stall_after(method: str, n: int, marker: Path) -> None:
    original = getattr(Storage, method)
    calls = {"n": 0}

    def patched(self: Storage, *args: Any, **kwargs: Any) -> Any:
        out = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == n:
            marker.write_text(str(args))
            while True:
                time.sleep(1)
        return out

    setattr(Storage, method, patched)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("version")
    ap.add_argument("--stall-after", nargs=2, metavar=("METHOD", "N"))
    ap.add_argument("--marker", type=Path)
    a = ap.parse_args()
    if a.stall_after:
        stall_after(a.stall_after[0], int(a.stall_after[1]), a.marker)
    write(a.root, a.version)


if __name__ == "__main__":
    main()
