"""The one rule every task follows: compute the artifact version from inputs + params + the
code of the module that defines `build` (and what it imports: data_contracts/stage_code.py),
reuse the artifact if it exists whole on disk, otherwise build it atomically.

Reuse is decided by the store, not by Prefect's result cache: Prefect's cache would hand
back a path even after the files behind it were deleted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prefect.logging import get_logger

from data_contracts.stage_code import stage_code_digest
from data_contracts.store import ArtifactRef, ArtifactStore, ArtifactWriter, compute_version

# A prefect logger: its lines reach Prefect's console handler (and a flow run's log when in one).
log = get_logger("medconcepts")


def run_stage(
    store: ArtifactStore,
    kind: str,
    contract: str | None,
    inputs: Sequence[ArtifactRef],
    params: Mapping[str, Any],
    build: Callable[[ArtifactWriter], None],
) -> ArtifactRef:
    """Records are tagged (`stage`, `stage_event`: start | end | reused, `rows`) so that a
    caller can time stages from the log, as benchmarks/scale.py does."""
    code = stage_code_digest(build.__module__)
    version = compute_version(kind, contract, inputs, params, code)
    found = store.lookup(kind, version, inputs)
    if found is not None:
        log.info("%s %s: up to date, reused", kind, version,
                 extra={"stage": kind, "stage_event": "reused", "rows": store.manifest(found).get("rows")})
        return found
    log.info("%s %s: computing", kind, version, extra={"stage": kind, "stage_event": "start"})
    t0 = time.perf_counter()
    with store.writer(kind, version, contract=contract, inputs=inputs, params=params, code=code) as (w, out):
        build(w)
    rows = w.tables["data"]["rows"] if "data" in w.tables else None
    log.info("%s %s: written in %.1f s", kind, version, time.perf_counter() - t0,
             extra={"stage": kind, "stage_event": "end", "rows": rows})
    return out[0]
