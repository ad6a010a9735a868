"""README "Running on a cluster", command by command, against real components on loopback:
`prefect server start` (SQLite, own PREFECT_HOME), process and Kubernetes workers, a Dask
scheduler and GPU worker, and the CLI. Docker lines are validated (`docker-compose config`,
hadolint) since no Docker engine runs here. Ports and paths are substituted (SUBST); every
command line of the section must have been run once the walk-through ends."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.cluster import REPO, base_env, free_port, prefect_server, start, stop, wait_for
from tests.conftest import write_tiny_config

pytestmark = [pytest.mark.slow]
SECTION = "## Running on a cluster"


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _api(url: str) -> Any:
    """A sync Prefect client on the test's own server (not the in-process test harness)."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    class _Ctx:
        def __enter__(self) -> Any:
            self._settings = temporary_settings(updates={PREFECT_API_URL: url})
            self._settings.__enter__()
            self._client = get_client(sync_client=True)
            return self._client.__enter__()

        def __exit__(self, *exc: Any) -> None:
            self._client.__exit__(*exc)
            self._settings.__exit__(*exc)

    return _Ctx()


class Walkthrough:
    """Runs README lines with substitutions, keeps background services, records each line."""

    def __init__(self, tmp: Path, subst: list[tuple[str, str]], env: dict[str, str]) -> None:
        self.tmp, self.subst, self.env = tmp, subst, env
        self.ran: list[str] = []
        self.background: list[subprocess.Popen[bytes]] = []

    def concrete(self, line: str) -> str:
        for old, new in self.subst:
            line = line.replace(old, new)
        return line

    def run(self, line: str, timeout: float = 600) -> str:
        self.ran.append(line)
        proc = subprocess.run(["bash", "-c", self.concrete(line)], cwd=REPO, env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        assert proc.returncode == 0, f"{line}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    def spawn(self, line: str, name: str) -> subprocess.Popen[bytes]:
        self.ran.append(line)
        proc = start(self.concrete(line), self.env, self.tmp / f"{name}.log")
        self.background.append(proc)
        return proc

    def docker(self, line: str) -> None:
        """`docker compose -f F [--profile P] up -d|build` -> the file validated by
        docker-compose's schema, and for build the Dockerfiles linted."""
        self.ran.append(line)
        compose = shutil.which("docker-compose")
        assert compose, "docker-compose is needed to validate docker/compose.yaml (apt-get install docker-compose)"
        args = self.concrete(line).replace("docker compose", "").split()
        verb = args.pop()
        if verb == "-d":
            verb = args.pop()
        assert verb in ("up", "build"), line
        out = subprocess.run([compose, *args, "config", "-q"], cwd=REPO, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        if verb == "build":
            lint = subprocess.run([str(Path(self.env["PATH"].split(":")[0]) / "hadolint"),
                                   "docker/Dockerfile.cpu", "docker/Dockerfile.gpu"], cwd=REPO,
                                  capture_output=True, text=True)
            assert lint.returncode == 0, lint.stdout

    def close(self) -> None:
        for proc in reversed(self.background):
            stop(proc)


@pytest.fixture(scope="module")
def cluster(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("cluster")
    config = write_tiny_config(tiny_cohort, tmp / "run")
    months = sorted(pd.to_datetime(pd.read_parquet(tiny_cohort / "studies.parquet")["study_time"])
                    .dt.strftime("%Y-%m").unique())
    server_line = "prefect server start --host 0.0.0.0 --port 4200"
    with prefect_server(tmp / "prefect_home", tmp / "server.log") as url:
        port = url.split(":")[-1].split("/")[0]
        dask_port = str(free_port())
        subst = [("http://localhost:4200/api", url), ("--host 0.0.0.0 --port 4200", f"--host 127.0.0.1 --port {port}"),
                 ("/data/run.yaml", str(config)), ("--since 2019-01 --until 2024-12", f"--since {months[1]} --until "
                                                   f"{months[2]}"),
                 ("tcp://localhost:8786", f"tcp://127.0.0.1:{dask_port}"),
                 ("--host 0.0.0.0 --port 8786", f"--host 127.0.0.1 --port {dask_port}"),
                 ("MODELS_DIR=/path/to/models ", "")]
        walk = Walkthrough(tmp, subst, {**base_env(tmp / "prefect_home"), "COLUMNS": "250"})
        assert walk.concrete(server_line).split() == ["prefect", "server", "start", "--host", "127.0.0.1",
                                                      "--port", port]  # what prefect_server ran
        walk.ran.append(server_line)
        try:
            yield {"walk": walk, "url": url, "config": config, "months": months[1:3], "tmp": tmp,
                   "dask": f"tcp://127.0.0.1:{dask_port}"}
        finally:
            walk.close()


def _deployments(url: str) -> dict[str, Any]:
    with _api(url) as client:
        from prefect.client.schemas.sorting import DeploymentSort

        return {d.name: d for d in client.read_deployments(limit=200, sort=DeploymentSort.NAME_ASC)}


def _runs_tagged(url: str, tag: str) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.client.schemas.sorting import FlowRunSort

    with _api(url) as client:
        return list(client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])),
                                          sort=FlowRunSort.ID_DESC, limit=200))


