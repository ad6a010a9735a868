"""The discovery flow on a real Dask cluster (prefect-dask's DaskTaskRunner): two worker
processes on loopback, one declaring a fake GPU resource. GPU-annotated tasks all run
there, encoders are built once per worker, and every artifact equals the thread run's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from data_contracts.config import dump_run_config, load_run_config
from data_contracts.fingerprint import store_fingerprint
from data_contracts.runner_config import RunnerConfig


def _builds() -> dict[str, int]:
    """Encoders built by the calling process (run on each Dask worker; by value, so a
    worker need not import the tests)."""
    return dict(__import__("models.encoders.registry", fromlist=["BUILDS"]).BUILDS)


def _stage(key: Any) -> str:
    """Task name of a Dask key made by prefect-dask (name-token)."""
    return str(key[0] if isinstance(key, tuple) else key).rsplit("-", 1)[0]


@pytest.mark.slow
@pytest.mark.prefect
def test_gpu_tasks_land_on_gpu_worker_and_results_equal_thread_run(local_run: tuple[Path, Any],
                                                                    tmp_path: Path) -> None:
    from distributed import Client, get_task_stream

    from flows.discovery import discovery
    from flows.runner import local_cluster

    config, local = local_run
    cluster = local_cluster(n_workers=2, threads_per_worker=1, gpus=1)
    client = Client(cluster)
    try:
        info = client.scheduler_info()["workers"]
        gpu = [a for a, w in info.items() if w["resources"].get("GPU") == 1]
        assert len(info) == 2 and len(gpu) == 1
        cfg = load_run_config(config)
        cfg = cfg.model_copy(update={
            "store": tmp_path / "store", "report_dir": tmp_path / "report",
            "runner": RunnerConfig(kind="dask", address=cluster.scheduler_address, gpu_stages=("embed",)),
        })  # the same month partitions as the thread run: padded batches of other studies give other bits
        dask_config = tmp_path / "run.yaml"
        dump_run_config(cfg, dask_config)
        with get_task_stream(client) as stream:
            result = discovery(str(dask_config))
        placed = [(_stage(t["key"]), t["worker"]) for t in stream.data]
        embed_stages = {"plan_embedding", "embed_partitions", "embed"}
        on_gpu = [(s, w) for s, w in placed if s in embed_stages]
        # 2 modalities x (plan + partitions + assemble), each building or reusing the encoder
        assert len(on_gpu) == 6, placed
        assert {w for _, w in on_gpu} == set(gpu), placed
        train = [w for s, w in placed if s == "train"]
        assert len(train) == 4 and len(set(train)) == 2, placed  # unannotated: both workers
        builds = client.run(_builds)
        assert builds[gpu[0]] == {"minilm": 1, "ct_radiomics": 1}  # once per worker, not per task
        assert all(b == {} for a, b in builds.items() if a != gpu[0])
    finally:
        client.close()
        cluster.close()
    assert [(r.kind, r.version) for r in result.artifacts()] == [(r.kind, r.version) for r in local.artifacts()]
    fp_dask, fp_local = store_fingerprint(str(tmp_path / "store")), store_fingerprint(str(local.store))
    assert len(fp_dask) > 40 and fp_dask == fp_local
