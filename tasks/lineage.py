"""The run record: which artifacts a flow run produced or reused. Recording it also sweeps
the temporaries that killed runs left in a local store, so a finished rerun leaves none."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from data_contracts.store import ArtifactRef, ArtifactStore
from tasks.stage import log


@task(name="record-run", cache_policy=NONE)
def record_run(store_root: str, run_id: str, refs: list[ArtifactRef], info: dict[str, str]) -> str:
    store = ArtifactStore(store_root)
    removed = store.sweep_abandoned()
    if removed:
        log.info("removed %d temporary file(s) left by interrupted runs", len(removed))
    return store.record_run(run_id, refs, info)
