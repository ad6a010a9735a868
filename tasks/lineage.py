"""The run record: which artifacts a flow run produced or reused."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from data_contracts.store import ArtifactRef, ArtifactStore


@task(name="record-run", cache_policy=NONE)
def record_run(store_root: str, run_id: str, refs: list[ArtifactRef], info: dict[str, str]) -> str:
    return ArtifactStore(store_root).record_run(run_id, refs, info)
