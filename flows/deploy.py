"""`medconcepts deploy`: register the deployments of `prefect.yaml` against PREFECT_API_URL.

prefect.yaml is the source (Prefect's own format, usable by `prefect deploy --all` too);
this fills its `{{ $MEDCONCEPTS_* }}` placeholders from the command's options, applies the
schedule and pool choices, creates missing work pools (`process` for CPU stages, and for
GPU stages `kubernetes` with `docker/gpu-job-template.json`, which requests
`nvidia.com/gpu`), and registers each deployment with Prefect's RunnerDeployment, as
`prefect deploy` does. Re-running updates the deployments in place.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from data_contracts.overrides import RunOverrides

_PLACEHOLDER = re.compile(r"\{\{\s*\$([A-Z0-9_]+)\s*\}\}")
REPO_ROOT = Path(__file__).resolve().parents[1]
GPU_TEMPLATE = "docker/gpu-job-template.json"
NIGHTLY, RETRAIN, BACKFILL = "nightly-discovery", "sae-retrain", "backfill-month"


class ScheduleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cron: str
    timezone: str | None = None


class PoolSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    job_variables: dict[str, Any] = Field(default_factory=dict)


class DeploymentSpec(BaseModel):
    """One entry of prefect.yaml's `deployments:` (the fields medconcepts uses)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    entrypoint: str
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    schedules: list[ScheduleSpec] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    work_pool: PoolSpec


class DeployOptions(BaseModel):
    """What `medconcepts deploy` may change (one validated object, no bare dicts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    config: str  # run config path as the workers see it
    timezone: str
    nightly_cron: str | None = None
    retrain_cron: str | None = None
    cpu_pool: str = "cpu"
    gpu_pool: str = "gpu"
    gpu_pool_type: Literal["kubernetes", "process"] = "kubernetes"
    overrides: RunOverrides | None = None


def local_timezone() -> str:
    """The IANA name of this machine's time zone (TZ, /etc/localtime), else UTC."""
    if os.environ.get("TZ", "").strip(":"):
        return os.environ["TZ"].strip(":")
    try:
        target = os.path.realpath("/etc/localtime")
    except OSError:
        return "UTC"
    marker = "zoneinfo/"
    return target.split(marker, 1)[1] if marker in target else "UTC"


def find_prefect_yaml(path: Path | None) -> Path:
    for candidate in ([path] if path else [Path.cwd() / "prefect.yaml", REPO_ROOT / "prefect.yaml"]):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no prefect.yaml at {path or Path.cwd()} or {REPO_ROOT}; pass --prefect-file")


def _fill(value: Any, values: Mapping[str, str], source: Path) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, values, source) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values, source) for v in value]
    if isinstance(value, str):
        for name in _PLACEHOLDER.findall(value):
            if name not in values:
                raise ValueError(f"{source}: placeholder {{{{ ${name} }}}} has no value "
                                 f"(known: {sorted(values)})")
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], value)
    return value


def load_specs(prefect_file: Path, opts: DeployOptions) -> list[DeploymentSpec]:
    """The deployments of `prefect_file` with placeholders filled and options applied."""
    raw = yaml.safe_load(prefect_file.read_text()) or {}
    values = {"MEDCONCEPTS_CONFIG": opts.config, "MEDCONCEPTS_TIMEZONE": opts.timezone}
    specs = [DeploymentSpec.model_validate(_fill(d, values, prefect_file)) for d in raw.get("deployments", [])]
    crons = {NIGHTLY: opts.nightly_cron, RETRAIN: opts.retrain_cron}
    pools = {"cpu": opts.cpu_pool, "gpu": opts.gpu_pool}
    for s in specs:
        if crons.get(s.name):
            s.schedules = [ScheduleSpec(cron=str(crons[s.name]), timezone=opts.timezone)]
        s.work_pool.name = pools.get(s.work_pool.name, s.work_pool.name)
        if opts.overrides is not None:
            s.parameters["overrides"] = opts.overrides.model_dump(mode="json", exclude_none=True)
    return specs


def add_gpu_request(base: Mapping[str, Any]) -> dict[str, Any]:
    """A Kubernetes base job template whose pods request `gpu_count` GPUs, with
    `node_selector` and `tolerations` variables (empty by default) for GPU nodes."""
    t = copy.deepcopy(dict(base))
    pod = t["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "{{ gpu_count }}"
    pod["nodeSelector"] = "{{ node_selector }}"
    pod["tolerations"] = "{{ tolerations }}"
    props = t["variables"]["properties"]
    props["gpu_count"] = {"type": "integer", "default": 1, "minimum": 1, "title": "GPUs",
                          "description": "nvidia.com/gpu requested by each flow-run pod."}
    props["node_selector"] = {"type": "object", "default": {}, "title": "Node selector",
                              "description": "e.g. {\"nvidia.com/gpu.present\": \"true\"}",
                              "additionalProperties": {"type": "string"}}
    props["tolerations"] = {"type": "array", "default": [], "title": "Tolerations", "items": {"type": "object"},
                            "description": "e.g. [{\"key\": \"nvidia.com/gpu\", \"operator\": \"Exists\", "
                                           "\"effect\": \"NoSchedule\"}]"}
    props["image"]["default"] = "medconcepts-gpu:latest"
    return t


def pool_template(kind: str, gpu_template: Path) -> dict[str, Any]:
    if kind == "kubernetes":
        return dict(json.loads(gpu_template.read_text()))
    from prefect.workers.process import ProcessWorker

    return dict(ProcessWorker.get_default_base_job_template())


def ensure_pool(name: str, kind: str, gpu_template: Path) -> str:
    """Create the work pool if missing; returns 'created' or 'exists (<type>)'."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
            return f"exists ({pool.type})"
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type=kind,
                                                   base_job_template=pool_template(kind, gpu_template)))
            return "created"


def register(spec: DeploymentSpec) -> str:
    """Register (or update) one deployment; returns its id."""
    from prefect.deployments.runner import EntrypointType, RunnerDeployment
    from prefect.flows import Flow, load_flow_from_entrypoint
    from prefect.schedules import Cron

    flow: Flow[..., Any] = load_flow_from_entrypoint(spec.entrypoint, use_placeholder_flow=False)
    deployment = flow.to_deployment(
        name=spec.name, parameters=spec.parameters, description=spec.description, tags=spec.tags,
        schedules=[Cron(s.cron, timezone=s.timezone) for s in spec.schedules],
        work_pool_name=spec.work_pool.name, job_variables=spec.work_pool.job_variables,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    assert isinstance(deployment, RunnerDeployment)  # sync context: not a coroutine
    return str(deployment.apply())


def deploy(prefect_file: Path, opts: DeployOptions, gpu_template: Path | None = None) -> dict[str, Any]:
    """Pools and deployments of `prefect_file`; a summary for the CLI to print."""
    specs = load_specs(prefect_file, opts)
    template = gpu_template or prefect_file.parent / GPU_TEMPLATE
    pools = {opts.cpu_pool: ensure_pool(opts.cpu_pool, "process", template),
             opts.gpu_pool: ensure_pool(opts.gpu_pool, opts.gpu_pool_type, template)}
    deployments = {}
    for s in specs:
        deployments[s.name] = {"id": register(s), "pool": s.work_pool.name,
                               "schedules": [f"{c.cron} ({c.timezone})" for c in s.schedules]}
    return {"pools": pools, "deployments": deployments}
