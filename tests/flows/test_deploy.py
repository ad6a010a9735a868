"""Deployment specs, the GPU job template, backfill partition planning and the images:
everything of the cluster path that needs no server (the server tests are in
test_cluster_readme.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from data_contracts.overrides import RunOverrides
from flows.backfill_runs import Partition, batch_tag, decide, months_between
from flows.deploy import DeployOptions, add_gpu_request, load_specs

REPO = Path(__file__).resolve().parents[2]


def test_prefect_yaml_filled_and_options_applied() -> None:
    opts = DeployOptions(config="/data/run.yaml", timezone="Europe/Berlin", nightly_cron="30 1 * * *",
                         gpu_pool="k8s-gpu", overrides=RunOverrides(store="s3://b/p"))
    specs = {s.name: s for s in load_specs(REPO / "prefect.yaml", opts)}
    assert set(specs) == {"nightly-discovery", "sae-retrain", "backfill-month"}
    n, r, b = specs["nightly-discovery"], specs["sae-retrain"], specs["backfill-month"]
    assert n.parameters == {"config_path": "/data/run.yaml", "sae_policy": "reuse", "overrides": {"store": "s3://b/p"}}
    assert [(s.cron, s.timezone) for s in n.schedules] == [("30 1 * * *", "Europe/Berlin")]
    assert [(s.cron, s.timezone) for s in r.schedules] == [("0 3 * * 0", "Europe/Berlin")]  # prefect.yaml default
    assert (n.work_pool.name, r.work_pool.name, b.work_pool.name) == ("cpu", "k8s-gpu", "k8s-gpu")
    assert b.schedules == [] and b.entrypoint == "flows.backfill.backfill"


def test_unknown_placeholder_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "prefect.yaml"
    bad.write_text("deployments:\n- {name: x, entrypoint: a.b, work_pool: {name: cpu}, "
                   "parameters: {p: '{{ $MEDCONCEPTS_NOPE }}'}}\n")
    with pytest.raises(ValueError, match=r"MEDCONCEPTS_NOPE"):
        load_specs(bad, DeployOptions(config="c", timezone="UTC"))


def test_gpu_job_template_is_prefect_kubernetes_default_plus_gpu() -> None:
    """docker/gpu-job-template.json = the installed prefect-kubernetes default + the GPU
    request (regenerate with add_gpu_request when prefect-kubernetes changes)."""
    from prefect_kubernetes.worker import KubernetesWorker

    shipped = json.loads((REPO / "docker" / "gpu-job-template.json").read_text())
    assert shipped == add_gpu_request(KubernetesWorker.get_default_base_job_template())
    pod = shipped["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpu_count }}"
    assert {"gpu_count", "node_selector", "tolerations"} <= set(shipped["variables"]["properties"])


def test_months_and_partition_decisions() -> None:
    assert months_between("2023-11", "2024-02") == ["2023-11", "2023-12", "2024-01", "2024-02"]
    with pytest.raises(ValueError, match="after --until"):
        months_between("2024-02", "2024-01")
    history = {"2024-01": [("a", "COMPLETED")], "2024-02": [("b", "RUNNING")],
               "2024-03": [("c", "COMPLETED"), ("d", "CRASHED")], "2024-04": [("e", "CANCELLED")]}
    got = decide(months_between("2024-01", "2024-05"), history)
    assert got == [Partition("2024-01", "committed", 1, "a", "COMPLETED"),
                   Partition("2024-02", "running", 1, "b", "RUNNING"), Partition("2024-03", "create", 2),
                   Partition("2024-04", "create", 1), Partition("2024-05", "create", 0)]
    t = batch_tag("dep", "/data/run.yaml", None, None)
    assert t == batch_tag("dep", "/data/run.yaml", None, None) != batch_tag("dep", "/data/run.yaml", "report", None)
    assert t != batch_tag("dep", "/data/run.yaml", None, RunOverrides(store="s3://b"))


def test_dockerfiles_lint_clean_and_share_the_pins() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    files = [REPO / "docker" / "Dockerfile.cpu", REPO / "docker" / "Dockerfile.gpu"]
    out = subprocess.run([str(hadolint), *map(str, files)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
    for f in files:
        text = f.read_text()
        assert re.search(r"^FROM python:3\.11-slim-bookworm$", text, re.M)
        assert "pip install" in text and "-e '.[cluster]'" in text  # the pins of pyproject.toml
        code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
        assert "torch==" not in code  # no second torch pin to drift from pyproject's
    assert '"torch==2.13.0"' in (REPO / "pyproject.toml").read_text()
