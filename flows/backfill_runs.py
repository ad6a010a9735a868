"""Backfills as flow runs: one run of the `backfill-month` deployment per month partition.

Every run of one backfill command carries the tag `backfill:<digest>` (digest of the
deployment, config path, modality and overrides) and `month:<YYYY-MM>`, and is created
with the idempotency key `<tag>/<month>/<attempt>`, so the same command issued twice (or
by two people at once) starts nothing twice. Re-issuing it after a crash resumes: months
whose latest run completed are committed and skipped, months with a run still scheduled
or running are followed, and months whose latest run failed, crashed or was cancelled get
a new attempt. The partition runs themselves skip every study already embedded.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from data_contracts.embedding_cache import check_month
from data_contracts.overrides import RunOverrides

DEFAULT_DEPLOYMENT = "medconcepts-backfill/backfill-month"
PAGE = 200  # Prefect's default API limit
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
Action = Literal["committed", "running", "create"]


def months_between(since: str, until: str) -> list[str]:
    """Every 'YYYY-MM' from `since` to `until`, inclusive."""
    lo, hi = check_month(since), check_month(until)
    if lo > hi:
        raise ValueError(f"--since {since} is after --until {until}")
    y, m = int(lo[:4]), int(lo[5:])
    out = []
    while f"{y:04d}-{m:02d}" <= hi:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def batch_tag(deployment_id: str, config_path: str, modality: str | None, overrides: RunOverrides | None) -> str:
    ident = {"deployment": deployment_id, "config": config_path, "modality": modality,
             "overrides": overrides.model_dump(mode="json") if overrides else None}
    return "backfill:" + hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class Partition:
    month: str
    action: Action
    attempt: int  # runs already made for this month
    run_id: str | None = None  # the run followed (existing or created)
    state: str | None = None


def decide(months: Sequence[str], history: Mapping[str, Sequence[tuple[str, str]]]) -> list[Partition]:
    """`history[month]`: (run id, state type) of earlier runs, oldest first."""
    out = []
    for month in months:
        runs = list(history.get(month, ()))
        if runs and runs[-1][1] == "COMPLETED":
            out.append(Partition(month, "committed", len(runs), runs[-1][0], "COMPLETED"))
        elif runs and runs[-1][1] not in FINAL:
            out.append(Partition(month, "running", len(runs), runs[-1][0], runs[-1][1]))
        else:
            out.append(Partition(month, "create", len(runs)))
    return out


@dataclass
class Backfill:
    deployment: str
    tag: str
    partitions: list[Partition] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "tag": self.tag,
                "partitions": {p.month: {"action": p.action, "attempt": p.attempt, "run": p.run_id,
                                         "state": p.state} for p in self.partitions}}


def _history(client: Any, deployment_id: Any, tag: str) -> dict[str, list[tuple[str, str]]]:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    runs: list[Any] = []
    while True:  # pages of the server's maximum size
        page = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=PAGE, offset=len(runs))
        runs.extend(page)
        if len(page) < PAGE:
            break
    history: dict[str, list[tuple[str, str]]] = {}
    for r in sorted(runs, key=lambda r: r.created):
        month = next((t.split(":", 1)[1] for t in r.tags if t.startswith("month:")), None)
        if month is not None:
            history.setdefault(month, []).append((str(r.id), r.state_type.value if r.state_type else "PENDING"))
    return history


def start(deployment: str, config_path: str, since: str, until: str, modality: str | None = None,
          overrides: RunOverrides | None = None, dry_run: bool = False) -> Backfill:
    """Plan the partitions of [since, until] against the server's run history and (unless
    `dry_run`) create a run for each month that needs one."""
    from prefect import get_client

    months = months_between(since, until)
    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(deployment)
        tag = batch_tag(str(dep.id), config_path, modality, overrides)
        plan = Backfill(deployment, tag, decide(months, _history(client, dep.id, tag)))
        if dry_run:
            return plan
        for p in plan.partitions:
            if p.action != "create":
                continue
            params: dict[str, Any] = {"config_path": config_path, "since": p.month, "until": p.month,
                                      "modality": modality}
            if overrides is not None:
                params["overrides"] = overrides.model_dump(mode="json", exclude_none=True)
            run = client.create_flow_run_from_deployment(
                dep.id, parameters=params, tags=[tag, f"month:{p.month}"],
                idempotency_key=f"{tag}/{p.month}/{p.attempt}", name=f"backfill-{p.month}")
            p.run_id, p.state = str(run.id), run.state_type.value if run.state_type else "SCHEDULED"
    return plan


def follow(plan: Backfill, poll_s: float = 5.0, timeout_s: float | None = None,
           on_progress: Any = None) -> Backfill:
    """Poll the partition runs until every one is final (or `timeout_s` passes);
    `on_progress(done, total)` after each poll."""
    from uuid import UUID

    from prefect import get_client

    tracked = [p for p in plan.partitions if p.run_id is not None]
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            for p in tracked:
                if p.state not in FINAL:
                    run = client.read_flow_run(UUID(str(p.run_id)))
                    p.state = run.state_type.value if run.state_type else p.state
            done = sum(p.state in FINAL for p in tracked)
            if on_progress is not None:
                on_progress(done, len(tracked))
            if done == len(tracked) or (deadline is not None and time.monotonic() > deadline):
                return plan
            time.sleep(poll_s)