def test_readme_cluster_walkthrough(cluster: dict[str, Any]) -> None:
    walk, url, config = cluster["walk"], cluster["url"], cluster["config"]
    lines = readme_commands()
    it = iter(lines)

    # 1. services
    walk.docker(next(it))  # compose build
    walk.docker(next(it))  # compose up -d
    line = next(it)
    assert line.startswith("export PREFECT_API_URL=")
    walk.ran.append(line)
    walk.env["PREFECT_API_URL"] = walk.concrete(line).split("=", 1)[1]
    line = next(it)
    walk.ran.append(line)
    dry = walk.run(line + " --dry-run").splitlines()  # pip install -e '.[cluster]': satisfied already
    walk.ran.pop()
    would = [ln.split()[2:] for ln in dry if ln.startswith("Would install")]
    assert would and all(p.startswith("medconcepts-") for p in would[0]), dry[-5:]  # nothing but the project
    assert next(it).startswith("prefect server start")  # run by the fixture (checked there)
    walk.spawn(next(it), "worker-cpu")
    walk.spawn(next(it), "worker-gpu")

    # 2. deployments and schedules
    out = json.loads(walk.run(next(it)))
    assert set(out["pools"]) == {"cpu", "gpu"}  # created here or by the workers just started
    with _api(url) as client:
        assert client.read_work_pool("cpu").type == client.read_work_pool("gpu").type == "process"
    deps = _deployments(url)
    assert set(deps) >= {"nightly-discovery", "sae-retrain", "backfill-month"}
    nightly, retrain, back = deps["nightly-discovery"], deps["sae-retrain"], deps["backfill-month"]
    assert nightly.parameters == {"config_path": str(config), "sae_policy": "reuse"}
    assert retrain.parameters["sae_policy"] == "train" and back.parameters == {"config_path": str(config)}
    assert [(s.schedule.cron, s.schedule.timezone) for s in nightly.schedules] == [("0 2 * * *", "Europe/Berlin")]
    assert [(s.schedule.cron, s.schedule.timezone) for s in retrain.schedules] == [("0 3 * * 0", "Europe/Berlin")]
    assert back.schedules == []
    assert (nightly.work_pool_name, retrain.work_pool_name, back.work_pool_name) == ("cpu", "gpu", "gpu")
    assert "overrides" in nightly.parameter_openapi_schema["properties"]
    assert nightly.entrypoint == "flows.discovery.discovery"
    shown = walk.run(next(it))  # prefect deployment inspect
    assert "'cron': '0 2 * * *', 'timezone': 'Europe/Berlin'" in shown and "'sae_policy': 'reuse'" in shown

    # 3. backfill: dry run starts nothing; the run commits each month once; a repeat starts nothing
    plan = json.loads(walk.run(next(it)))
    assert [p["action"] for p in plan["partitions"].values()] == ["create", "create"]
    assert _runs_tagged(url, plan["tag"]) == []
    backfill_line = next(it)
    done = json.loads(walk.run(backfill_line))
    assert {m: p["state"] for m, p in done["partitions"].items()} == dict.fromkeys(cluster["months"], "COMPLETED")
    cache = Path(config).parent / "store" / "embedding_cache"
    for month in cluster["months"]:
        assert list(cache.glob(f"*/*/month={month}/part-*.parquet")), month
    again = json.loads(walk.run(backfill_line))
    assert [p["action"] for p in again["partitions"].values()] == ["committed", "committed"]
    assert len(_runs_tagged(url, plan["tag"])) == 2
    walk.run(next(it))  # nightly run now, --watch: exits 0 only when completed
    store = Path(config).parent / "store"
    assert list((store / "runs").glob("*.json")) and (store / "published" / "sae" / "report.json").is_file()

    # 4. Dask GPU worker
    walk.docker(next(it))
    walk.spawn(next(it), "dask-scheduler")
    walk.spawn(next(it), "dask-worker")
    from distributed import Client

    with Client(cluster["dask"], timeout=120) as client:
        wait_for(lambda: len(client.scheduler_info()["workers"]) == 1, 120, "Dask worker")
        (worker,) = client.scheduler_info()["workers"].values()
        assert worker["resources"] == {"GPU": 1}
        out = json.loads(walk.run(next(it)))
        assert _deployments(url)["nightly-discovery"].parameters["overrides"] == {
            "runner": {"kind": "dask", "address": cluster["dask"], "n_workers": 2, "threads_per_worker": 1,
                       "gpu_stages": "auto"}}
        walk.run(next(it))  # nightly run on the Dask cluster
        builds = client.run(lambda: dict(__import__("models.encoders.registry", fromlist=["BUILDS"]).BUILDS))
        assert set(builds.popitem()[1]) == {"minilm", "ct_radiomics"}  # its embedding tasks ran on the worker

    # 5. Kubernetes GPU pool: created with the GPU template; a Kubernetes worker registers
    out = json.loads(walk.run(next(it)))
    assert out["pools"]["k8s-gpu"] == "created"
    with _api(url) as client:
        pool = client.read_work_pool("k8s-gpu")
    container = pool.base_job_template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert pool.type == "kubernetes" and container["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == \
        "{{ gpu_count }}"
    assert _deployments(url)["backfill-month"].work_pool_name == "k8s-gpu"
    walk.spawn(next(it), "worker-k8s")

    def registered() -> bool:
        with _api(url) as client:
            return bool(client.read_workers_for_work_pool("k8s-gpu", offset=0, limit=10))

    wait_for(registered, 120, "Kubernetes worker")
    assert next(it, None) is None
    assert set(walk.ran) == set(lines)  # every command of the section ran (the backfill twice)


def test_sigkill_mid_stage_then_rerun_same_versions(cluster: dict[str, Any]) -> None:
    """A nightly deployment run on a per-run Dask LocalCluster is SIGKILLed while its
    embedding stage is running: the worker marks it crashed, no process of it survives
    (flow process, Dask scheduler and workers), and running the deployment again completes
    with the artifact versions of an uninterrupted run (the walk-through's nightly run)."""
    from tests.cluster import cmdline, descendants

    walk, url, config = cluster["walk"], cluster["url"], cluster["config"]
    reference = _run_record_versions(Path(config).parent / "store")
    store = cluster["tmp"] / "killed-store"
    params = json.dumps({"overrides": {"store": str(store), "runner": {"kind": "dask", "n_workers": 1}}})
    cmd = f"prefect deployment run medconcepts-discovery/nightly-discovery --params '{params}'"
    worker = next(p for p in walk.background if "worker-cpu" in str(p.args) or "--pool cpu" in " ".join(p.args))

    first = start(cmd, walk.env, cluster["tmp"] / "killed-run.log")
    first.wait(timeout=120)
    cache = store / "embedding_cache"
    wait_for(lambda: list(cache.glob("*/*/month=*/part-*.parquet")), 600, "the first committed embedding batch",
             poll=0.2)
    engines = [p for p in descendants(worker.pid) if "prefect.engine" in cmdline(p)]
    assert len(engines) == 1, [cmdline(p) for p in descendants(worker.pid)]
    doomed = [engines[0], *descendants(engines[0])]
    assert any("distributed" in cmdline(p) or "multiprocessing" in cmdline(p) for p in doomed[1:]), \
        [cmdline(p) for p in doomed]  # the run's Dask worker processes
    import os
    import signal

    os.kill(engines[0], signal.SIGKILL)
    wait_for(lambda: not [p for p in doomed if Path(f"/proc/{p}").exists() and "Z" not in _state(p)], 120,
             "every process of the killed run to exit")
    assert _runs_in_state(url, "CRASHED") >= 1
    assert not (store / "published").exists()  # killed before the SAE stage published anything
    out = subprocess.run(["bash", "-c", f"{cmd} --watch"], cwd=REPO, env=walk.env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:]
    assert _run_record_versions(store) == reference


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _run_record_versions(store: Path) -> set[tuple[str, str]]:
    """Artifacts of the store's first discovery run (the one that trained the SAE)."""
    records = sorted((store / "runs").glob("*.json"), key=lambda p: p.stat().st_mtime)
    assert records, store
    return {(a["kind"], a["version"]) for a in json.loads(records[0].read_text())["artifacts"]}


def _runs_in_state(url: str, state: str) -> int:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    with _api(url) as client:
        from prefect.client.schemas.sorting import FlowRunSort

        return len(client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(state)]))),
            sort=FlowRunSort.ID_DESC, limit=200))
